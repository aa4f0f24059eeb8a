"""Test data for the retargeting tests: real clips from ../shared, extracted at run time (never committed)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

BANDAI_ARCHIVE = Path("bandai_namco_ds2_train") / "bandai_namco_dataset2_bvh_json.tar.xz"
HUMANML3D_012314 = Path("humanml3d_reference") / "HumanML3D" / "new_joints" / "012314.npy"
HUMANML3D_000000 = Path("humanml3d_reference") / "example_000000_EricGuoICT" / "new_joints" / "000000.npy"


def extract_bandai(data_dir: Path, out_dir: Path, count: int, contains: str = "") -> list[Path]:
    """Stream the archive and extract its first `count` BVH members whose names contain `contains` (licence:
    converted data is never kept; the archive's first members are reached in milliseconds)."""
    paths: list[Path] = []
    with tarfile.open(data_dir / BANDAI_ARCHIVE, "r:xz") as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".bvh") and contains in member.name:
                target = out_dir / Path(member.name).name
                with archive.extractfile(member) as src:
                    target.write_bytes(src.read())
                paths.append(target)
                if len(paths) == count:
                    break
    return paths


def humanml3d_joints(data_dir: Path, rel: Path = HUMANML3D_012314) -> np.ndarray:
    return np.load(data_dir / rel).astype(np.float64)
