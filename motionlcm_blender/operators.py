"""Operators of the MotionLCM panel.

Generate, Continue and Create Character are modal shells around generation_run.GenerationRun: execute() starts the run
(validate, submit), a window timer calls its tick() until the reply is applied, Esc or the Cancel button
cancel it; the UI never blocks. The run pushes the single undo step itself when it applies the result, so
these two operators have no UNDO flag; a cancelled or failed run changes nothing and pushes nothing.
"""

import random

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty
from bpy.types import Operator

from . import bake, request_builder, session
from .generation_run import FINISHED, RUNNING, GenerationRun

POLL_SECONDS = 0.1


def _redraw_panels(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def stop_timer(window_manager: bpy.types.WindowManager, run: GenerationRun | None) -> None:
    if run is not None and run.timer is not None:
        window_manager.event_timer_remove(run.timer)
        run.timer = None


def _status(context: bpy.types.Context, text: str | None) -> None:
    if context.workspace is not None:
        context.workspace.status_text_set(text)


class _BackendOperator:
    """Modal shell shared by Generate and Create Character."""

    character_only = False
    continuing = False
    _run: GenerationRun | None = None  # this operator's own run (a newer one may be session.run)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and session.run is None

    def invoke(self, context: bpy.types.Context, _event: bpy.types.Event | None) -> set[str]:
        return self.execute(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        self._run = GenerationRun.start(context, self.character_only, self.continuing)
        if self._run.state != RUNNING:
            return self._finish(context)
        wm = context.window_manager
        self._run.timer = wm.event_timer_add(POLL_SECONDS, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC" and event.value == "PRESS":
            self._run.cancel()
        elif event.type != "TIMER" and self._run.state == RUNNING:
            return {"PASS_THROUGH"}
        if self._run.tick(context) == RUNNING:
            _status(context, f"MotionLCM: {self._run.stage} {self._run.fraction:.0%} (Esc to cancel)")
            _redraw_panels(context)
            return {"PASS_THROUGH"}
        return self._finish(context)

    def cancel(self, context: bpy.types.Context) -> None:  # window closed / file loaded while running
        if self._run is not None:
            self._run.cancel()
            self._finish(context)

    def _finish(self, context: bpy.types.Context) -> set[str]:
        run = self._run
        stop_timer(context.window_manager, run)
        _status(context, None)
        _redraw_panels(context)
        level = "INFO" if run.state == FINISHED else "ERROR" if run.failed else "WARNING"
        self.report({level}, run.message if run.failed else f"MotionLCM: {run.message}")
        for warning in run.warnings:
            self.report({"WARNING"}, f"MotionLCM: {warning}")
        return {run.state}


class MOTIONLCM_OT_generate(_BackendOperator, Operator):
    """Generate motion from the prompt and controls and bake it into a new Action"""

    bl_idname = "motionlcm.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}  # the run pushes its own undo step (see the module docstring)


class MOTIONLCM_OT_create_character(_BackendOperator, Operator):
    """Create the SMPL character (armature and skinned mannequin) at the 3D cursor"""

    bl_idname = "motionlcm.create_character"
    bl_label = "Create SMPL Character"
    bl_options = {"REGISTER"}
    character_only = True


class MOTIONLCM_OT_continue_animation(_BackendOperator, Operator):
    """Extend the target's current animation from the current frame: the prompt (or timeline) continues its
    pose and movement; a new Action holds its keys up to this frame and the new motion after it"""

    bl_idname = "motionlcm.continue_animation"
    bl_label = "Continue"
    bl_options = {"REGISTER"}
    continuing = True


class MOTIONLCM_OT_cancel(Operator):
    """Stop the running generation; the scene stays as it was"""

    bl_idname = "motionlcm.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, _context: bpy.types.Context) -> bool:
        return session.run is not None

    def execute(self, _context: bpy.types.Context) -> set[str]:
        session.run.cancel()  # the modal operator ends on its next event
        return {"FINISHED"}


class MOTIONLCM_OT_randomize_seed(Operator):
    """Pick a new random seed"""

    bl_idname = "motionlcm.randomize_seed"
    bl_label = "Randomise Seed"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.scene.motionlcm.seed = random.randrange(2 ** 31)
        return {"FINISHED"}


class MOTIONLCM_OT_control_add(Operator):
    """Add a joint control; the active object becomes its source when it can be one"""

    bl_idname = "motionlcm.control_add"
    bl_label = "Add Control"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.motionlcm
        control = settings.controls.add()
        used = {c.joint for c in settings.controls}
        free = [j for j in request_builder.CONTROL_JOINTS if j not in used]
        control.joint = free[0] if free else "pelvis"
        obj = context.active_object
        if obj is not None and obj.type in ("CURVE", "GREASEPENCIL", "GPENCIL", "EMPTY"):
            control.source = obj
            control.mode = "WAYPOINTS" if obj.type == "EMPTY" else "PATH"
        settings.active_control = len(settings.controls) - 1
        return {"FINISHED"}


class _ListItemOperator:
    """An operator on the selected item of one of the panel's lists (`items`, selected by `active`)."""

    items, active = "", ""
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = context.scene.motionlcm
        return 0 <= getattr(settings, cls.active) < len(getattr(settings, cls.items))


class _ListRemove(_ListItemOperator):
    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.motionlcm
        index = getattr(settings, self.active)
        getattr(settings, self.items).remove(index)
        setattr(settings, self.active, max(0, min(index, len(getattr(settings, self.items)) - 1)))
        return {"FINISHED"}


class MOTIONLCM_OT_control_remove(_ListRemove, Operator):
    """Remove the selected control"""

    bl_idname = "motionlcm.control_remove"
    bl_label = "Remove Control"
    items, active = "controls", "active_control"


class MOTIONLCM_OT_segment_add(Operator):
    """Add a timeline segment after the selected one"""

    bl_idname = "motionlcm.segment_add"
    bl_label = "Add Segment"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.motionlcm
        segments = settings.segments
        segment = segments.add()
        if len(segments) == 1:  # the first segment takes the single prompt and its duration
            segment.prompt, segment.seconds = settings.prompt, min(settings.seconds, 9.8)
        target = min(settings.active_segment + 1, len(segments) - 1) if len(segments) > 1 else 0
        segments.move(len(segments) - 1, target)
        settings.active_segment = target
        return {"FINISHED"}


class MOTIONLCM_OT_segment_remove(_ListRemove, Operator):
    """Remove the selected timeline segment"""

    bl_idname = "motionlcm.segment_remove"
    bl_label = "Remove Segment"
    items, active = "segments", "active_segment"


class MOTIONLCM_OT_segment_move(_ListItemOperator, Operator):
    """Move the selected timeline segment up or down"""

    bl_idname = "motionlcm.segment_move"
    bl_label = "Move Segment"
    items, active = "segments", "active_segment"
    direction: EnumProperty(items=[("UP", "Up", "Earlier in the timeline"), ("DOWN", "Down", "Later")])

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.motionlcm
        index = settings.active_segment
        target = index - 1 if self.direction == "UP" else index + 1
        if not 0 <= target < len(settings.segments):
            return {"CANCELLED"}
        settings.segments.move(index, target)
        settings.active_segment = target
        return {"FINISHED"}


def _history_item(context: bpy.types.Context, index: int):
    history = context.scene.motionlcm.history
    return history[index] if 0 <= index < len(history) else None


class MOTIONLCM_OT_history_apply(Operator):
    """Assign this generation's Action to its character again (the current Action goes to the NLA)"""

    bl_idname = "motionlcm.history_apply"
    bl_label = "Re-apply"
    bl_options = {"REGISTER", "UNDO"}
    index: IntProperty(options={"SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        item = _history_item(context, self.index)
        if item is None or item.action is None or item.target is None:
            self.report({"ERROR"}, "This generation's Action or character no longer exists; regenerate it instead.")
            return {"CANCELLED"}
        bake.assign_action(item.target, item.action)
        return {"FINISHED"}


class MOTIONLCM_OT_history_regenerate(Operator):
    """Load this generation's prompt, seed and settings into the panel and generate again"""

    bl_idname = "motionlcm.history_regenerate"
    bl_label = "Regenerate"
    bl_options = {"REGISTER", "UNDO"}
    index: IntProperty(options={"SKIP_SAVE"})
    load_only: BoolProperty(name="Only Load Settings", options={"SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        item = _history_item(context, self.index)
        if item is None:
            self.report({"ERROR"}, "No such generation in the history.")
            return {"CANCELLED"}
        settings = context.scene.motionlcm
        settings.prompt_text = None
        settings.prompt, settings.seed, settings.seconds = item.prompt, item.seed, item.seconds
        settings.steps, settings.use_guidance, settings.guidance = str(item.steps), item.use_guidance, item.guidance
        settings.engine = item.engine
        settings.variations = 1
        if self.load_only:
            return {"FINISHED"}
        bpy.ops.motionlcm.generate("INVOKE_DEFAULT")
        return {"FINISHED"}


CLASSES = (MOTIONLCM_OT_generate, MOTIONLCM_OT_create_character, MOTIONLCM_OT_continue_animation,
           MOTIONLCM_OT_cancel, MOTIONLCM_OT_randomize_seed, MOTIONLCM_OT_control_add, MOTIONLCM_OT_control_remove,
           MOTIONLCM_OT_segment_add, MOTIONLCM_OT_segment_remove, MOTIONLCM_OT_segment_move,
           MOTIONLCM_OT_history_apply, MOTIONLCM_OT_history_regenerate)
