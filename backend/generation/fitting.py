"""Control fitting: a decoded motion bent onto its joint controls, exactly, in milliseconds.

The ControlNet steers the sampler towards the controls but does not meet them. This step, after features ->
joints, meets them by changing only what each control owns:

- pelvis: the root trajectory is warped. Controlled frames get the control's position; between sparse waypoints
  the offset to the drafted path is interpolated (modified Akima), outside them it is held. Where the body travels,
  its heading turns with the path's tangent (the drafted facing-to-travel angle is kept, so a sidestep stays a
  sidestep); every pose relative to the pelvis is kept. The pelvis height moves the upper body, and each leg is
  re-solved by two-bone IK so that its ankle stays where it was (lifted only when the leg cannot reach).
- head: the spine bends as a two-segment chain (spine1-spine3-head) to put the head on its target.
- wrists: two-bone IK from the shoulder, the upper body leaning about spine1 first where the target is past arm's
  length; feet: two-bone IK from the hip, the foot carried with the ankle.
  Offsets are interpolated between waypoints and eased out over EASE_FRAMES outside them.

What cannot be met (out of reach, a pelvis outside PELVIS_HEIGHT_RANGE, a path faster than MAX_PATH_SPEED) is not
silenced: `FitReport` carries the error reached per joint and a warning that names it. The features are rewritten
from the fitted joints (root block, ric, velocities; contacts and rotations kept), so `features_to_joints` of them
reproduces the fitted motion up to its placement at frame 0, which features cannot hold (origin, facing +Z).
Space: HumanML3D (metres, Y up, 20 fps; facing angle = atan2(x, z)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import Akima1DInterpolator
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

from backend.generation.controls import JointControl
from backend.motion.features import RIC_SLICE, VELOCITY_SLICE
from backend.motion.humanml3d_skeleton import forward_from_across
from backend.motion.rotations import quat_about_y, quat_between, quat_rotate
from backend.motion.skeleton import FPS, JOINT_INDEX, NUM_JOINTS, subtree
from backend.retarget.feet import LEGS, two_bone_ik

MOVING_SPEED = 0.3  # m/s: below it (either path) the travel direction means nothing, so heading is not turned
HEADING_SIGMA = 4.0  # frames: how fast the heading follows a turn of the path (0.2 s)
EASE_FRAMES = 10  # a limb's correction fades out over 0.5 s outside its controlled frames
PELVIS_HEIGHT_RANGE = (0.2, 1.6)  # metres: lying low to the top of a jump; outside it the pelvis is not moved
MAX_PATH_SPEED = 8.0  # m/s over SPEED_WINDOW frames: beyond a sprint; the path is followed and the feet slide
SPEED_WINDOW = 10
TRAVEL_RATIO, TRAVEL_CHECK_M = 2.0, 1.0  # path length against the draft's beyond which the feet must slide
LEAN_STEPS = 9  # lean fractions tried for a wrist beyond arm's length
ERROR_WARNING = (0.05, 0.15)  # metres, mean and max: a fitted control further off than this is reported

_J = JOINT_INDEX
_ARMS = {"left_wrist": (_J["left_shoulder"], _J["left_elbow"], _J["left_wrist"]),
         "right_wrist": (_J["right_shoulder"], _J["right_elbow"], _J["right_wrist"])}
_LEG_OF_FOOT = {"left_foot": LEGS[0], "right_foot": LEGS[1]}
_UPPER_BODY = subtree(_J["spine2"])  # what turns about spine1 when the spine bends or leans
_ABOVE_SPINE3 = subtree(_J["spine3"])[1:]
_LOWER_LEGS = [j for leg in LEGS for j in leg[1:]]  # knees, ankles, feet: kept by IK when the pelvis height moves


@dataclass
class JointError:
    mean: float  # metres over the controlled frames
    max: float

    def to_dict(self) -> dict[str, float]:
        return {"mean_m": round(self.mean, 4), "max_m": round(self.max, 4)}


@dataclass
class FitReport:
    """Per controlled joint, the error of the draft (the ControlNet alone) and of the delivered motion."""

    fitted: bool
    draft: dict[str, JointError] = field(default_factory=dict)
    final: dict[str, JointError] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"fitted": self.fitted, "draft": {j: e.to_dict() for j, e in self.draft.items()},
                "error": {j: e.to_dict() for j, e in self.final.items()}, "warnings": list(self.warnings)}


def control_errors(joints: np.ndarray, controls: Sequence[JointControl], scale: float = 1.0) -> dict[str, JointError]:
    """Distance of each controlled joint from its control positions over the controlled frames, times `scale`."""
    out = {}
    for c in controls:
        d = np.linalg.norm(joints[c.frames, c.index] - c.positions, axis=-1) * scale
        out[c.joint] = JointError(float(d.mean()), float(d.max()))
    return out


def _offsets(control: JointControl, current: np.ndarray, length: int, hold: bool) -> np.ndarray:
    """(length, 3) correction from `current` (length, 3) to the control: exact at its frames, modified Akima
    between them; outside them held (`hold`) or eased to zero over EASE_FRAMES."""
    frames = control.frames
    delta = control.positions.astype(np.float64) - current[frames]
    t = np.arange(length)
    if len(frames) == 1:
        out = np.repeat(delta, length, axis=0)
    else:
        # Modified Akima: C1 through every waypoint with little overshoot, so the pelvis does not speed up between
        # waypoints. Worst peak speed over the faster of draft and path, bench_control's 40 paths at density
        # 0.25: makima 1.55, PCHIP 1.73, Akima 1.80; linear 1.32 but with a kink at every waypoint.
        out = Akima1DInterpolator(frames, delta, axis=0, method="makima", extrapolate=False)(t)
        out[t < frames[0]], out[t > frames[-1]] = delta[0], delta[-1]
    if not hold:
        gap = np.maximum(frames[0] - t, t - frames[-1]).clip(min=0)
        x = np.clip(1.0 - gap / (EASE_FRAMES + 1.0), 0.0, 1.0)
        out *= (x * x * (3 - 2 * x))[:, None]
    return out


def _direction_angle(xz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the travel direction angle atan2(dx, dz) of a smoothed (T, 2) path, and its speed (m/s)."""
    smooth = gaussian_filter1d(xz, 2.0, axis=0, mode="nearest")
    v = np.gradient(smooth, axis=0) * FPS
    return np.arctan2(v[:, 0], v[:, 1]), np.linalg.norm(v, axis=-1)


