"""backend.motion.rotations against scipy's independent implementation, on numpy and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from backend.motion.rotations import (
    matrix_to_6d, matrix_to_quat, quat_about_y, quat_between, quat_continuous, quat_inv, quat_mul,
    quat_normalize, quat_rotate, quat_to_6d, quat_to_matrix, sixd_to_matrix, sixd_to_quat,
)

RNG = np.random.default_rng(7)
N = 500


def _scipy_to_wxyz(rot: Rotation) -> np.ndarray:
    xyzw = rot.as_quat()  # scipy is scalar-last
    return np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=-1)


def _random_quats(n: int = N) -> np.ndarray:
    return _scipy_to_wxyz(Rotation.random(n, random_state=11))


def _scipy(q: np.ndarray) -> Rotation:
    return Rotation.from_quat(np.concatenate([q[..., 1:], q[..., :1]], axis=-1))


def _same_rotation(q: np.ndarray, r: np.ndarray, atol: float) -> None:
    """q and -q are the same rotation: compare up to sign."""
    sign = np.sign((q * r).sum(-1, keepdims=True))
    np.testing.assert_allclose(q, sign * r, atol=atol)


@pytest.fixture(params=["numpy", "torch"])
def as_backend(request):
    if request.param == "numpy":
        return lambda a: a, lambda a: a
    return torch.from_numpy, lambda t: t.numpy()


def test_matrix_and_rotate_match_scipy(as_backend):
    to, back = as_backend
    q = _random_quats()
    v = RNG.normal(size=(N, 3))
    np.testing.assert_allclose(back(quat_to_matrix(to(q))), _scipy(q).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(back(quat_rotate(to(q), to(v))), _scipy(q).apply(v), atol=1e-12)


def test_mul_composes_and_inverse_undoes(as_backend):
    to, back = as_backend
    q, r = _random_quats(), _random_quats()[::-1].copy()
    expected = (_scipy(q) * _scipy(r)).as_matrix()  # r first, then q
    np.testing.assert_allclose(back(quat_to_matrix(quat_mul(to(q), to(r)))), expected, atol=1e-12)
    identity = back(quat_mul(to(q), quat_inv(to(q))))
    _same_rotation(identity, np.broadcast_to([1.0, 0, 0, 0], identity.shape), atol=1e-12)


def test_matrix_to_quat_roundtrip_including_half_turns(as_backend):
    to, back = as_backend
    q = _random_quats()
    # Half turns about random axes and about the coordinate axes: w = 0, the unstable case for naive formulas.
    axes = np.concatenate([RNG.normal(size=(50, 3)), np.eye(3)])
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    q = np.concatenate([q, np.concatenate([np.zeros((len(axes), 1)), axes], axis=-1)])
    recovered = back(matrix_to_quat(to(_scipy(q).as_matrix())))
    _same_rotation(recovered, q, atol=1e-12)
    assert (recovered[:, 0] >= 0).all()


def test_6d_roundtrip_and_gram_schmidt(as_backend):
    to, back = as_backend
    q = _random_quats()
    m = _scipy(q).as_matrix()
    d6 = back(matrix_to_6d(to(m)))
    np.testing.assert_allclose(d6, np.concatenate([m[:, :, 0], m[:, :, 1]], axis=-1), atol=0)
    np.testing.assert_allclose(back(quat_to_6d(to(q))), d6, atol=1e-12)
    # Gram-Schmidt recovers the rotation from scaled, skewed column pairs.
    noisy = d6 * np.array([2.0, 2.0, 2.0, 0.5, 0.5, 0.5]) + np.concatenate([np.zeros((N, 3)), 0.3 * m[:, :, 0]], -1)
    np.testing.assert_allclose(back(sixd_to_matrix(to(noisy))), m, atol=1e-12)
    _same_rotation(back(sixd_to_quat(to(d6))), q, atol=1e-12)


def test_quat_between(as_backend):
    to, back = as_backend
    u, v = RNG.normal(size=(N, 3)), RNG.normal(size=(N, 3))
    q = back(quat_between(to(u), to(v)))
    unit_v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    np.testing.assert_allclose(_scipy(q).apply(u / np.linalg.norm(u, axis=-1, keepdims=True)), unit_v, atol=1e-12)
    # Shortest arc: the rotation axis is perpendicular to both vectors.
    np.testing.assert_allclose((q[:, 1:] * u).sum(-1), 0, atol=1e-12)
    # Parallel and antiparallel pairs give the identity and a finite half turn.
    special_u = np.array([[0.0, -1, 0], [0, 0, 2], [1, 1, 0], [0, 1, 0]])
    special_v = np.array([[0.0, -3, 0], [0, 0, -1], [-2, -2, 0], [0, -1, 0]])
    q = back(quat_between(to(special_u), to(special_v)))
    assert np.isfinite(q).all()
    _same_rotation(q[:1], np.array([[1.0, 0, 0, 0]]), atol=1e-12)
    np.testing.assert_allclose(q[1:, 0], 0, atol=1e-12)
    rotated = _scipy(q).apply(special_u)
    np.testing.assert_allclose(rotated / np.linalg.norm(rotated, axis=-1, keepdims=True),
                               special_v / np.linalg.norm(special_v, axis=-1, keepdims=True), atol=1e-12)


def test_quat_about_y_turns_z_towards_x(as_backend):
    to, back = as_backend
    angle = np.array([0.0, np.pi / 2, -np.pi / 3, np.pi])
    z = np.broadcast_to([0.0, 0, 1], (4, 3)).copy()
    expected = np.stack([np.sin(angle), np.zeros(4), np.cos(angle)], -1)
    np.testing.assert_allclose(back(quat_rotate(quat_about_y(to(angle)), to(z))), expected, atol=1e-12)


def test_broadcasting_dtype_and_normalize():
    q = torch.from_numpy(_random_quats(6)).float().reshape(2, 3, 1, 4)
    v = torch.randn(2, 3, 5, 3)
    out = quat_rotate(q, v)
    assert out.shape == (2, 3, 5, 3) and out.dtype == torch.float32
    np.testing.assert_allclose(out.norm(dim=-1).numpy(), v.norm(dim=-1).numpy(), rtol=1e-5)
    q_np = _random_quats(4).astype(np.float32) * 3.0
    assert quat_normalize(q_np).dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(quat_normalize(q_np), axis=-1), 1.0, rtol=1e-6)


def test_quat_continuous(as_backend):
    to, back = as_backend
    angles = np.linspace(0, 3 * np.pi, 40)  # more than a full turn: w changes sign along the way
    q = _scipy_to_wxyz(Rotation.from_rotvec(angles[:, None] * np.array([[0.0, 0, 1]])))
    flipped = q * np.where(RNG.random(40) < 0.5, -1.0, 1.0)[:, None]
    fixed = back(quat_continuous(to(np.stack([flipped, flipped], axis=1)), axis=0))[:, 1]
    assert ((fixed[1:] * fixed[:-1]).sum(-1) > 0).all()
    _same_rotation(fixed, q, atol=1e-12)


def test_torch_gradients_are_finite():
    q = torch.tensor(_random_quats(8), requires_grad=True)
    d6 = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    loss = quat_rotate(quat_normalize(q), torch.ones(8, 3, dtype=torch.float64)).sum() + sixd_to_matrix(d6).sum()
    loss.backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(d6.grad).all()
    assert torch.autograd.gradcheck(lambda a, b: quat_rotate(quat_normalize(a), b),
                                     (q.detach()[:3].requires_grad_(), torch.randn(3, 3, dtype=torch.float64)))
