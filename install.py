"""One-command setup of MotionLCM for Blender: backend environment, extension zip, Blender install.

    python install.py [--venv DIR] [--device auto|cpu|cuda] [--blender PATH] [--out DIR] [--checkpoint PATH]
                      [--dry-run]

1. a virtual environment for the backend (DIR, default: the user's data folder), with torch 2.13.0:
   the CUDA build when an NVIDIA GPU answers `nvidia-smi`, otherwise the CPU build;
2. the backend itself, `pip install -e` of this repository (the shipped default checkpoint and the
   embedded MiniLM text encoder come with it), then an import check;
3. the extension zip (extension_zip.build_extension_zip) with `backend_config.json` inside: the
   backend interpreter and repository the add-on starts (the add-on preferences can override it);
4. `blender --command extension install-file -r user_default --enable ZIP` when a Blender binary is
   found (PATH, usual install folders, or --blender); otherwise how to install the zip by hand.

With --demo it then runs the main job on the shipped defaults (`motionlcm demo`: a prompt plus a 3 m pelvis
circle -> ./motionlcm_demo/ with demo.npz, demo.bvh, demo.gif), then, with Blender's Python module (bpy, Python
3.11 only) in a small environment of its own beside the backend's (VENV-blend: bpy pins numpy<2, the backend's
mannequin-x wants numpy>=2), `demo_blend.py` writes demo.blend with the character and its baked Action.

Re-running is safe: an existing venv is reused, pip skips what is installed, the zip is rebuilt
byte-identically for the same inputs and Blender replaces the installed extension.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import extension_zip  # beside this file; pure standard library

REPO = Path(__file__).resolve().parent
TORCH_VERSION = "2.13.0"
BPY_VERSION = "5.0.1"  # Blender as a Python module, for the demo's .blend (wheels for CPython 3.11 only)
CONFIG_NAME = "backend_config.json"  # motionlcm_blender/client.py reads it from the add-on's folder
BLENDER_CANDIDATES = (  # beyond PATH; globbed, newest version last
    "/Applications/Blender.app/Contents/MacOS/Blender",
    "C:/Program Files/Blender Foundation/Blender */blender.exe",
    "/opt/blender*/blender", "/snap/bin/blender", "/usr/bin/blender",
)


@dataclass
class Step:
    """What will happen, as shown by --dry-run; `command` runs as a process, `action` in this process."""

    description: str
    command: list[str] | None = None
    action: Callable[[], object] | None = field(default=None, repr=False)

    def show(self) -> str:
        return self.description + (f"\n      $ {subprocess.list2cmdline(self.command)}" if self.command else "")


def has_nvidia_gpu() -> bool:
    """True when `nvidia-smi -L` exists and lists a GPU (a driver is installed and working)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and "GPU" in done.stdout


def torch_build(device: str) -> str:
    """`cuda` or `cpu`: the torch wheel to install for --device (auto asks nvidia-smi)."""
    if device == "auto":
        return "cuda" if has_nvidia_gpu() else "cpu"
    return device


def torch_install_args(index: str | None) -> list[str]:
    """torch from the configured package index (PyPI's Linux wheels carry CUDA; macOS and Windows ones are CPU),
    or from `index`, e.g. PyTorch's CPU-only or a CUDA-specific wheel index."""
    return [f"torch=={TORCH_VERSION}"] + (["--index-url", index] if index else [])


def default_venv() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "motionlcm-blender" / "venv"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def find_blender(explicit: str | None = None) -> str | None:
    if explicit:
        return explicit
    found = shutil.which("blender")
    if found:
        return found
    for pattern in BLENDER_CANDIDATES:
        matches = sorted(glob.glob(pattern))
        if matches:
            return matches[-1]
    return None


def backend_config(python: Path, device: str, checkpoint: str | None = None) -> dict[str, object]:
    """What the add-on needs to start the backend; keys as motionlcm_blender/client.py reads them."""
    return {"python": str(python), "backend_root": str(REPO), "device": device, "checkpoint": checkpoint}


def zip_name() -> str:
    return f"{extension_zip.manifest_value('id')}-{extension_zip.manifest_value('version')}.zip"


