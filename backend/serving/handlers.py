"""What the worker does for each queued request type: engine calls in, reply fields out.

`report(stage, fraction)` sends a progress message and raises protocol.Cancelled once the request
was cancelled; the pipeline calls it between stages, so that is where a generation stops.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from backend.serving.body_mesh import body_mesh, model_body
from backend.serving.protocol import GenerateRequest, encode_array
from backend.retarget import GENERATED_REFINE, retarget, travel_scale
from backend.retarget.rest_pose import RestSkeleton, default_skeleton
from backend.motion.skeleton import FPS, JOINT_NAMES, PARENTS

Report = Callable[[str, float], None]


@lru_cache(maxsize=2)
def target_body(body: Any) -> tuple[RestSkeleton, dict[str, np.ndarray]]:
    """The skeleton a generation is retargeted to unless it names its own, and the skinned mesh on it: the
    mannequin on the default skeleton, or the user's SMPL/SMPL-X model (`body` is a server.BodyModel).
    Cached; a failure (a bad SMPL folder) is not, so fixing the folder helps the next request."""
    betas = np.array(body.betas) if body.betas else None
    if body.smpl_dir is None:
        skeleton = default_skeleton(betas)
        return skeleton, body_mesh(skeleton.joints)
    joints, mesh = model_body(body.smpl_dir, body.gender, betas)
    return RestSkeleton(joints), mesh


def skeleton_fields(body: Any, encode: Callable[[np.ndarray], Any] = encode_array) -> dict[str, Any]:
    """The `skeleton` reply: the target rest skeleton and its mesh (arrays through `encode`: the wire format,
    or np.asarray for in-process use)."""
    skeleton, mesh = target_body(body)
    return {"joint_names": list(JOINT_NAMES), "parents": list(PARENTS), "rest_joints": encode(skeleton.joints),
            "mesh": {name: encode(array) for name, array in mesh.items()}}


def result_fields(seeds: list[int], targets: list[Any], settings: dict[str, Any], timings: dict[str, float],
                  encode: Callable[[np.ndarray], Any] = encode_array,
                  fit_reports: list[Any] | None = None) -> dict[str, Any]:
    """The `result` of a generate: one entry per retargeted variation (backend.retarget.Retargeted), each with
    its control report (backend.generation.fitting.FitReport) when the request had controls."""
    first = targets[0]  # every variation shares the skeleton, frame rate and length
    variations = [{"seed": int(seed), "root_translation": encode(target.root_translation),
                   "local_quats": encode(target.local_quats), "joints": encode(target.fk())}
                  for seed, target in zip(seeds, targets)]
    for variation, report in zip(variations, fit_reports or []):
        variation["controls"] = report.to_dict()
    return {"fps": float(first.fps), "frame_count": first.num_frames, "joint_names": list(first.joint_names),
            "parents": list(first.parents), "rest_joints": encode(first.rest_joints), "variations": variations,
            "settings": _jsonable(settings), "timings": timings}


def run_generate(pipeline: Any, request: GenerateRequest, report: Report, skeleton: RestSkeleton) -> dict[str, Any]:
    """Generate, retarget every variation onto the request's skeleton, else `skeleton` (target_body's), and build
    the `result` fields. Controls are in the target's space: generated at the model's size and retargeted with
    the matching root scale, so that the target's own root lands on them (not 7 % past them, as the default
    body's longer legs would carry it)."""
    if request.is_timeline:
        return run_timeline(pipeline, request, report, request.skeleton or skeleton)
    start = time.perf_counter()
    target = request.skeleton or skeleton
    scale = travel_scale(target) if request.controls else None
    if request.engine == "ar":  # backend.generation.ar_pipeline: prompt and length only
        generation = pipeline.generate([request.prompt], [request.frames], seed=request.seed,
                                       variations=request.variations, temperature=request.temperature,
                                       top_k=request.top_k, guidance=request.guidance, progress=report)
    else:
        generation = pipeline.generate(
            [request.prompt], [request.frames], controls=[request.controls] if request.controls else None,
            steps=request.steps, guidance=request.guidance, seed=request.seed, variations=request.variations,
            tuning=request.tuning, fit=request.fit, control_scale=scale or 1.0, progress=report)
    report("retargeting", 0.0)
    retarget_start = time.perf_counter()
    targets = []
    for i, motion in enumerate(generation.motions):
        targets.append(retarget(motion, skeleton=target, target_fps=request.target_fps, in_place=request.in_place,
                                foot_lock=request.foot_lock, root_scale=scale, refine=GENERATED_REFINE))
        report("retargeting", (i + 1) / len(generation.motions))
    timings = {name: float(ms) for name, ms in dict(generation.timings).items()}
    timings["retarget"] = (time.perf_counter() - retarget_start) * 1000.0
    timings["total"] = (time.perf_counter() - start) * 1000.0
    settings = {**generation.settings, "prompt": request.prompt, "frames": request.frames,
                "target_fps": float(targets[0].fps), "in_place": request.in_place, "foot_lock": request.foot_lock}
    return result_fields(generation.seeds, targets, settings, timings, fit_reports=generation.fit_reports)


