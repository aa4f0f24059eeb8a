"""The extension manifest against the Blender manual's rules, and the zip install.py ships."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import extension_zip

MANIFEST = extension_zip.ADDON_DIR / "blender_manifest.toml"
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


@pytest.fixture(scope="module")
def manifest():
    return tomllib.loads(MANIFEST.read_text(encoding="utf-8"))


def test_required_fields_and_formats(manifest):
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["id"].isidentifier() and not manifest["id"].startswith("_")
    assert SEMVER.match(manifest["version"])
    assert manifest["name"] and manifest["maintainer"]
    tagline = manifest["tagline"]
    assert 0 < len(tagline) <= 64 and tagline[-1].isalnum()
    assert manifest["type"] == "add-on"
    assert manifest["tags"] == ["Animation"]
    assert manifest["blender_version_min"] == "4.2.0"
    assert all(re.fullmatch(r"SPDX:[A-Za-z0-9.+-]+", lic) for lic in manifest["license"])
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]


def test_permissions_ask_for_files_only_with_a_reason(manifest):
    permissions = manifest["permissions"]
    assert set(permissions) == {"files"}  # loopback/stdio only: no network (see the manifest's comment)
    reason = permissions["files"]
    assert 0 < len(reason) <= 64 and reason[-1].isalnum()


def test_zip_holds_exactly_the_addon_files(tmp_path):
    cache = extension_zip.ADDON_DIR / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "stray.cpython-311.pyc").write_bytes(b"")
    try:
        path = extension_zip.build_extension_zip(tmp_path)
    finally:
        (cache / "stray.cpython-311.pyc").unlink()
    assert path.name == "motionlcm-0.1.0.zip"
    expected = {p.name for p in extension_zip.ADDON_DIR.glob("*.py")} | {"blender_manifest.toml"}
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        assert names == expected
        assert archive.read("__init__.py") == (extension_zip.ADDON_DIR / "__init__.py").read_bytes()
    assert {"__init__.py", "bake.py", "client.py"} <= names
    assert not any("pycache" in n or n.startswith("test") or n.endswith(".json") for n in names)


def test_blenders_own_validator_accepts_the_zip(tmp_path):
    """Blender ships its extension validator (bl_pkg/cli/blender_ext.py); the bpy wheel has it too."""
    bpy_spec = importlib.util.find_spec("bpy")
    if bpy_spec is None or bpy_spec.origin is None:
        pytest.skip("needs the bpy wheel, which carries Blender's extension validator")
    validators = list(Path(bpy_spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not validators:
        pytest.skip("this bpy build has no bl_pkg extension validator")
    tags = tmp_path / "tags.json"
    tags.write_text('{"add-on": ["Animation"], "theme": []}')
    archive = extension_zip.build_extension_zip(tmp_path)
    run = subprocess.run([sys.executable, str(validators[0]), "validate", "--valid-tags", str(tags), str(archive)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
