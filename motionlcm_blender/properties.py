"""Scene settings of the MotionLCM panel (`scene.motionlcm`): prompt, timing, sampler, controls, target, history.

Duration is stored in seconds; request_builder.model_frames turns it into round(20 s) model frames
and enforces 2..120 s with a clear message (over 9.8 s the backend generates segments; the AR engine: 2..30 s in
one piece), so the soft limits here only guide the slider. A timeline is a list of
(prompt, seconds) segments.
"""

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty,
                       PointerProperty, StringProperty)
from bpy.types import PropertyGroup

from . import curve_sources, request_builder, rig_mapping, rig_shape

JOINT_LABELS = {"pelvis": "Pelvis", "head": "Head", "left_wrist": "Left Wrist", "right_wrist": "Right Wrist",
                "left_foot": "Left Foot", "right_foot": "Right Foot"}
_UI_LIMITS = request_builder.FALLBACK_LIMITS  # slider bounds only: validation uses the backend's (session.limits)
AUTO_MAPPING = "auto"  # rig_mapping.resolve_mapping's name for auto-detection


def _is_control_source(_self, obj: bpy.types.Object) -> bool:
    return curve_sources.is_curve_like(obj) or obj.type == "EMPTY" or obj.animation_data is not None


def _is_armature(_self, obj: bpy.types.Object) -> bool:
    return obj.type == "ARMATURE"


# Static items: Blender keeps no reference to strings a dynamic items callback returns.
MAPPING_ITEMS = [(AUTO_MAPPING, "Auto-detect", "Match the rig's bone names against every known preset; when none "
                  "fits, map it by shape")] + [
    (key, preset.label, f"Bone names of the {preset.label} preset") for key, preset in rig_mapping.PRESETS.items()] + [
    (rig_shape.SHAPE, "By Shape", "Find the pelvis, spine, head, legs and arms from the hierarchy and the rest pose, "
     "whatever the bones are called")]


class MotionLCMControl(PropertyGroup):
    joint: EnumProperty(name="Joint", description="Joint that follows the source",
                        items=[(k, v, f"The {v.lower()} follows the source") for k, v in JOINT_LABELS.items()],
                        default="pelvis")
    source: PointerProperty(name="Source", type=bpy.types.Object, poll=_is_control_source,
                            description="Curve or Grease Pencil stroke (path), or keyframed empty (waypoints)")
    mode: EnumProperty(name="Use", default=curve_sources.PATH, items=[
        (curve_sources.PATH, "Path", "The whole curve, walked at uniform speed over the clip"),
        (curve_sources.WAYPOINTS, "Waypoints",
         "Keyframed positions at their frames, or the curve's points timed by distance along it")])
    density: FloatProperty(name="Density", default=1.0, min=0.01, max=1.0, subtype="FACTOR",
                           description="Fraction of the clip's frames pinned to the path, evenly spaced (both ends "
                           "always): lower lets the motion deviate between them")


class MotionLCMSegment(PropertyGroup):
    prompt: StringProperty(name="Prompt", description="What the character does in this segment",
                           default="a person walks forward")
    seconds: FloatProperty(name="Seconds", default=4.0, min=0.05, max=120.0, soft_min=1.0, soft_max=30.0,
                           precision=1, step=50, description="Length of the segment (at least 1 s)")


ENGINE_ITEMS = [
    ("motionlcm", "MotionLCM", "Clips up to 9.8 s in one step (longer in segments), trajectory controls, "
     "timelines and Continue"),
    (request_builder.AR_ENGINE, "AR (MotionMillion)", "Token by token from the prompt: up to 30 s in one piece, "
     "with joint rotations; no trajectory controls, timelines or Continue")]


class MotionLCMHistoryItem(PropertyGroup):
    prompt: StringProperty(name="Prompt")
    engine: EnumProperty(name="Engine", items=ENGINE_ITEMS, default="motionlcm")
    seed: IntProperty(name="Seed")
    seconds: FloatProperty(name="Duration", unit="TIME_ABSOLUTE")
    steps: IntProperty(name="Steps")
    guidance: FloatProperty(name="Guidance")
    use_guidance: BoolProperty(name="Custom Guidance")
    action: PointerProperty(name="Action", type=bpy.types.Action)
    target: PointerProperty(name="Target", type=bpy.types.Object)


