"""Rotation helpers for numpy arrays and torch tensors alike.

Conventions: quaternions are (w, x, y, z) in the last axis, unit length, and rotate column vectors
(v' = q v q*). Rotation matrices act on column vectors (v' = R v). The continuous 6D form is the
first two columns of the matrix, concatenated: (R00, R10, R20, R01, R11, R21), HumanML3D's layout.
Every function is vectorised over leading axes (broadcasting where both inputs have them), keeps the
input's dtype, and is differentiable when given torch tensors.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)

# Below this squared norm a cross product is treated as zero (parallel or antiparallel vectors).
_PARALLEL_EPS = 1e-12


def _stack(parts: Sequence[Array], axis: int = -1) -> Array:
    if isinstance(parts[0], torch.Tensor):
        return torch.stack(list(parts), dim=axis)
    return np.stack(parts, axis=axis)


def _where(cond: Array, a: Array, b: Array) -> Array:
    if isinstance(cond, torch.Tensor):
        return torch.where(cond, a, b)
    return np.where(cond, a, b)


def _unbind(a: Array) -> tuple[Array, ...]:
    return tuple(a[..., i] for i in range(a.shape[-1]))


def _cross(a: Array, b: Array) -> Array:
    ax, ay, az = _unbind(a)
    bx, by, bz = _unbind(b)
    return _stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx])


def _norm(a: Array) -> Array:
    return ((a * a).sum(-1)) ** 0.5


def quat_normalize(q: Array) -> Array:
    """Scale quaternions to unit length."""
    return q / _norm(q)[..., None]


def quat_inv(q: Array) -> Array:
    """Inverse of a unit quaternion (its conjugate)."""
    w, x, y, z = _unbind(q)
    return _stack([w, -x, -y, -z])


def quat_mul(q: Array, r: Array) -> Array:
    """Hamilton product q r: the rotation r followed by q."""
    w1, x1, y1, z1 = _unbind(q)
    w2, x2, y2, z2 = _unbind(r)
    return _stack([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ])


def quat_rotate(q: Array, v: Array) -> Array:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4)."""
    qv = q[..., 1:]
    uv = _cross(qv, v)
    return v + 2.0 * (q[..., :1] * uv + _cross(qv, uv))


def quat_between(u: Array, v: Array) -> Array:
    """Shortest-arc unit quaternion rotating direction u onto direction v (neither need be unit).

    Antiparallel pairs have no unique shortest arc: they get a half turn about an axis perpendicular
    to u (u crossed with the basis axis least aligned with u) instead of the NaN of the textbook formula.
    """
    axis = _cross(u, v)
    w = _norm(u) * _norm(v) + (u * v).sum(-1)
    q = _stack([w, *_unbind(axis)])
    if isinstance(u, torch.Tensor):
        basis = torch.eye(3, dtype=u.dtype, device=u.device)[torch.argmin(u.abs(), dim=-1)]
    else:
        basis = np.eye(3, dtype=u.dtype)[np.argmin(np.abs(u), axis=-1)]
    half_turn = _stack([w * 0, *_unbind(_cross(u, basis))])
    degenerate = ((axis * axis).sum(-1) <= _PARALLEL_EPS * (u * u).sum(-1) * (v * v).sum(-1)) & (
        (u * v).sum(-1) < 0)
    return quat_normalize(_where(degenerate[..., None], half_turn, q))


def quat_about_y(angle: Array) -> Array:
    """Unit quaternions for rotations by `angle` radians about +Y (counter-clockwise seen from above)."""
    zero = angle * 0
    half = angle * 0.5
    if isinstance(angle, torch.Tensor):
        return _stack([torch.cos(half), zero, torch.sin(half), zero])
    return _stack([np.cos(half), zero, np.sin(half), zero])


def quat_to_matrix(q: Array) -> Array:
    """(..., 4) unit quaternions -> (..., 3, 3) rotation matrices."""
    w, x, y, z = _unbind(q)
    rows = [
        _stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)]),
        _stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)]),
        _stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]),
    ]
    return _stack(rows, axis=-2)


def matrix_to_quat(m: Array) -> Array:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions with w >= 0.

    Of the four algebraically equivalent extractions, each element uses the one with the largest
    pivot (4 w^2, 4 x^2, 4 y^2 or 4 z^2), which keeps it accurate near half turns.
    """
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    pivots = _stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22])
    candidates = _stack([
        _stack([pivots[..., 0], m21 - m12, m02 - m20, m10 - m01]),
        _stack([m21 - m12, pivots[..., 1], m01 + m10, m02 + m20]),
        _stack([m02 - m20, m01 + m10, pivots[..., 2], m12 + m21]),
        _stack([m10 - m01, m02 + m20, m12 + m21, pivots[..., 3]]),
    ], axis=-2)
    if isinstance(m, torch.Tensor):
        best = torch.argmax(pivots, dim=-1)
        q = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    else:
        best = np.argmax(pivots, axis=-1)
        q = np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    q = quat_normalize(q)
    return _where(q[..., :1] < 0, -q, q)


def matrix_to_6d(m: Array) -> Array:
    """(..., 3, 3) -> (..., 6): the first two columns, column after column."""
    return _stack([m[..., 0, 0], m[..., 1, 0], m[..., 2, 0], m[..., 0, 1], m[..., 1, 1], m[..., 2, 1]])


def sixd_to_matrix(d6: Array) -> Array:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt: the first column is kept in direction, the second
    is made orthogonal to it within their plane, the third is their cross product."""
    a, b = d6[..., :3], d6[..., 3:]
    x = a / _norm(a)[..., None]
    z = _cross(x, b)
    z = z / _norm(z)[..., None]
    y = _cross(z, x)
    return _stack([x, y, z], axis=-1)


def quat_to_6d(q: Array) -> Array:
    """(..., 4) unit quaternions -> (..., 6) continuous 6D rotations."""
    return matrix_to_6d(quat_to_matrix(q))


def sixd_to_quat(d6: Array) -> Array:
    """(..., 6) continuous 6D rotations -> (..., 4) unit quaternions with w >= 0."""
    return matrix_to_quat(sixd_to_matrix(d6))


def quat_continuous(q: Array, axis: int = 0) -> Array:
    """Flip signs along `axis` (time) so consecutive quaternions have a non-negative dot product.

    q and -q are the same rotation; interpolation and finite differences need the consistent choice.
    """
    if isinstance(q, torch.Tensor):
        qt = q.movedim(axis, 0)
        flips = ((qt[1:] * qt[:-1]).sum(-1) < 0).to(torch.int64)
        parity = torch.cat([torch.zeros_like(flips[:1]), torch.cumsum(flips, 0) % 2])
        return (qt * (1 - 2 * parity).to(q.dtype)[..., None]).movedim(0, axis)
    qt = np.moveaxis(q, axis, 0)
    flips = ((qt[1:] * qt[:-1]).sum(-1) < 0).astype(np.int64)
    parity = np.concatenate([np.zeros_like(flips[:1]), np.cumsum(flips, 0) % 2])
    return np.moveaxis(qt * (1 - 2 * parity).astype(q.dtype)[..., None], 0, axis)