def build_zip(out_dir: Path, config: dict[str, object]) -> Path:
    """The extension zip with `backend_config.json` at its root (beside blender_manifest.toml).

    Same inputs, same bytes: the zip is rebuilt from scratch each time, never appended to."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        plain = extension_zip.build_extension_zip(Path(tmp))
        target = out_dir / zip_name()
        with zipfile.ZipFile(plain) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for info in source.infolist():
                archive.writestr(info, source.read(info))
            info = zipfile.ZipInfo(CONFIG_NAME, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            archive.writestr(info, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return target


def plan(args: argparse.Namespace) -> list[Step]:
    venv = Path(args.venv).expanduser().resolve()
    python = venv_python(venv)
    build = torch_build(args.device)
    pip = [str(python), "-m", "pip", "install", "--upgrade-strategy", "only-if-needed"]
    steps = []
    if python.exists():
        steps.append(Step(f"reuse the backend environment {venv}"))
    else:
        steps.append(Step(f"create the backend environment {venv}", [sys.executable, "-m", "venv", str(venv)]))
    steps += [
        Step(f"install torch {TORCH_VERSION} ({build.upper()} build"
             f"{', an NVIDIA GPU was found' if build == 'cuda' and args.device == 'auto' else ''})",
             pip + torch_install_args(args.torch_index)),
        Step("install the backend (editable) with its embedded defaults", pip + ["-e", str(REPO)]),
        Step("check that the backend imports",
             [str(python), "-c", "import backend.serving.server, backend.generation.pipeline"]),
    ]
    checkpoint = str(Path(args.checkpoint).expanduser().resolve()) if args.checkpoint else None
    config = backend_config(python, build, checkpoint)
    out_dir = Path(args.out).expanduser().resolve()
    zip_path = out_dir / zip_name()
    steps.append(Step(f"build the extension zip in {out_dir} with {CONFIG_NAME}: {json.dumps(config)}",
                      action=lambda: build_zip(out_dir, config)))
    blender = find_blender(args.blender)
    if blender is None:
        steps.append(Step("no Blender binary found (use --blender PATH): in Blender, Edit > Preferences > "
                          f"Get Extensions > Install from Disk, and pick {zip_path}"))
    else:
        steps.append(Step(f"install and enable the extension in {blender}",
                          [blender, "--command", "extension", "install-file", "-r", "user_default", "--enable",
                           str(zip_path)]))
    if args.demo:
        steps += demo_steps(python, Path.cwd() / "motionlcm_demo", venv.with_name(venv.name + "-blend"))
    return steps


def demo_steps(python: Path, out: Path, blend_venv: Path) -> list[Step]:
    """The demo in the backend environment, then its .blend in a small environment of its own with Blender's
    Python module: bpy pins numpy<2 while the backend's mannequin-x declares numpy>=2, so sharing one
    environment made pip report a conflict; demo_blend.py needs only bpy and the add-on."""
    steps = [Step(f"run the main job on the shipped defaults into {out}",
                  [str(python), "-m", "backend.cli", "demo", "--out", str(out)])]
    if sys.version_info[:2] != (3, 11):
        steps.append(Step(f"no bpy {BPY_VERSION} for Python {sys.version_info[0]}.{sys.version_info[1]} (it needs "
                          "3.11): the demo has no .blend; install the extension zip into Blender instead"))
        return steps
    blend_python = venv_python(blend_venv)
    if blend_python.exists():
        steps.append(Step(f"reuse the .blend writer's environment {blend_venv}"))
    else:
        steps.append(Step(f"create the .blend writer's environment {blend_venv}",
                          [sys.executable, "-m", "venv", str(blend_venv)]))
    steps += [
        Step(f"install Blender's Python module bpy {BPY_VERSION} there for the demo's .blend",
             [str(blend_python), "-m", "pip", "install", "--quiet", f"bpy=={BPY_VERSION}"]),
        Step(f"write {out / 'demo.blend'}: the character and its Action, by the add-on's own code",
             [str(blend_python), str(REPO / "demo_blend.py"), str(out)])]
    return steps


def run(steps: list[Step]) -> None:
    for number, step in enumerate(steps, 1):
        print(f"[{number}/{len(steps)}] {step.description}", flush=True)
        if step.action is not None:
            print(f"      wrote {step.action()}")
        if step.command is not None:
            subprocess.run(step.command, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=str(default_venv()), help="backend environment folder")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="torch build: auto = CUDA when nvidia-smi lists a GPU")
    parser.add_argument("--blender", help="Blender executable (default: found on PATH or in usual places)")
    parser.add_argument("--out", default=str(REPO / "dist"), help="where to write the extension zip")
    parser.add_argument("--checkpoint", help="checkpoint the add-on loads by default (default: the shipped one)")
    parser.add_argument("--torch-index", help="pip index URL for torch (default: the configured index)")
    parser.add_argument("--demo", action="store_true",
                        help="then run the main job on the shipped defaults into ./motionlcm_demo")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    args = parser.parse_args(argv)
    steps = plan(args)
    if args.dry_run:
        print("Plan (dry run, nothing changed):")
        for number, step in enumerate(steps, 1):
            print(f"[{number}/{len(steps)}] {step.show()}")
        return 0
    try:
        run(steps)
    except subprocess.CalledProcessError as exc:
        print(f"install.py: step failed (exit status {exc.returncode}): {subprocess.list2cmdline(exc.cmd)}",
              file=sys.stderr)
        return 1
    print("Done. In Blender: the MotionLCM panel is in the 3D View sidebar (N).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
