"""Package-data normalisation statistics equal the shared originals bit for bit and load from a zip too."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from backend.motion.norm_stats import humanml3d_mean_std, spatial_mean_std

REPO = Path(__file__).resolve().parents[1]


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_humanml3d_mean_std_equal_shared_originals(data_dir):
    folder = data_dir / "humanml3d_reference" / "HumanML3D"
    mean, std = humanml3d_mean_std()
    assert _same_bits(mean, np.load(folder / "Mean.npy"))
    assert _same_bits(std, np.load(folder / "Std.npy"))
    assert mean.shape == (263,) and mean.dtype == np.float32


def test_spatial_mean_std_equal_shared_originals(data_dir):
    folder = data_dir / "motionlcm_spatial_norm"
    mean, std = spatial_mean_std()
    assert _same_bits(mean, np.load(folder / "Mean_raw.npy"))
    assert _same_bits(std, np.load(folder / "Std_raw.npy"))
    assert mean.shape == (22, 3) and std.dtype == np.float32
    # SOURCE.md: the pelvis mean is about (0.0004, 0.94, 0.31).
    np.testing.assert_allclose(mean[0], [0.0004, 0.94, 0.31], atol=0.01)


def test_stats_match_the_official_fixture_inputs(fixtures_dir):
    inputs = np.load(fixtures_dir / "inputs.npz")
    assert _same_bits(humanml3d_mean_std()[0], inputs["mean"])
    assert _same_bits(humanml3d_mean_std()[1], inputs["std"])
    assert _same_bits(spatial_mean_std()[0], inputs["raw_mean"])
    assert _same_bits(spatial_mean_std()[1], inputs["raw_std"])


def test_returned_arrays_are_independent_copies():
    mean, _ = humanml3d_mean_std()
    mean[:] = 0.0
    assert np.any(humanml3d_mean_std()[0] != 0.0)


def test_licence_and_notice_files_ship_beside_the_data():
    data = REPO / "backend" / "motion" / "data"
    assert "MIT License" in (data / "humanml3d" / "LICENSE").read_text()
    notice = (data / "spatial_norm" / "NOTICE.md").read_text()
    assert "Dai-Wenxun/MotionLCM" in notice and "Non-commercial" in notice


def test_loads_from_a_zip_archive_like_an_installed_package(tmp_path):
    """importlib.resources, not __file__ paths: the stats load when `backend` is imported from a zip."""
    archive = tmp_path / "backend.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("__init__.py", "motion/__init__.py", "motion/skeleton.py", "motion/norm_stats.py"):
            zf.write(REPO / "backend" / name, f"backend/{name}")
        for path in sorted((REPO / "backend" / "motion" / "data").rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(REPO).as_posix())
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import backend, backend.motion.norm_stats as n;"
        "assert backend.__file__.startswith(sys.argv[1]), backend.__file__;"
        "m, s = n.humanml3d_mean_std(); rm, rs = n.spatial_mean_std();"
        "print(m.tobytes().hex(), rs.tobytes().hex())"
    )
    result = subprocess.run([sys.executable, "-c", code, str(archive)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [humanml3d_mean_std()[0].tobytes().hex(), spatial_mean_std()[1].tobytes().hex()]


@pytest.mark.parametrize("loader", [humanml3d_mean_std, spatial_mean_std])
def test_std_is_strictly_positive(loader):
    # Division by these values must be safe for every feature and joint.
    assert np.all(loader()[1] > 0)
