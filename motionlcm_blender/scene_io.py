"""What a Generate click does to the scene, apart from the waiting: plan the request, then apply the result.

`plan_generation` reads the panel and validates everything before anything is sent; `apply_generation`
runs on the main thread when the replies are in and either completes or restores the scene exactly
(no half-built character, no stray Action, the previous Action still assigned).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import bpy
import numpy as np

from . import bake, character, curve_sources, curves, mapping_store, request_builder, session
from .rig_mapping import JOINT_NAMES

NEW, SMPL, RIG = "NEW", "SMPL", "RIG"
HISTORY_LIMIT = 50
CONTINUE_FRAMES = 4  # model frames of the current animation sent with Continue (the backend joins onto the last)


@dataclass
class GenerationPlan:
    requests: dict[str, dict[str, Any]]  # label -> request body ("skeleton", "generate")
    target: str  # NEW (create a character), SMPL (a MotionLCM character), RIG (a mapped user rig)
    armature_name: str | None
    mapping: str
    start_frame: float
    scene_fps: float
    unit_scale: float
    location: tuple[float, float, float] = (0.0, 0.0, 0.0)
    history: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what applying it had to do differently (shown as warnings)
    continue_after: float | None = None  # Continue: the scene frame after which the current Action is replaced


def _target(context: bpy.types.Context) -> tuple[str, bpy.types.Object | None]:
    settings = context.scene.motionlcm
    if settings.target == "NEW":
        return NEW, None
    obj = settings.armature
    if obj is None or obj.type != "ARMATURE":
        raise request_builder.RequestError("Pick the armature to animate, or choose New SMPL Character as target.")
    if character.is_motionlcm_character(obj):
        return SMPL, obj
    # refuse an unmappable rig before the backend spends seconds on a motion that cannot be applied
    from . import rig_transfer  # bpy-heavy: only for rig targets

    rig_transfer.mapping_of(obj, settings.mapping)
    return RIG, obj


def _to_target(kind: str, obj: bpy.types.Object | None, location: tuple[float, float, float]) -> np.ndarray:
    """World -> target space: the character's object space; for user rigs only its location and facing,
    because the retargeting scales the motion to the rig."""
    if obj is None:
        matrix = np.eye(4)
        matrix[:3, 3] = location
        return np.linalg.inv(matrix)
    if kind == RIG:
        loc, rot, _scale = obj.matrix_world.decompose()
        matrix = np.eye(4)
        matrix[:3, :3], matrix[:3, 3] = np.array(rot.to_matrix()), tuple(loc)
        return np.linalg.inv(matrix)
    return np.linalg.inv(np.array(obj.matrix_world))


def _animation_joints(context: bpy.types.Context, kind: str, obj: bpy.types.Object, mapping: str,
                      to_target: np.ndarray, count: int = CONTINUE_FRAMES) -> np.ndarray:
    """(count, 22, 3) HumanML3D joints (target space, metres) of the armature's animation at model frame spacing
    (20 fps), ending at the current frame: what Continue continues. A MotionLCM character's bones are the joints;
    a rig needs a bone for each of the 22 (its mapping)."""
    scene = context.scene
    anim = obj.animation_data
    if anim is None or anim.action is None:
        raise request_builder.RequestError(f"'{obj.name}' has no animation to continue; Generate one first or pick "
                                           "an animated armature.")
    if kind == SMPL:
        bones = dict(zip(JOINT_NAMES, JOINT_NAMES))
    else:
        from . import rig_transfer

        bones = rig_transfer.mapping_of(obj, mapping).positions
        missing = [j for j in JOINT_NAMES if j not in bones]
        if missing:
            raise request_builder.RequestError(
                f"Continue reads all 22 SMPL joints from the rig; '{obj.name}' has no bone for "
                f"{', '.join(missing)}. Map them in Target > Bone Mapping, or continue a MotionLCM character.")
    scene_fps = scene.render.fps / scene.render.fps_base
    current, subframe = scene.frame_current, scene.frame_subframe
    world = np.zeros((count, len(JOINT_NAMES), 3))
    try:
        for k in range(count):
            time = current - (count - 1 - k) * scene_fps / curves.MODEL_FPS
            scene.frame_set(int(np.floor(time)), subframe=float(time - np.floor(time)))
            evaluated = obj.evaluated_get(context.evaluated_depsgraph_get())
            matrix = np.array(evaluated.matrix_world)
            heads = np.array([tuple(evaluated.pose.bones[bones[j]].head) for j in JOINT_NAMES])
            world[k] = heads @ matrix[:3, :3].T + matrix[:3, 3]
    finally:
        scene.frame_set(current, subframe=subframe)
    target = world @ to_target[:3, :3].T + to_target[:3, 3]
    return curves.blender_to_humanml(target, scene.unit_settings.scale_length)


def plan_generation(context: bpy.types.Context, character_only: bool = False,
                    continuing: bool = False) -> GenerationPlan:
    """Validate the panel and build the requests; raises RequestError, CurveError or RigMappingError with the
    user's fix. `continuing`: Continue, from the target's animation at the current frame."""
    scene = context.scene
    settings = scene.motionlcm
    scene_fps = scene.render.fps / scene.render.fps_base
    unit_scale = scene.unit_settings.scale_length
    location = tuple(scene.cursor.location)
    common = dict(mapping=settings.mapping, start_frame=settings.start_frame, scene_fps=scene_fps,
                  unit_scale=unit_scale, location=location)
    if character_only:
        return GenerationPlan(requests={"skeleton": {"type": "skeleton"}}, target=NEW, armature_name=None, **common)
    values = settings.generation_settings(scene_fps)
    request_builder.check_engine_inputs(values.engine, len(settings.controls) > 0,
                                        settings.use_timeline or continuing, session.limits)
    timeline = request_builder.timeline_segments(settings.timeline(), session.limits) \
        if settings.use_timeline else None
    if timeline is None:
        request_builder.validate_prompt(values.prompt, session.limits)
        frames = request_builder.model_frames(values.seconds, session.limits, values.engine)
    else:
        frames = sum(int(round(item["seconds"] * curves.MODEL_FPS)) for item in timeline)
    kind, obj = _target(context)
    if continuing and kind == NEW:
        raise request_builder.RequestError("Continue extends an armature's animation: choose Existing Armature as "
                                           "target and pick it.")
    rest = character.rest_joints_of(obj) if kind == SMPL else None
    pelvis_height = float(rest[0, 1]) if rest is not None else curves.DEFAULT_PELVIS_HEIGHT_M
    to_target = _to_target(kind, obj, location)
    continue_from = None
    if continuing:  # the new motion's first frame is one model frame after the current one
        common["start_frame"] = scene.frame_current + scene_fps / curves.MODEL_FPS
        continue_from = _animation_joints(context, kind, obj, settings.mapping, to_target)
    controls = [curve_sources.control_request(context, c.source, c.joint, c.mode, c.density, frames,
                                              common["start_frame"], to_target, pelvis_height)
                for c in settings.controls]
    requests = {"generate": request_builder.build_generate_request(values, controls, rest, session.limits,
                                                                   timeline=timeline, continue_from=continue_from)}
    if kind == NEW:  # the skeleton reply's rest pose is the default target skeleton of `generate`
        requests = {"skeleton": {"type": "skeleton"}, **requests}
    prompt = requests["generate"]["prompt"] if timeline is None else " → ".join(t["prompt"] for t in timeline)
    history = {"prompt": prompt, "seconds": frames / curves.MODEL_FPS, "steps": values.steps,
               "guidance": settings.guidance, "use_guidance": settings.use_guidance, "engine": values.engine}
    return GenerationPlan(requests=requests, target=kind, armature_name=obj.name if obj else None,
                          history=history, continue_after=float(scene.frame_current) if continuing else None,
                          **common)


def _action_props(result: dict[str, Any], variation: dict[str, Any], plan: GenerationPlan) -> dict[str, Any]:
    return {"motionlcm_prompt": plan.history["prompt"], "motionlcm_seed": int(variation["seed"]),
            "motionlcm_settings": result.get("settings", {}), "motionlcm_start_frame": plan.start_frame}


def _bake_all(context: bpy.types.Context, obj: bpy.types.Object, result: dict[str, Any],
              plan: GenerationPlan) -> list[bpy.types.Action]:
    """Bake every variation, last first, so variation 0 ends up assigned and the others wait in the NLA."""
    actions = []
    for index in reversed(range(len(result["variations"]))):
        variation = result["variations"][index]
        name = bake.action_name(plan.history["prompt"], int(variation["seed"]))
        props = _action_props(result, variation, plan)
        frame_step = plan.scene_fps / float(result["fps"])
        if plan.target == RIG:
            from . import rig_transfer
            # in_place was already applied by the backend (the request's in_place field)
            action = rig_transfer.bake_to_rig(obj, variation, name, plan.start_frame, frame_step=frame_step,
                                              preset=plan.mapping, props=props, rest_joints=result["rest_joints"],
                                              continue_after=plan.continue_after)
        else:
            action = bake.bake_variation(obj, list(result["joint_names"]), variation, float(result["fps"]),
                                         plan.start_frame, plan.scene_fps, name, props, plan.unit_scale,
                                         continue_after=plan.continue_after)
        if result.get("segments"):  # a timeline, a long motion or a continuation: where each prompt starts
            bake.add_segment_markers(action, result["segments"], plan.start_frame, frame_step)
        actions.append(action)
        _add_history(context, plan, int(variation["seed"]), action, obj)
    if plan.target == RIG:
        _note_rig_mapping(obj, plan)
    return actions


def _note_rig_mapping(obj: bpy.types.Object, plan: GenerationPlan) -> None:
    """Once per generation (the same for every variation): where the travel went, and the mapping used, stored
    so that a regenerate reuses it."""
    from . import rig_transfer

    note = rig_transfer.travel_note_for(obj, plan.mapping)
    if note and note not in plan.notes:
        plan.notes.append(note)
    if mapping_store.stored_mapping(obj)[0]:
        return
    used = rig_transfer.mapping_of(obj, plan.mapping)
    mapping_store.store_mapping(obj, used.bones, used.root_bone)
    if used.preset == "shape":  # shown for confirmation: the panel lists what the shape decided
        plan.notes.append(f"No preset knows the bone names of '{obj.name}': they were mapped by shape. Check "
                          "the mapping in Target > Bone Mapping.")


def _add_history(context: bpy.types.Context, plan: GenerationPlan, seed: int, action: bpy.types.Action,
                 obj: bpy.types.Object) -> None:
    item = context.scene.motionlcm.history.add()
    for key, value in plan.history.items():
        setattr(item, key, value)
    item.seed, item.action, item.target = seed, action, obj


def apply_generation(context: bpy.types.Context, plan: GenerationPlan,
                     results: dict[str, dict[str, Any]]) -> bpy.types.Object:
    """Create the character if asked and bake; on any error put the scene back as it was, then re-raise."""
    history_length = len(context.scene.motionlcm.history)
    obj = None if plan.target == NEW else bpy.data.objects.get(plan.armature_name or "")
    if plan.target != NEW and obj is None:
        raise request_builder.RequestError(f"The target armature '{plan.armature_name}' was deleted "
                                              "while the motion was generated.")
    snapshot = None if obj is None else bake.snapshot_animation(obj)
    created = None
    try:
        if obj is None:
            created = obj = character.create_character(context, results["skeleton"], location=plan.location,
                                                       unit_scale=plan.unit_scale)
        if "generate" in results:
            _bake_all(context, obj, results["generate"], plan)
    except Exception:
        history = context.scene.motionlcm.history
        while len(history) > history_length:
            history.remove(len(history) - 1)
        if created is not None:
            character.remove_character(created)
        elif snapshot is not None:
            bake.restore_animation(obj, snapshot)
        raise
    _trim_history(context.scene.motionlcm)
    return obj


def _trim_history(settings: Any) -> None:
    """Keep the newest HISTORY_LIMIT entries (their Actions stay in the file)."""
    while len(settings.history) > HISTORY_LIMIT:
        settings.history.remove(0)
    settings.active_history = len(settings.history) - 1