def heading_change(draft_xz: np.ndarray, target_xz: np.ndarray) -> np.ndarray:
    """(T,) yaw (radians, about +Y, atan2(x, z) convention) turning the draft's travel onto the target's.

    Averaged as unit vectors weighted by how much both paths move (so gait sway and standing still do not
    turn the body); where neither moves nearby, the nearest moving frames' turn is held."""
    a_draft, s_draft = _direction_angle(draft_xz)
    a_target, s_target = _direction_angle(target_xz)
    weight = np.clip(np.minimum(s_draft, s_target) / MOVING_SPEED, 0.0, 1.0) ** 2
    turn = np.exp(1j * (a_target - a_draft)) * weight
    smooth = gaussian_filter1d(turn.real, HEADING_SIGMA, mode="nearest") \
        + 1j * gaussian_filter1d(turn.imag, HEADING_SIGMA, mode="nearest")
    known = np.abs(smooth) > 0.05 * max(float(np.abs(smooth).max()), 1e-12)
    if not known.any() or weight.max() == 0:
        return np.zeros(len(draft_xz))
    angle = np.unwrap(np.angle(smooth[known]))
    return np.interp(np.arange(len(draft_xz)), np.flatnonzero(known), angle)


def _yaw(angle: np.ndarray | float, v: np.ndarray) -> np.ndarray:
    """Vectors (..., 3) turned by `angle` (broadcast over leading axes) about +Y: direction angle + `angle`."""
    return quat_rotate(quat_about_y(np.asarray(angle, dtype=np.float64)), v)


