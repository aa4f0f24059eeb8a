"""Bandai-Namco motion dataset BVH (22-node skeleton, cm, Y up) to SMPL's 22 joints in metres.

The single source of the mapping (data preparation mirrors it). Limbs, head and neck map one to one (hips are
UpperLeg_L/R, where the thighs rotate; SMPL's feet are Toes_L/R). The joints where SMPL branches are placed so that
the mapped skeleton has SMPL's shape there, since no rotation can reconcile children whose rest angles differ:
- pelvis and spine1, which SMPL carries rigidly with the pelvis ~10 cm above the hip line and ~2.5 cm in front of it
  (Bandai's Hips is ~2 cm above that line): both at SMPL-X's rest position in a frame on the hips (origin their
  midpoint, x from right to left hip, y toward Bandai's Spine joint), in hip widths;
- spine2 and spine3 on the polyline spine1 - Chest - Neck at SMPL-X's rest arc-length fractions of spine1 - neck;
- the collars, which SMPL carries rigidly with spine3 ~8 cm below the neck (Bandai's Shoulder_L/R sit level with
  it): at SMPL-X's rest position in a frame on spine3 (y toward the neck, x along Bandai's Shoulder_R to
  Shoulder_L line), in spine3-neck lengths.
The placed points are rigid in Bandai's Hips and Chest bodies, as SMPL's are in its pelvis and spine3, so the angles
at pelvis and spine3 are SMPL-X's in every frame, made left-right symmetric (SMPL-X's own rest hips differ in height
by 1.2 cm: the only residual of the analytic solve on the default skeleton, ~2 mm mean, ~1 mm refined).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from backend.motion.bvh import Bvh
from backend.motion.skeleton import JOINT_INDEX as J
from backend.motion.skeleton import JOINT_NAMES
from backend.retarget.rest_pose import default_skeleton

BANDAI_TO_SMPL = {
    "left_hip": "UpperLeg_L", "right_hip": "UpperLeg_R", "left_knee": "LowerLeg_L", "right_knee": "LowerLeg_R",
    "left_ankle": "Foot_L", "right_ankle": "Foot_R", "left_foot": "Toes_L", "right_foot": "Toes_R", "neck": "Neck",
    "head": "Head", "left_shoulder": "UpperArm_L", "right_shoulder": "UpperArm_R", "left_elbow": "LowerArm_L",
    "right_elbow": "LowerArm_R", "left_wrist": "Hand_L", "right_wrist": "Hand_R",
}


def _frames(x: np.ndarray, y: np.ndarray, primary_x: bool) -> np.ndarray:
    """Orthonormal frames (..., 3, 3), columns x, y, z = x cross y; the primary axis is kept, the other made
    orthogonal to it."""
    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v, axis=-1, keepdims=True)
    if primary_x:
        x = unit(x)
        y = unit(y - (y * x).sum(-1, keepdims=True) * x)
    else:
        y = unit(y)
        x = unit(x - (x * y).sum(-1, keepdims=True) * y)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


@lru_cache(maxsize=1)
def smpl_constants() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SMPL-X rest geometry: pelvis and spine1 in the hip frame per hip width (2, 3); collars in the spine3 frame
    per spine3-neck distance (2, 3); arc-length fractions of spine2 and spine3 along spine1 - spine2 - spine3 - neck
    (2,)."""
    r = default_skeleton().joints
    mid = (r[J["left_hip"]] + r[J["right_hip"]]) / 2
    hips = _frames(r[J["left_hip"]] - r[J["right_hip"]], r[J["spine1"]] - mid, primary_x=True)
    width = np.linalg.norm(r[J["left_hip"]] - r[J["right_hip"]])
    pelvis = (r[[J["pelvis"], J["spine1"]]] - mid) @ hips / width
    s3, neck = r[J["spine3"]], r[J["neck"]]
    chest = _frames(r[J["left_collar"]] - r[J["right_collar"]], neck - s3, primary_x=False)
    collars = (r[[J["left_collar"], J["right_collar"]]] - s3) @ chest / np.linalg.norm(neck - s3)
    steps = np.linalg.norm(np.diff(r[[J["spine1"], J["spine2"], J["spine3"], J["neck"]]], axis=0), axis=-1)
    # Made left-right symmetric: SMPL-X's rest hip line is tilted (1.2 cm) and its collars differ, which would put
    # the pelvis and collars of a symmetric Bandai body off its midline.
    pelvis[:, 0] = 0.0
    side = np.abs(collars[:, 0]).mean()
    collars = np.stack([collars.mean(0)] * 2)
    collars[:, 0] = side, -side
    return pelvis, collars, np.cumsum(steps)[:2] / steps.sum()


def _along(chain: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Points (F, K, 3) at arc-length `fractions` (K,) of polylines (F, N, 3)."""
    seg = np.linalg.norm(np.diff(chain, axis=1), axis=-1)  # (F, N-1)
    cum = np.concatenate([np.zeros((len(seg), 1)), np.cumsum(seg, axis=1)], axis=1)
    s = fractions[None] * cum[:, -1:]  # (F, K)
    k = np.clip((cum[:, None, 1:] < s[..., None]).sum(-1), 0, seg.shape[1] - 1)  # segment holding s
    f = np.arange(len(chain))[:, None]
    t = (s - cum[f, k]) / np.maximum(seg[f, k], 1e-9)
    return chain[f, k] + t[..., None] * (chain[f, k + 1] - chain[f, k])


def bandai_to_smpl(clip: Bvh, scale: float = 0.01) -> np.ndarray:
    """(F, 22, 3) SMPL-order joint positions (metres for the dataset's centimetres) of a Bandai BVH clip."""
    pos = clip.global_positions(scale)
    return bandai_positions_to_smpl({name: pos[:, clip.index(name)] for name in clip.names})


def bandai_positions_to_smpl(bandai: dict[str, np.ndarray]) -> np.ndarray:
    """(F, 22, 3) SMPL joints from Bandai global joint positions (name -> (F, 3), already in metres)."""
    pelvis_c, collar_c, spine_f = smpl_constants()
    frames = len(next(iter(bandai.values())))
    out = np.empty((frames, len(JOINT_NAMES), 3))
    for smpl, name in BANDAI_TO_SMPL.items():
        out[:, J[smpl]] = bandai[name]
    left, right = bandai["UpperLeg_L"], bandai["UpperLeg_R"]
    mid = (left + right) / 2
    hips = _frames(left - right, bandai["Spine"] - mid, primary_x=True)
    width = np.linalg.norm(left - right, axis=-1)[:, None, None]
    out[:, [J["pelvis"], J["spine1"]]] = mid[:, None] + width * np.einsum("fab,kb->fka", hips, pelvis_c)
    chain = np.stack([out[:, J["spine1"]], bandai["Chest"], bandai["Neck"]], axis=1)
    out[:, [J["spine2"], J["spine3"]]] = _along(chain, spine_f)
    s3, neck = out[:, J["spine3"]], bandai["Neck"]
    chest = _frames(bandai["Shoulder_L"] - bandai["Shoulder_R"], neck - s3, primary_x=False)
    length = np.linalg.norm(neck - s3, axis=-1)[:, None, None]
    out[:, [J["left_collar"], J["right_collar"]]] = s3[:, None] + length * np.einsum("fab,kb->fka", chest, collar_c)
    return out
