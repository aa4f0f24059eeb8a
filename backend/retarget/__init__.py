"""From joint positions to an animatable skeleton: `retarget(motion) -> Retargeted`.

A `Motion`'s joints (T, 22, 3) become a root translation and local rotations on a rest skeleton (default: SMPL-X
neutral, see `rest_pose`), with bone lengths matched to that skeleton (the rotations are what transfer), root motion
scaled to its legs, the lowest foot on the floor, optional foot locking, optional in-place root, refinement (see
`REFINE_MODES`), and resampling to any frame rate.
`Retargeted.fk()` gives the positions; `write_bvh` a BVH file.

Steps, in order: analytic IK (`ik`) -> refinement (`refine`, skippable) -> optional foot locking on the FK positions
(contacts measured from the clip's floor), re-solved exactly (`feet`) -> optional in-place (root X and Z set to 0,
height and rotations kept) -> optional frame-rate conversion (`resample`) -> ground alignment (the lowest ankle or
foot joint of the delivered frames at y = 0).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from backend.motion import bvh
from backend.motion.humanml3d_skeleton import check_joints
from backend.errors import InvalidRequest
from backend.motion import Motion
from backend.retarget import feet, ik, kinematics
from backend.retarget.kinematics import forward_kinematics, match_bone_lengths, travel_scale
from backend.retarget.refine import refine as refine_rotations
from backend.retarget.refine_modes import GENERATED_REFINE, REFINE_MODES
from backend.retarget.resample import resample, source_positions
from backend.retarget.ik import fitted_skeleton
from backend.retarget.rest_pose import RestSkeleton, default_skeleton
from backend.retarget.smpl_model import skeleton_from_model

__all__ = ["GENERATED_REFINE", "REFINE_MODES", "Retargeted", "RestSkeleton", "default_skeleton", "fitted_skeleton",
           "retarget", "skeleton_from_model", "travel_scale", "write_bvh"]


@dataclass
class Retargeted:
    """Animation on a rest skeleton: metres, Y up, facing +Z at rest, SMPL joint order.

    `root_translation` (T, 3) is the pelvis's world position per frame (not an offset from its rest position);
    `local_quats` (T, 22, 4) are w, x, y, z rotations of each joint relative to its parent, relative to the rest pose
    (identity = rest pose), sign-continuous over time; `rest_joints` (22, 3) the rest positions.
    """

    root_translation: np.ndarray
    local_quats: np.ndarray
    fps: float
    rest_joints: np.ndarray
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    contacts: np.ndarray | None = None  # (T, 2) left/right foot contacts used for locking, at `fps`

    @property
    def num_frames(self) -> int:
        return int(self.local_quats.shape[0])

    @property
    def duration(self) -> float:
        """Seconds: frames / fps (the convention `resample` preserves)."""
        return self.num_frames / self.fps

    @property
    def offsets(self) -> np.ndarray:
        off = np.array(self.rest_joints, dtype=np.float64)
        off[1:] -= self.rest_joints[list(self.parents[1:])]
        return off

    def resampled(self, fps: float) -> "Retargeted":
        """The animation at another frame rate (duration = frames / fps preserved; frame 0 stays frame 0)."""
        if fps == self.fps:
            return self
        root, quats = resample(self.root_translation, self.local_quats, self.fps, fps)
        contacts = None if self.contacts is None else _resample_flags(self.contacts, self.fps, fps)
        return replace(self, root_translation=root, local_quats=quats, fps=fps, contacts=contacts)

    def trimmed(self, first: int) -> "Retargeted":
        """The animation without its first `first` frames."""
        return replace(self, root_translation=self.root_translation[first:], local_quats=self.local_quats[first:],
                       contacts=None if self.contacts is None else self.contacts[first:])

    def fk(self) -> np.ndarray:
        """Global joint positions (T, 22, 3) by forward kinematics."""
        return forward_kinematics(self.root_translation, self.local_quats, self.offsets, self.parents)[0]

    def bvh_text(self, scale: float = 1.0, rotation_order: str = "ZXY") -> str:
        """BVH text: SMPL joint names, Y up, lengths times `scale` (1 = metres, 100 = centimetres)."""
        if not (np.isfinite(scale) and scale > 0):
            raise InvalidRequest(f"BVH scale must be positive, got {scale}")
        skeleton = RestSkeleton(self.rest_joints, self.joint_names, self.parents)
        tips = {j: v * scale for j, v in skeleton.end_sites().items()}
        return bvh.format_bvh(self.joint_names, self.parents, self.offsets * scale, self.root_translation * scale,
                              self.local_quats, 1.0 / self.fps, tips, rotation_order)


def retarget(motion: Motion, skeleton: RestSkeleton | None = None, target_fps: float | None = None,
             in_place: bool = False, foot_lock: bool = False, refine: str = "directions", ground: bool = True,
             scale_root: bool = True, device: str = "cpu", root_scale: float | None = None) -> Retargeted:
    """Retarget `motion` (joints in metres, Y up, at `motion.fps`) onto `skeleton` (default SMPL-X neutral).

    `scale_root` scales root motion by the ratio of the target's leg length to the clip's (`root_scale`, when given,
    is the ratio to use instead: `travel_scale(skeleton)` for a motion generated for controls in the target's
    space, so that its root lands on them; refinement then leaves the root there); `refine` picks the
    Gauss-Newton refinement (`REFINE_MODES`; torch, on `device`; ~30 ms for 196 frames on one CPU core); `ground`
    puts the clip's
    lowest ankle/foot joint on y = 0; `foot_lock` holds feet still during their contacts (the contact channels of
    `motion.features` when it has them, else contacts detected from the joints); `in_place` zeroes the root's X and
    Z; `target_fps` resamples (duration = frames / fps preserved). Raises InvalidRequest for empty, non-finite or
    misshapen joints.
    """
    joints = check_joints(motion.joints, min_frames=1)
    fps = float(motion.fps)
    skeleton = skeleton or default_skeleton()
    if root_scale is not None and not (np.isfinite(root_scale) and root_scale > 0):
        raise InvalidRequest(f"root_scale must be positive, got {root_scale!r}")
    scale = root_scale if root_scale is not None else \
        kinematics.root_scale(joints, skeleton) if scale_root else 1.0
    root, quats = ik.solve(joints, skeleton, fps, scale)
    if refine not in REFINE_MODES:
        raise InvalidRequest(f"refine must be one of {', '.join(REFINE_MODES)}, got {refine!r}")
    if refine != "off":
        root, quats = refine_rotations(root, quats, skeleton, match_bone_lengths(joints, skeleton, scale),
                                       device=device, move_root=root_scale is None,
                                       keep_directions=refine == "directions")
    contacts = None
    if foot_lock:
        positions = forward_kinematics(root, quats, skeleton.offsets)[0]
        positions[..., 1] -= feet.floor_height(positions)  # contact heights are measured from the floor
        # The motion's own contact channels when it has them (generated or prepared clips), else detection.
        has_channels = motion.features is not None and len(motion.features) == len(joints)
        contacts = feet.predicted_contacts(motion.features) if has_channels else feet.detect_contacts(positions, fps)
        contacts = feet.trim_contacts(positions, contacts)
        if contacts.any():
            root, quats = ik.solve(feet.lock_feet(positions, contacts, fps), skeleton, fps)
    if in_place:
        root = root * np.array([0.0, 1.0, 0.0])
    result = Retargeted(root, quats, fps, skeleton.joints.copy(), skeleton.names, skeleton.parents, contacts)
    if target_fps is not None:
        result = result.resampled(float(target_fps))
    if ground:  # last, on the frames delivered
        floor = feet.floor_height(result.fk())
        result = replace(result, root_translation=result.root_translation - np.array([0.0, floor, 0.0]))
    return result


def _resample_flags(flags: np.ndarray, fps: float, target_fps: float) -> np.ndarray:
    """Nearest-frame resampling of per-frame flags."""
    return flags[np.rint(source_positions(len(flags), fps, target_fps)).astype(np.int64)]


def write_bvh(motion: Motion, path: str | Path, fps: float | None = None, scale: float = 1.0,
              in_place: bool = False, foot_lock: bool = False, refine: str = "directions",
              skeleton: RestSkeleton | None = None, root_scale: float | None = None) -> Retargeted:
    """Retarget `motion` and write it as a BVH file (what `motionlcm generate ... --out clip.bvh` calls)."""
    result = retarget(motion, skeleton, target_fps=fps, in_place=in_place, foot_lock=foot_lock, refine=refine,
                      root_scale=root_scale)
    Path(path).write_text(result.bvh_text(scale=scale), encoding="utf-8")
    return result
