"""install.py's plan (CPU or CUDA torch, Blender found or not) and its idempotent zip + config step.
Nothing is installed: only --dry-run and the pure pieces run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import install
from conftest import REPO


def fake_tool(folder: Path, name: str, output: str = "") -> None:
    tool = folder / name
    tool.write_text(f"#!/bin/sh\necho '{output}'\n")
    tool.chmod(0o755)


@pytest.fixture
def bare_path(tmp_path, monkeypatch) -> Path:
    """PATH holds only an empty folder the test may put fake tools into."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setattr(install, "BLENDER_CANDIDATES", ())
    return folder


@pytest.mark.skipif(sys.platform == "win32", reason="fake tools are shell scripts")
def test_torch_build_follows_nvidia_smi(bare_path):
    assert install.torch_build("auto") == "cpu"
    fake_tool(bare_path, "nvidia-smi", "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)")
    assert install.torch_build("auto") == "cuda"
    assert install.torch_build("cpu") == "cpu"


@pytest.mark.skipif(sys.platform == "win32", reason="fake tools are shell scripts")
def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    fake_tool(tools, "nvidia-smi", "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)")
    fake_tool(tools, "blender")
    venv, out = tmp_path / "venv", tmp_path / "dist"
    done = subprocess.run([sys.executable, "install.py", "--dry-run", "--venv", str(venv), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": str(tools)})
    assert done.returncode == 0, done.stderr
    assert "CUDA build" in done.stdout and f"torch=={install.TORCH_VERSION}" in done.stdout
    assert f"-e {REPO}" in done.stdout
    assert f"{tools / 'blender'} --command extension install-file -r user_default --enable {out}" in done.stdout
    assert not venv.exists() and not out.exists()


def test_plan_without_gpu_or_blender_uses_cpu_torch_and_explains_the_manual_install(bare_path, tmp_path):
    args = install.argparse.Namespace(venv=str(tmp_path / "venv"), device="auto", blender=None,
                                      out=str(tmp_path / "dist"), checkpoint=None, torch_index=None, demo=False)
    steps = install.plan(args)
    assert any("CPU build" in step.description for step in steps)
    commands = [step.command for step in steps if step.command]
    assert any(c[-1] == f"torch=={install.TORCH_VERSION}" for c in commands)  # the configured index
    assert "Install from Disk" in steps[-1].description and steps[-1].command is None
    explicit = install.plan(install.argparse.Namespace(**{**vars(args), "blender": "/opt/b/blender"}))
    assert explicit[-1].command[:3] == ["/opt/b/blender", "--command", "extension"]
    indexed = install.plan(install.argparse.Namespace(**{**vars(args), "torch_index": "https://example.invalid/cpu"}))
    assert any(c[-2:] == ["--index-url", "https://example.invalid/cpu"] for c in (s.command for s in indexed) if c)


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="bpy wheels exist for Python 3.11 only")
def test_demo_plan_runs_the_demo_then_writes_the_blend_in_an_environment_of_its_own(bare_path, tmp_path,
                                                                                   monkeypatch):
    """bpy (numpy<2) never enters the backend's environment (mannequin-x declares numpy>=2): no pip conflict."""
    monkeypatch.chdir(tmp_path)
    args = install.argparse.Namespace(venv=str(tmp_path / "venv"), device="cpu", blender=None,
                                      out=str(tmp_path / "dist"), checkpoint=None, torch_index=None, demo=True)
    steps = install.plan(args)
    backend_python, blend_python = install.venv_python(tmp_path / "venv"), install.venv_python(tmp_path / "venv-blend")
    demo = next(i for i, s in enumerate(steps) if s.command and s.command[-4:-2] == ["backend.cli", "demo"])
    assert steps[demo].command[0] == str(backend_python)
    assert steps[demo + 1].command == [sys.executable, "-m", "venv", str(tmp_path / "venv-blend")]
    assert steps[demo + 2].command[:4] == [str(blend_python), "-m", "pip", "install"]
    assert steps[demo + 2].command[-1] == f"bpy=={install.BPY_VERSION}"
    assert steps[demo + 3].command == [str(blend_python), str(install.REPO / "demo_blend.py"),
                                       str(tmp_path / "motionlcm_demo")]
    assert not any(s.command and "bpy" in " ".join(s.command) and s.command[0] == str(backend_python) for s in steps)


def test_zip_carries_the_config_and_rebuilding_is_idempotent(tmp_path):
    config = install.backend_config(Path("/env/bin/python"), "cpu")
    first = install.build_zip(tmp_path, config)
    first_bytes = first.read_bytes()
    second = install.build_zip(tmp_path, config)
    assert second == first and second.read_bytes() == first_bytes
    with zipfile.ZipFile(second) as archive:
        names = archive.namelist()
        assert names.count(install.CONFIG_NAME) == 1
        assert {"blender_manifest.toml", "client.py", "wire.py"} <= set(names)
        assert json.loads(archive.read(install.CONFIG_NAME)) == {
            "python": "/env/bin/python", "backend_root": str(REPO), "device": "cpu", "checkpoint": None}
    changed = install.build_zip(tmp_path, {**config, "device": "cuda"})
    with zipfile.ZipFile(changed) as archive:
        assert archive.namelist().count(install.CONFIG_NAME) == 1
        assert json.loads(archive.read(install.CONFIG_NAME))["device"] == "cuda"
