"""Evaluation metrics with the definitions of MotionLCM / OmniControl (mld/models/metrics/*.py there).

Control errors, per generated clip (joints (T, 22, 3) metres, target hint positions and a mask):
  e[t, j] = ||joints[t, j] - hint[t, j]|| over controlled (t, j), 0 elsewhere;
  traj_fail_20cm / 50cm: 1 if any controlled point is off by more than 0.2 / 0.5 m (strict), else 0;
  kps_fail_20cm / 50cm:  fraction of controlled points off by more than 0.2 / 0.5 m ("location error");
  kps_mean_err(m):       mean e over controlled points ("average error").
Each is averaged over clips. FID, diversity, R-precision and the matching score work on embeddings
of a text/motion evaluator (Guo et al.), groups of 32 for R-precision as in the official code.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from backend.motion import Motion
from backend.retarget import GENERATED_REFINE, retarget
from backend.retarget.feet import floor_height, skating_ratio

CONTROL_KEYS = ("traj_fail_20cm", "traj_fail_50cm", "kps_fail_20cm", "kps_fail_50cm", "kps_mean_err(m)")
R_PRECISION_GROUP = 32


def control_errors(joints: np.ndarray, target: np.ndarray, hint_mask: np.ndarray) -> dict[str, float]:
    """One clip: joints and target (T, 22, 3) metres, hint_mask (T, 22, 3) or (T, 22), nonzero = controlled."""
    mask = np.asarray(hint_mask)
    controlled = (mask.sum(-1) != 0) if mask.ndim == 3 else mask.astype(bool)
    count = int(controlled.sum())
    if count == 0:
        raise ValueError("no controlled points: the control errors are undefined")
    error = np.linalg.norm(np.asarray(joints, np.float64) - np.asarray(target, np.float64), axis=-1)[controlled]
    return {
        "traj_fail_20cm": float((error > 0.2).any()),
        "traj_fail_50cm": float((error > 0.5).any()),
        "kps_fail_20cm": float((error > 0.2).sum() / count),
        "kps_fail_50cm": float((error > 0.5).sum() / count),
        "kps_mean_err(m)": float(error.sum() / count),
    }


def mean_control_errors(per_clip: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([clip[key] for clip in per_clip])) for key in CONTROL_KEYS}


def mean_skating_ratio(clips: list[np.ndarray], grounded: bool = False) -> float:
    """Average over clips of the OmniControl foot-skating ratio (backend.retarget.feet.skating_ratio).

    The official ratio reads raw heights. grounded=True first moves each clip so that its lowest ankle or foot
    is at y = 0, as HumanML3D's processing does for real clips and `retarget` for every BVH and .blend: a
    decoded clip's floor is rarely at 0, and the grounded ratio is the one the delivered motion has."""
    if grounded:
        clips = [clip - np.array([0.0, floor_height(clip), 0.0]) for clip in clips]
    return float(np.mean([skating_ratio(clip) for clip in clips]))


def foot_locked_skating_ratio(clips: list[np.ndarray], features: list[np.ndarray], fps: float = 20.0) -> float:
    """Average skating ratio of clips (T, 22, 3) as the BVH writer and the add-on deliver them with Foot Lock:
    retargeted onto the default body, grounded, each foot held still during the contacts that the clip's own
    (T, 263) un-normalised features predict (`backend.retarget`)."""
    return float(np.mean([skating_ratio(retarget(Motion(clip, fps=fps, features=feats), foot_lock=True,
                                                 refine=GENERATED_REFINE).fk())
                          for clip, feats in zip(clips, features, strict=True)]))


def mpjpe(joints: np.ndarray, reference: np.ndarray, align_root: bool = False) -> float:
    """Mean per-joint position error (metres) over all frames and joints of (T, 22, 3) arrays. align_root:
    both skeletons moved to their own pelvis every frame first (the official `MPJPE`; without it, the
    official `MPJPE_unaligned`, which also counts drift of the root trajectory)."""
    joints, reference = np.asarray(joints, np.float64), np.asarray(reference, np.float64)
    if align_root:
        joints, reference = joints - joints[:, :1], reference - reference[:, :1]
    return float(np.linalg.norm(joints - reference, axis=-1).mean())