class MotionLCMSettings(PropertyGroup):
    engine: EnumProperty(name="Engine", items=ENGINE_ITEMS, default="motionlcm",
                         description="Which generator makes the motion")
    prompt: StringProperty(name="Prompt", description="What the character does, in plain English",
                           default="a person walks forward and waves")
    prompt_text: PointerProperty(name="Prompt Text", type=bpy.types.Text,
                                 description="Take the prompt from this Text (edit long prompts in the Text Editor)")
    seconds: FloatProperty(name="Duration", default=4.0, min=0.05, max=120.0, soft_min=2.0, soft_max=30.0,
                           precision=2, step=5, description="Length in seconds (2 to 120 s; one MotionLCM clip "
                           "is at most 9.8 s, longer ones are generated in segments that continue each other)")
    use_timeline: BoolProperty(name="Timeline", default=False,
                               description="Generate a sequence of prompts as one continuous motion (the segment "
                                           "list replaces the prompt and duration)")
    segments: CollectionProperty(type=MotionLCMSegment)
    active_segment: IntProperty(name="Active Segment")
    seed: IntProperty(name="Seed", default=0, min=0, description="Same seed and settings give the same motion")
    steps: EnumProperty(name="Steps", default="1", description="Consistency sampling steps",
                        items=[("1", "1", "Fastest"), ("2", "2", "Balanced"), ("4", "4", "Best quality")])
    use_guidance: BoolProperty(name="Custom Guidance", default=False,
                               description="Override the checkpoint's classifier-free guidance scale")
    guidance: FloatProperty(name="Guidance", default=7.5, min=_UI_LIMITS["guidance"][0],
                            max=_UI_LIMITS["guidance"][1], soft_max=20.0,
                            description="Classifier-free guidance scale: higher follows the prompt more literally")
    variations: IntProperty(name="Variations", default=1, min=1, max=_UI_LIMITS["max_variations"],
                            description="Motions generated at once (consecutive seeds); each becomes an Action")
    start_frame: IntProperty(name="Start Frame", default=1, description="Scene frame of the clip's first frame")
    in_place: BoolProperty(name="In Place", default=False, description="Remove travel in the ground plane")
    foot_lock: BoolProperty(name="Foot Lock", default=True,
                            description="Pin each foot while the model says it touches the ground (removes most "
                                        "sliding of planted feet; moves a foot by at most 20 cm)")
    # On by default, as in `motionlcm generate` and the protocol: the ControlNet alone misses real pelvis paths by
    # 0.3-1.7 m with the shipped model; fitting puts the pelvis on them exactly (docs/addon.md has the figures).
    fit_controls: BoolProperty(name="Fit Paths Precisely", default=True,
                               description="Bend the motion onto its controls: the pelvis exactly on its path, "
                                           "head, hands and feet by IK (a few milliseconds). Off: the draft, the "
                                           "ControlNet alone, which follows paths only loosely")
    tuning_iterations: IntProperty(name="Latent Tuning", default=0, min=0, max=_UI_LIMITS["max_tuning"],
                                   soft_max=100,
                                   description="Before fitting, iterations of MotionLCM-V2 latent tuning that pull "
                                               "the sample itself towards the controls (about 70 ms each on a "
                                               "2-core CPU with the shipped model; 0: off)")
    controls: CollectionProperty(type=MotionLCMControl)
    active_control: IntProperty(name="Active Control")
    target: EnumProperty(name="Target", default="NEW", items=[
        ("NEW", "New SMPL Character", "Create a new SMPL character and animate it"),
        ("ARMATURE", "Existing Armature", "Animate an armature: a MotionLCM character or a mapped rig")])
    armature: PointerProperty(name="Armature", type=bpy.types.Object, poll=_is_armature)
    mapping: EnumProperty(name="Bone Mapping", items=MAPPING_ITEMS, default=AUTO_MAPPING,
                          description="How the rig's bones correspond to the SMPL joints")
    history: CollectionProperty(type=MotionLCMHistoryItem)
    active_history: IntProperty(name="Active Generation")

    def timeline(self) -> list[tuple[str, float]]:
        """The segment list as (prompt, seconds) pairs, in order."""
        return [(segment.prompt, segment.seconds) for segment in self.segments]

    def generation_settings(self, scene_fps: float) -> request_builder.GenerationSettings:
        """The plain values the pure request builder validates."""
        return request_builder.GenerationSettings(
            prompt=self.prompt_text.as_string() if self.prompt_text else self.prompt, seconds=self.seconds,
            steps=int(self.steps),
            guidance=self.guidance if self.use_guidance else None, seed=self.seed, variations=self.variations,
            target_fps=scene_fps, in_place=self.in_place, foot_lock=self.foot_lock,
            fit=self.fit_controls, tuning=self.tuning_iterations if self.fit_controls else 0, engine=self.engine)


CLASSES = (MotionLCMControl, MotionLCMSegment, MotionLCMHistoryItem, MotionLCMSettings)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.motionlcm = PointerProperty(type=MotionLCMSettings)


def unregister() -> None:
    del bpy.types.Scene.motionlcm
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