def _set_pelvis_height(joints: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Raise or lower everything above the knees to `height` (T,); legs re-solved to keep the ankles."""
    out = joints.copy()
    dy = height - joints[:, 0, 1]
    upper = [j for j in range(NUM_JOINTS) if j not in _LOWER_LEGS]
    out[:, upper, 1] += dy[:, None]
    forward = _forward(out)
    for hip, knee, ankle, foot in LEGS:
        lift = out[:, hip] - joints[:, hip]  # the knee starts where the hip took it, to keep its bend plane
        knee_p, ankle_p = two_bone_ik(out[:, hip], joints[:, knee] + lift, joints[:, ankle] + lift,
                                      joints[:, ankle], forward)
        out[:, foot] = joints[:, foot] + ankle_p - joints[:, ankle]
        out[:, knee], out[:, ankle] = knee_p, ankle_p
    return out


def _forward(joints: np.ndarray) -> np.ndarray:
    """Horizontal forward directions (T, 3) from the hips: where knees bend."""
    return forward_from_across(joints[:, _J["right_hip"]] - joints[:, _J["left_hip"]])


def fit_pelvis(joints: np.ndarray, control: JointControl, warnings: list[str], scale: float = 1.0) -> np.ndarray:
    """The motion with its pelvis on `control` (see the module docstring)."""
    length = len(joints)
    target = joints[:, 0] + _offsets(control, joints[:, 0], length, hold=True)
    low, high = PELVIS_HEIGHT_RANGE
    if target[:, 1].min() < low or target[:, 1].max() > high:
        worst = float(target[:, 1].max() if target[:, 1].max() > high else target[:, 1].min())
        warnings.append(f"pelvis: the path reaches {worst * scale:.2f} m above the floor; this body's pelvis stays "
                        f"between {low * scale:.2f} and {high * scale:.2f} m, so it is kept in that range there")
        target[:, 1] = target[:, 1].clip(low, high)
    warnings += _path_warnings(joints[:, 0], target, scale)
    turn = heading_change(joints[:, 0, [0, 2]], target[:, [0, 2]])
    pelvis_xz = joints[:, :1] * np.array([1.0, 0.0, 1.0])
    out = _yaw(turn[:, None], joints - pelvis_xz) + target[:, None] * np.array([1.0, 0.0, 1.0])
    return _set_pelvis_height(out, target[:, 1])


def _path_warnings(drafted: np.ndarray, target: np.ndarray, scale: float) -> list[str]:
    """What a pelvis path (T, 3) asks that a body cannot do well: more than a sprint, or much more or less travel
    than the drafted pelvis (T, 3) covers, so that the feet must slide."""
    out = []
    window = min(SPEED_WINDOW, len(target) - 1)
    travel = np.linalg.norm(target[window:, [0, 2]] - target[:-window, [0, 2]], axis=-1) * FPS / window
    if travel.size and travel.max() > MAX_PATH_SPEED:
        out.append(f"pelvis: the path moves at up to {travel.max() * scale:.1f} m/s, faster than a person runs "
                   f"(about {MAX_PATH_SPEED * scale:.0f} m/s at most): it is followed, but the feet slide")
    drafted_m, wanted_m = (float(np.linalg.norm(np.diff(p[:, [0, 2]], axis=0), axis=-1).sum())
                           for p in (drafted, target))
    if wanted_m > TRAVEL_CHECK_M and not 1 / TRAVEL_RATIO <= drafted_m / max(wanted_m, 1e-9) <= TRAVEL_RATIO:
        out.append(f"pelvis: the generated motion travels {drafted_m * scale:.1f} m but the path is "
                   f"{wanted_m * scale:.1f} m long: the pelvis follows the path, but the feet slide; a prompt whose "
                   "motion covers that ground (walks, runs) fits better")
    return out


def fit_head(joints: np.ndarray, control: JointControl) -> np.ndarray:
    """Bend the spine as a two-segment chain (spine1-spine3, spine3-head; two-bone IK, bending forward where it
    is straight) so the head meets its (interpolated) target; what rides on each segment turns with it."""
    length, spine1, spine3, head = len(joints), _J["spine1"], _J["spine3"], _J["head"]
    goal = joints[:, head] + _offsets(control, joints[:, head], length, hold=False)
    new_spine3, new_head = two_bone_ik(joints[:, spine1], joints[:, spine3], joints[:, head], goal, _forward(joints))
    out = _turn_subtree(joints, spine1, _UPPER_BODY,
                        _arc(joints[:, spine3] - joints[:, spine1], new_spine3 - joints[:, spine1]))
    return _turn_subtree(out, spine3, _ABOVE_SPINE3, _arc(out[:, head] - out[:, spine3], new_head - out[:, spine3]))


def _arc(u: np.ndarray, v: np.ndarray, fraction: np.ndarray | float = 1.0) -> np.ndarray:
    """(T, 4) unit quaternions turning by `fraction` (T,) of the shortest arc from directions u to v."""
    q = quat_between(u, v)
    sin_half = np.linalg.norm(q[:, 1:], axis=-1)
    half = np.arctan2(sin_half, q[:, 0]) * fraction
    axis = q[:, 1:] / sin_half.clip(min=1e-12)[:, None]
    return np.concatenate([np.cos(half)[:, None], axis * np.sin(half)[:, None]], axis=-1)


def _turn_subtree(joints: np.ndarray, pivot: int, joints_moved: list[int], rot: np.ndarray) -> np.ndarray:
    """`joints_moved` turned by the quaternions `rot` (T, 4) about joint `pivot`."""
    centre = joints[:, pivot, None]
    out = joints.copy()
    out[:, joints_moved] = quat_rotate(rot[:, None], joints[:, joints_moved] - centre) + centre
    return out


def _lean_towards(joints: np.ndarray, shoulder: int, reach: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Lean the upper body about spine1 towards `goal` just enough (per frame, then smoothed) for the arm's
    `reach` (T,) from `shoulder` to meet it: what a person does to touch something past arm's length."""
    spine1 = joints[:, _J["spine1"]]
    fractions = np.linspace(0.0, 1.0, LEAN_STEPS)
    need = np.ones(len(joints))
    for f in fractions[::-1]:  # the smallest lean that reaches
        moved = quat_rotate(_arc(joints[:, shoulder] - spine1, goal - spine1, f), joints[:, shoulder] - spine1) + spine1
        need = np.where(np.linalg.norm(goal - moved, axis=-1) <= reach, f, need)
    need = np.maximum(gaussian_filter1d(maximum_filter1d(need, 5), 1.5, mode="nearest"), need)
    return _turn_subtree(joints, _J["spine1"], _UPPER_BODY,
                         _arc(joints[:, shoulder] - spine1, goal - spine1, need))


def fit_limb(joints: np.ndarray, control: JointControl) -> np.ndarray:
    """Two-bone IK of a wrist (from its shoulder) or a foot (from its hip, the foot carried with the ankle)."""
    length, out = len(joints), joints.copy()
    forward = _forward(joints)
    if control.joint in _ARMS:
        root, mid, end = _ARMS[control.joint]
        goal = joints[:, end] + _offsets(control, joints[:, end], length, hold=False)
        reach = 0.999 * (np.linalg.norm(joints[:, mid] - joints[:, root], axis=-1)
                         + np.linalg.norm(joints[:, end] - joints[:, mid], axis=-1))
        out = _lean_towards(joints, root, reach, goal)
        out[:, mid], out[:, end] = two_bone_ik(out[:, root], out[:, mid], out[:, end], goal, -forward)
        return out
    hip, knee, ankle, foot = _LEG_OF_FOOT[control.joint]
    shift = _offsets(control, joints[:, foot], length, hold=False)
    out[:, knee], out[:, ankle] = two_bone_ik(joints[:, hip], joints[:, knee], joints[:, ankle],
                                              joints[:, ankle] + shift, forward)
    out[:, foot] = joints[:, foot] + out[:, ankle] - joints[:, ankle]
    return out


def fit_joints(joints: np.ndarray, controls: Sequence[JointControl],
               scale: float = 1.0) -> tuple[np.ndarray, list[str]]:
    """(T, 22, 3) joints fitted to `controls` (pelvis first, then head, wrists, feet) and the warnings raised
    (distances in them times `scale`)."""
    warnings: list[str] = []
    out = np.asarray(joints, dtype=np.float64)
    by_joint = {c.joint: c for c in controls}
    if "pelvis" in by_joint:
        out = fit_pelvis(out, by_joint["pelvis"], warnings, scale)
    if "head" in by_joint:
        out = fit_head(out, by_joint["head"])
    for name in ("left_wrist", "right_wrist", "left_foot", "right_foot"):
        if name in by_joint:
            out = fit_limb(out, by_joint[name])
    return out, warnings


def refit_features(features: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """`features` (T, 263) rewritten for `joints` (T, 22, 3): root block, ric and joint velocities from the joints
    (placed at the origin facing +Z at frame 0, as features are); 6D rotations and contacts kept."""
    out = np.array(features, dtype=np.float64)
    facing = _facing_angles(joints, out)
    canon = _yaw(-facing[0], joints - joints[:1, :1] * np.array([1.0, 0.0, 1.0]))
    rel = facing - facing[0]  # facing angle per frame in the canonical placement
    out[:-1, 0] = -0.5 * np.diff(rel)  # HumanML3D: minus half the yaw change (a left turn is negative)
    root = canon[:, 0]
    out[:-1, 1:3] = _yaw(-rel[1:], root[1:] - root[:-1])[:, [0, 2]]
    out[:, 3] = root[:, 1]
    root_xz = root * np.array([1.0, 0.0, 1.0])
    out[:, RIC_SLICE] = _yaw(-rel[:, None], canon[:, 1:] - root_xz[:, None]).reshape(len(out), -1)
    out[:-1, VELOCITY_SLICE] = _yaw(-rel[:-1, None], canon[1:] - canon[:-1]).reshape(len(out) - 1, -1)
    return out.astype(np.float32)


def _facing_angles(joints: np.ndarray, features: np.ndarray) -> np.ndarray:
    """World facing angle per frame of fitted `joints`, from the features' own (draft) facing: the ric block is
    body-relative, so the yaw taking a frame's ric onto its world joints is the facing."""
    ric = features[:, RIC_SLICE].reshape(len(features), NUM_JOINTS - 1, 3)
    world = joints[:, 1:] - joints[:, :1] * np.array([1.0, 0.0, 1.0])
    # Best yaw aligning ric to world on the horizontal plane (Procrustes in 2-D), weighted by horizontal extent.
    cross = (ric[..., 2] * world[..., 0] - ric[..., 0] * world[..., 2]).sum(-1)
    dot = (ric[..., 0] * world[..., 0] + ric[..., 2] * world[..., 2]).sum(-1)
    return np.unwrap(np.arctan2(cross, dot))


@dataclass
class FittedMotion:
    joints: np.ndarray  # (T, 22, 3) float32
    features: np.ndarray  # (T, 263) float32
    report: FitReport


def fit_motion(joints: np.ndarray, features: np.ndarray, controls: Sequence[JointControl],
               fit: bool = True, scale: float = 1.0) -> FittedMotion:
    """Fit one decoded motion (its own length) to its controls; `fit=False` only measures the draft. `scale`:
    the size of the body the controls were given for, relative to the model's (backend.retarget.travel_scale):
    the report's distances are in that body's metres."""
    draft = control_errors(joints, controls, scale)
    if not fit or not controls:
        return FittedMotion(joints, features, FitReport(False, draft, dict(draft)))
    fitted, warnings = fit_joints(joints, controls, scale)
    final = control_errors(fitted, controls, scale)
    mean_limit, max_limit = ERROR_WARNING
    for name, err in final.items():
        if err.mean > mean_limit or err.max > max_limit:
            why = "out of reach of the body" if name != "pelvis" else "outside what a body can do"
            warnings.append(f"{name}: {err.mean:.2f} m from its control on average, {err.max:.2f} m at worst "
                            f"({why})")
    return FittedMotion(fitted.astype(np.float32), refit_features(features, fitted),
                        FitReport(True, draft, final, warnings))