def frame_jumps(joints: np.ndarray) -> np.ndarray:
    """(T - 1,) the largest joint displacement (metres) at each frame step of a (T, 22, 3) clip: what a pop is."""
    return np.linalg.norm(np.diff(np.asarray(joints, np.float64), axis=0), axis=-1).max(axis=1)


def horizontal_speed(joints: np.ndarray, fps: float, joint: int = 0) -> float:
    """Mean ground-plane speed (m/s) of one joint (default the pelvis) over a (T, 22, 3) Y-up clip."""
    steps = np.diff(np.asarray(joints, np.float64)[:, joint][:, [0, 2]], axis=0)
    return float(np.linalg.norm(steps, axis=-1).mean() * fps)


def body_motion(joints: np.ndarray) -> float:
    """How far (m, RMS over frames and joints) the joints of a (T, 22, 3) clip move around their mean place
    relative to the pelvis: limb swing and gestures, apart from travelling. A held pose scores 0, and so does
    frame-to-frame jitter around it, almost (a speed would count the jitter as motion)."""
    local = np.asarray(joints, np.float64)
    local = local[:, 1:] - local[:, :1]
    return float(np.sqrt(((local - local.mean(axis=0)) ** 2).sum(-1).mean()))


def height_above_pelvis(joints: np.ndarray, joint: int) -> float:
    """Highest height (m) of `joint` over the pelvis in a (T, 22, 3) Y-up clip: how far a hand is raised."""
    joints = np.asarray(joints, np.float64)
    return float((joints[:, joint, 1] - joints[:, 0, 1]).max())


def diversity(activations: np.ndarray, times: int, rng: np.random.Generator) -> float:
    """Mean distance between `times` random pairs of rows (two independent draws without replacement)."""
    activations = np.asarray(activations, np.float64)
    if activations.shape[0] < times:
        raise ValueError(f"diversity needs at least {times} samples, got {activations.shape[0]}")
    first = rng.choice(activations.shape[0], times, replace=False)
    second = rng.choice(activations.shape[0], times, replace=False)
    return float(np.linalg.norm(activations[first] - activations[second], axis=1).mean())


def multimodality(activations: np.ndarray, times: int, rng: np.random.Generator) -> float:
    """activations (N texts, R repeats, D): mean distance between `times` random pairs of repeats per text."""
    activations = np.asarray(activations, np.float64)
    first = rng.choice(activations.shape[1], times, replace=False)
    second = rng.choice(activations.shape[1], times, replace=False)
    return float(np.linalg.norm(activations[:, first] - activations[:, second], axis=2).mean())


def frechet_distance(real: np.ndarray, generated: np.ndarray, eps: float = 1e-6) -> float:
    """FID between Gaussians fitted to two sets of embeddings (N, D)."""
    mu1, mu2 = real.mean(0), generated.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(generated, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # a near-singular product: regularise as the reference code does
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def r_precision_and_matching(text_emb: np.ndarray, motion_emb: np.ndarray, top_k: int = 3,
                             group: int = R_PRECISION_GROUP) -> dict[str, float]:
    """Within groups of 32 pairs: is the matching motion among the k nearest to its text? Plus the mean
    text-motion distance of matching pairs (the matching score)."""
    n = (text_emb.shape[0] // group) * group
    if n == 0:
        raise ValueError(f"R-precision needs at least {group} text/motion pairs, got {text_emb.shape[0]}")
    hits, matching = np.zeros(top_k), 0.0
    for start in range(0, n, group):
        t, m = text_emb[start:start + group], motion_emb[start:start + group]
        dist = np.linalg.norm(t[:, None, :] - m[None, :, :], axis=-1)
        matching += float(np.trace(dist))
        rank = np.argsort(dist, axis=1)
        for k in range(top_k):
            hits[k] += float((rank[:, : k + 1] == np.arange(group)[:, None]).any(axis=1).sum())
    result = {f"R_precision_top_{k + 1}": hits[k] / n for k in range(top_k)}
    result["Matching_score"] = matching / n
    return result
