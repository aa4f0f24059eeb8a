"""Batched refinement of solved rotations: Gauss-Newton in torch (CPU or GPU); on by default in `retarget`.

The analytic solve reproduces every bone direction but not every position where the target skeleton's shape
differs from the clip's: at the joints with several children (pelvis: hips and spine1; spine3: neck and collars)
no rotation matches all children when their rest angles differ (HumanML3D's skeleton and SMPL-X's differ by up to
~7 degrees there, ~1-2 cm at the children). Refinement moves the rotations and the root to minimise the joint
position error to the bone-length-matched clip over all 22 joints, with a smoothness term.

Unknowns per frame: a small world-frame rotation delta_j of each of the 17 joints with children, rotating its
subtree about it, so d p_k / d delta_j = -[p_k - p_j]x for every joint k below j, and a root translation (d p_k /
d t = I for all k). Each iteration solves, for all frames at once, (J^T J + (damping + smooth) I) delta_t = -J^T r_t
+ smooth * mean(delta_t-1, delta_t+1) (the smoothness term pulls each frame's correction toward its neighbours'; a
few Jacobi sweeps couple the frames), then applies delta as local rotation updates and a root shift. One iteration
from the analytic solve gets within ~0.3 mm (mean) of the converged optimum at half the cost of two.
"""
from __future__ import annotations

import numpy as np
import torch

from backend.motion.rotations import matrix_to_quat, quat_to_matrix
from backend.retarget.ik import continuous
from backend.motion.skeleton import NUM_JOINTS, PARENTS, subtree
from backend.retarget.rest_pose import RestSkeleton

_SWEEPS = 3


def _levels(parents: tuple[int, ...]) -> tuple[list[tuple[list[int], list[int]]], list[int]]:
    """Joints grouped by depth, with each group's parents as indices into the depth-ordered concatenation."""
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        depth[j] = depth[parents[j]] + 1
    order, levels = [0], []
    for d in range(1, max(depth) + 1):
        joints = [j for j in range(len(parents)) if depth[j] == d]
        levels.append((joints, [order.index(parents[j]) for j in joints]))
        order += joints
    return levels, [order.index(j) for j in range(len(parents))]


def _ancestors(j: int) -> list[int]:
    out = []
    while PARENTS[j] >= 0:
        j = PARENTS[j]
        out.append(j)
    return out


_LEVELS, _UNORDER = _levels(PARENTS)
_MOVERS = [j for j in range(NUM_JOINTS) if j in PARENTS]  # joints with children
# (moved joint k, index of a mover above it, the joint whose offset from the mover moves k): the non-zero 3x3
# blocks of the Jacobian. Positions mode: a mover turns its whole subtree about itself.
_PAIRS = [(k, _MOVERS.index(j), k) for k in range(1, NUM_JOINTS) for j in _ancestors(k)]
# Directions mode: only the joints with several children (pelvis, spine3) turn, and only the offsets to their
# children; each child's subtree then moves without turning, so every bone with a single child keeps the
# direction the analytic solve gave it.
_BRANCHES = [j for j in range(NUM_JOINTS) if PARENTS.count(j) > 1]
_BRANCH_PAIRS = [(k, _BRANCHES.index(j), c) for j in _BRANCHES for c in range(NUM_JOINTS) if PARENTS[c] == j
                 for k in subtree(c)]


