"""The data path's layering, read from the source: the backend and the add-on share no import (they meet only in
the protocol), the add-on never imports torch, and no module-level import circle exists inside either."""

from __future__ import annotations

import ast

from conftest import REPO


def _imports(package: str) -> dict[str, set[str]]:
    """Module -> the absolute names it imports (module level and inside functions), for a package of the repo."""
    out: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        current = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = current.split(".")[:len(current.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                names |= {target} | {f"{target}.{alias.name}" for alias in node.names}
        out[module] = names
    return out


def _module_level_imports(package: str) -> dict[str, set[str]]:
    """Module -> the package's own modules it imports at module level (what can form an import circle)."""
    modules = set(_imports(package))
    out = {}
    for module in modules:
        path = REPO / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = REPO / module.replace(".", "/") / "__init__.py"
        current = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        found = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and node.level:
                base = current.split(".")[:len(current.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    found |= {n for n in (f"{target}.{alias.name}", target) if n in modules and n != module}
        out[module] = found
    return out


def test_backend_and_add_on_share_no_import():
    for package, other in (("backend", "motionlcm_blender"), ("motionlcm_blender", "backend")):
        crossing = {m: sorted(n for n in names if n.split(".")[0] == other)
                    for m, names in _imports(package).items()}
        assert not {m: n for m, n in crossing.items() if n}, crossing
    torch_users = [m for m, names in _imports("motionlcm_blender").items() if any(n.split(".")[0] == "torch"
                                                                                  for n in names)]
    assert torch_users == []


def test_no_module_level_import_circle():
    for package in ("backend", "motionlcm_blender", "training"):
        graph = _module_level_imports(package)
        state: dict[str, int] = {}

        def visit(module: str, stack: list[str]) -> None:
            state[module] = 1
            for nxt in graph.get(module, ()):
                if state.get(nxt) == 1:
                    raise AssertionError(f"import circle: {' -> '.join(stack[stack.index(nxt):] + [nxt])}")
                if nxt not in state:
                    visit(nxt, stack + [nxt])
            state[module] = 2

        for module in sorted(graph):
            if module not in state:
                visit(module, [module])