def run_timeline(pipeline: Any, request: GenerateRequest, report: Report, target: RestSkeleton) -> dict[str, Any]:
    """A timeline, a motion longer than one clip or a continuation, as one variation, plus `segments` (prompt,
    start frame and frame count at the delivered frame rate) for markers.

    Controls and the motion to continue are in the target's space: they are brought to the model's size
    (travel_scale, as for single clips; the motion also onto the model's bone lengths) and the result is
    retargeted with that root scale. A continuation is
    retargeted together with the last frames it continues (then dropped), so that foot contacts see the seam,
    and keeps their floor (docs/protocol.md)."""
    from backend.generation.controls import scale_controls
    from backend.generation.timeline import OVERLAP, generate_timeline
    from backend.motion import Motion
    from backend.motion.humanml3d_skeleton import uniform_skeleton

    start = time.perf_counter()
    scale = travel_scale(target) if (request.controls or request.previous is not None) else None
    controls = scale_controls(request.controls, 1.0 / scale) if (scale and request.controls) else request.controls
    # The motion to continue on the model's body (its bone directions, the model's bone lengths, the root at the
    # model's size): the seam is then joined on one rigid body, which the retargeting maps back without a kink.
    previous = None if request.previous is None else uniform_skeleton(request.previous, root_scale=1.0 / scale)
    timeline = generate_timeline(pipeline, request.segments, controls=controls, previous=previous,
                                 seed=request.seed, steps=request.steps, fit=request.fit, progress=report)
    report("retargeting", 0.0)
    retarget_start = time.perf_counter()
    tail = 0 if previous is None else min(OVERLAP, len(previous))
    joints = timeline.joints if not tail else np.concatenate([previous[-tail:], timeline.joints])
    motion = Motion(joints=joints.astype(np.float32))
    # A continuation keeps the given motion's floor (grounding the new frames on their own would lift them), and
    # is resampled after the given frames are dropped, so that its first frame is the first new one.
    retargeted = retarget(motion, skeleton=target, target_fps=None if tail else request.target_fps,
                          in_place=request.in_place, foot_lock=request.foot_lock, root_scale=scale,
                          refine=GENERATED_REFINE, ground=not tail)
    if tail:
        retargeted = retargeted.trimmed(tail).resampled(float(request.target_fps or FPS))
    fps = float(retargeted.fps)
    report("retargeting", 1.0)
    timings = {name: float(ms) for name, ms in timeline.timings.items()}
    timings["retarget"] = (time.perf_counter() - retarget_start) * 1000.0
    timings["total"] = (time.perf_counter() - start) * 1000.0
    seed = timeline.seeds[0]
    settings = {"prompt": request.prompt, "frames": request.frames, "seed": seed, "seeds": timeline.seeds,
                "steps": request.steps, "fit": request.fit, "target_fps": fps, "in_place": request.in_place,
                "foot_lock": request.foot_lock, "continued": request.previous is not None,
                "seam_errors_m": [round(e, 4) for e in timeline.seam_errors]}
    fields = result_fields([seed], [retargeted], settings, timings)
    if request.controls:
        fields["variations"][0]["controls"] = timeline.controls_report()
    fields["segments"] = [{"prompt": seg.prompt, "start_frame": int(round(first / FPS * fps)),
                           "frame_count": int(round(seg.frames / FPS * fps))}
                          for seg, first in zip(request.segments, timeline.starts)]
    return fields


def _jsonable(value: Any) -> Any:
    """Settings may hold numpy scalars or paths; the reply needs plain JSON."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