def _mm3(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Products of 3x3 matrices, broadcasting; elementwise, as torch's batched matmul is slow on tiny matrices."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(-2)


def fk_torch(root: torch.Tensor, local: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint positions (T, 22, 3) and global rotations (T, 22, 3, 3) from root positions (T, 3), local rotation
    matrices (T, 22, 3, 3) and rest offsets (22, 3): one batched step per tree depth."""
    rots, pos = [local[:, :1]], [root[:, None]]
    for joints, parent_slots in _LEVELS:
        all_rots, all_pos = torch.cat(rots, 1), torch.cat(pos, 1)
        parent_rot = all_rots[:, parent_slots]
        rots.append(_mm3(parent_rot, local[:, joints]))
        pos.append(all_pos[:, parent_slots] + (parent_rot * offsets[joints, None, :]).sum(-1))
    return torch.cat(pos, 1)[:, _UNORDER], torch.cat(rots, 1)[:, _UNORDER]


def _skew(v: torch.Tensor) -> torch.Tensor:
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(v.shape + (3,))


def _exp(v: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of rotation vectors (Rodrigues), with the series near zero."""
    theta2 = (v * v).sum(-1)[..., None, None]
    small = theta2 < 1e-10
    safe2 = torch.where(small, torch.ones_like(theta2), theta2)
    theta = safe2.sqrt()
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / safe2)
    k = _skew(v)
    return torch.eye(3, dtype=v.dtype, device=v.device) + a * k + b * _mm3(k, k)


def refine(root_translation: np.ndarray, local_quats: np.ndarray, skeleton: RestSkeleton, target: np.ndarray,
           iterations: int = 1, smooth_weight: float = 1e-3, damping: float = 1e-5,
           device: str | torch.device = "cpu", move_root: bool = True,
           keep_directions: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Refined root translation (T, 3) and local rotations (T, 22, 4) w,x,y,z bringing FK on `skeleton` closer to
    `target` (T, 22, 3) metres.

    `smooth_weight` (metres^2 per radian^2) ties each frame's correction to its neighbours'; `damping` keeps
    directions that positions do not determine (twists of bones above leaves) where the analytic solve put them.
    `move_root=False` keeps the root translation as given (a root that was fitted to a path stays on it).
    `keep_directions` (default): only the joints with several children turn their offsets to their children, so
    every bone with a single child keeps its analytic direction whatever the source's proportions; False: every
    joint with children turns its subtree (positions as close as the target's shape allows, at the price of bone
    directions on a source shaped unlike the target).
    """
    if np.shape(target) != np.shape(local_quats)[:2] + (3,) or np.shape(root_translation) != (len(target), 3):
        raise ValueError(f"refine needs root (T, 3), rotations (T, 22, 4) and target (T, 22, 3); got "
                         f"{np.shape(root_translation)}, {np.shape(local_quats)}, {np.shape(target)}")
    dev = torch.device(device)
    threads = torch.get_num_threads()
    if dev.type == "cpu":  # tiny batched matrices: one intra-op thread is fastest, more stall on a busy CPU (4x)
        torch.set_num_threads(1)
    try:
        root, local = _gauss_newton(root_translation, local_quats, skeleton, target, iterations, smooth_weight,
                                    damping, dev, move_root, keep_directions)
    finally:
        torch.set_num_threads(threads)
    return root.cpu().double().numpy(), continuous(matrix_to_quat(local).cpu().double().numpy())


def _gauss_newton(root_translation: np.ndarray, local_quats: np.ndarray, skeleton: RestSkeleton,
                  target: np.ndarray, iterations: int, smooth_weight: float, damping: float,
                  dev: torch.device, move_root: bool, keep_directions: bool) -> tuple[torch.Tensor, torch.Tensor]:
    dtype = torch.float32  # as accurate as float64 here (errors in mm) and ~1.5x faster on CPU
    local = torch.as_tensor(quat_to_matrix(np.asarray(local_quats, dtype=np.float64)), dtype=dtype, device=dev)
    root = torch.as_tensor(root_translation, dtype=dtype, device=dev)
    goal = torch.as_tensor(target, dtype=dtype, device=dev)
    offsets = torch.as_tensor(skeleton.offsets, dtype=dtype, device=dev)
    mover_list, pairs = (_BRANCHES, _BRANCH_PAIRS) if keep_directions else (_MOVERS, _PAIRS)
    frames, unknowns = local.shape[0], 3 * len(mover_list) + 3
    moved = torch.tensor([k for k, _, _ in pairs], device=dev)
    lever = torch.tensor([c for _, _, c in pairs], device=dev)
    movers_of = torch.tensor([mover_list[m] for _, m, _ in pairs], device=dev)
    mover_slot = torch.tensor([m for _, m, _ in pairs], device=dev)
    movers = torch.tensor(mover_list, device=dev)
    parents = torch.tensor([max(PARENTS[j], 0) for j in mover_list], device=dev)
    children = [(mover_list.index(PARENTS[c]), c) for c in range(NUM_JOINTS) if PARENTS[c] in mover_list]
    is_root = (movers == 0)[None, :, None, None]
    eye = torch.eye(unknowns, dtype=dtype, device=dev)
    smooth = smooth_weight if frames > 1 else 0.0
    for _ in range(iterations):
        pos, glob = fk_torch(root, local, offsets)
        residual = (pos - goal).reshape(frames, -1)
        jac = torch.zeros(frames, NUM_JOINTS, 3, len(mover_list) + 1, 3, dtype=dtype, device=dev)
        blocks = -_skew(pos[:, lever] - pos[:, movers_of])  # (T, pairs, 3, 3)
        jac[:, moved, :, mover_slot, :] = blocks.permute(1, 0, 2, 3)
        if move_root:  # the root translation moves every joint; else its unknown is held by the damping alone
            jac[:, :, :, -1, :] = torch.eye(3, dtype=dtype, device=dev)
        jac = jac.view(frames, -1, unknowns)
        jt = jac.transpose(1, 2)
        chol = torch.linalg.cholesky(jt @ jac + (damping + smooth) * eye)
        rhs = -(jt @ residual[..., None])
        delta = torch.cholesky_solve(rhs, chol)
        for _ in range(_SWEEPS if smooth else 0):
            padded = torch.cat([delta[:1], delta, delta[-1:]])
            delta = torch.cholesky_solve(rhs + smooth * 0.5 * (padded[:-2] + padded[2:]), chol)
        delta = delta.reshape(frames, -1, 3)
        if move_root:
            root = root + delta[:, -1]
        update = _exp(delta[:, :-1])  # world-frame rotations (T, movers, 3, 3)
        g_parent = torch.where(is_root, torch.eye(3, dtype=dtype, device=dev), glob[:, parents])
        local[:, movers] = _mm3(_mm3(g_parent.transpose(-1, -2), update), _mm3(g_parent, local[:, movers]))
        if keep_directions:  # the children keep their world rotations: undo the turn in their local ones
            for slot, child in children:
                g_mover = glob[:, mover_list[slot]]
                undo = _mm3(_mm3(g_mover.transpose(-1, -2), update[:, slot].transpose(-1, -2)), g_mover)
                local[:, child] = _mm3(undo, local[:, child])
    return root, local
