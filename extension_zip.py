"""Build the Blender extension zip: the add-on's Python files plus blender_manifest.toml, nothing else.

install.py imports `build_extension_zip`; `python extension_zip.py [OUT]` does the same by hand.
Excluded: caches, tests, and the machine-specific backend_config.json that install.py writes.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

ADDON_DIR = Path(__file__).resolve().parent / "motionlcm_blender"
MANIFEST = "blender_manifest.toml"
_FIXED_DATE = (2020, 1, 1, 0, 0, 0)  # the same inputs give the same zip bytes


def addon_files() -> list[Path]:
    """The add-on's files relative to its folder: every .py module (any depth) and the manifest."""
    files = [p.relative_to(ADDON_DIR) for p in ADDON_DIR.rglob("*.py")
             if "__pycache__" not in p.parts and not p.name.startswith("test")]
    return sorted(files) + [Path(MANIFEST)]


def manifest_value(key: str) -> str:
    """A top-level string of the manifest (a regex, so Python 3.10 without tomllib can run install.py)."""
    text = (ADDON_DIR / MANIFEST).read_text(encoding="utf-8")
    match = re.search(rf'^{key}\s*=\s*"([^"]*)"', text, flags=re.MULTILINE)
    if match is None:
        raise ValueError(f"{MANIFEST} has no {key}")
    return match.group(1)


def build_extension_zip(out_path: str | Path) -> Path:
    """Write the zip to `out_path` (a folder gets `<id>-<version>.zip` inside it); returns the file."""
    out = Path(out_path)
    if out.is_dir():
        out = out / f"{manifest_value('id')}-{manifest_value('version')}.zip"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative in addon_files():
            info = zipfile.ZipInfo(relative.as_posix(), date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, (ADDON_DIR / relative).read_bytes())
    return out


if __name__ == "__main__":
    print(build_extension_zip(sys.argv[1] if len(sys.argv) > 1 else Path.cwd()))
