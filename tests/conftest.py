"""Shared test fixtures: the `../shared` folder beside the checkout, skipped cleanly when absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared folder beside the checkout is absent)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return _need(SHARED / "fixtures" / "motionlcm_official")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _need(SHARED / "data")


def guidance_embedding_ulp(guidance: float, dim: int) -> np.ndarray:
    """(dim,) bound for comparing LCM w-embeddings across CPUs: two float32 ulps of each sinusoid's argument.

    The float32 recipe's frequencies come from torch's vectorised exp, whose last bit differs between CPU
    kernels (AVX2 vs AVX-512): one ulp of the frequency plus the product's rounding moves an argument of up
    to ~1.25e4 rad by up to two of its ulps (~1e-3 each), and sin/cos by as much.
    """
    freqs = np.exp(-np.log(10000.0) * np.arange(dim // 2) / (dim // 2 - 1))
    ulp = 2 * np.spacing(np.float32(1000.0 * (guidance - 1.0) * freqs))
    return np.concatenate([ulp, ulp]).astype(np.float64)
