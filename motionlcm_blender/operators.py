"""Operators of the MotionLCM panel.

Generate and Create Character are modal: they validate and submit on invoke, then a window timer polls
the backend client (never blocking the UI) until the reply arrives; Esc or the Cancel button aborts.
The scene is changed only when the reply is applied, in one step, so a single Ctrl+Z undoes it (the
operators carry the UNDO flag, and a cancelled or failed run returns CANCELLED: no undo step, no change).
"""

import random

import bpy
from bpy.props import BoolProperty, IntProperty
from bpy.types import Operator

from . import bake, curves, generation, generation_request, preferences, session
from .backend_job import BackendJob
from .client import BackendError

POLL_SECONDS = 0.1
USER_ERRORS = (generation_request.RequestError, curves.CurveError, BackendError)


def _redraw_panels(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def stop_timer(window_manager: bpy.types.WindowManager) -> None:
    if session.timer is not None:
        window_manager.event_timer_remove(session.timer)
        session.timer = None


class _BackendOperator:
    """Modal skeleton shared by Generate and Create Character: submit, poll on a timer, apply."""

    character_only = False
    _plan = None  # generation.GenerationPlan once execute() has validated the panel

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and session.job is None

    def invoke(self, context: bpy.types.Context, _event: bpy.types.Event | None) -> set[str]:
        return self.execute(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            self._plan = generation.plan_generation(context, self.character_only)
            if context.window is None:
                raise generation_request.RequestError(
                    "Generating needs a Blender window; from a script or the command line use `motionlcm generate`.")
            client = session.client_for(preferences.backend_config(preferences.addon_preferences(context)))
            session.job = BackendJob(client, self._plan.requests)
        except USER_ERRORS as exc:
            return self._fail(context, str(exc))
        except Exception as exc:  # a bug or an unusual object: report it, never raise into Blender's UI
            return self._fail(context, f"Could not prepare the generation ({type(exc).__name__}): {exc}")
        session.set_info("Starting the backend…")
        wm = context.window_manager
        session.timer = wm.event_timer_add(POLL_SECONDS, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        job = session.job
        if job is None:  # the add-on was disabled meanwhile
            return self._finish(context, {"CANCELLED"})
        if (event.type == "ESC" and event.value == "PRESS") or job.cancel_requested:
            job.cancel()
            self.report({"WARNING"}, "MotionLCM: generation cancelled; the scene is unchanged.")
            session.set_info("Cancelled.")
            return self._finish(context, {"CANCELLED"})
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            done = job.update()
            _redraw_panels(context)
            if not done:
                return {"PASS_THROUGH"}
            if job.error is not None:
                return self._finish(context, self._fail(context, job.error))
            obj = generation.apply_generation(context, self._plan, job.results)
        except Exception as exc:  # never let an exception escape into Blender's event loop
            return self._finish(context, self._fail(context, f"Could not apply the motion: {exc}"))
        session.set_info(self._done_message(obj))
        self.report({"INFO"}, f"MotionLCM: {session.last_info}")
        return self._finish(context, {"FINISHED"})

    def cancel(self, context: bpy.types.Context) -> None:  # window closed / file loaded while running
        if session.job is not None:
            session.job.cancel()
        self._finish(context, {"CANCELLED"})

    def _done_message(self, obj: bpy.types.Object) -> str:
        if self.character_only:
            return f"created {obj.name}."
        return f"baked '{obj.animation_data.action.name}' onto {obj.name}."

    def _fail(self, context: bpy.types.Context, message: str) -> set[str]:
        session.set_error(message)
        self.report({"ERROR"}, message)
        _redraw_panels(context)
        return {"CANCELLED"}

    def _finish(self, context: bpy.types.Context, outcome: set[str]) -> set[str]:
        stop_timer(context.window_manager)
        session.job = None
        _redraw_panels(context)
        return outcome


class MOTIONLCM_OT_generate(_BackendOperator, Operator):
    """Generate motion from the prompt and controls and bake it into a new Action"""

    bl_idname = "motionlcm.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER", "UNDO"}


class MOTIONLCM_OT_create_character(_BackendOperator, Operator):
    """Create the SMPL character (armature and skinned mannequin) at the 3D cursor"""

    bl_idname = "motionlcm.create_character"
    bl_label = "Create SMPL Character"
    bl_options = {"REGISTER", "UNDO"}
    character_only = True


class MOTIONLCM_OT_cancel(Operator):
    """Stop the running generation; the scene stays as it was"""

    bl_idname = "motionlcm.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, _context: bpy.types.Context) -> bool:
        return session.job is not None

    def execute(self, _context: bpy.types.Context) -> set[str]:
        session.job.cancel_requested = True  # the modal operator cancels on its next tick
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
        free = [j for j in generation_request.CONTROL_JOINTS if j not in used]
        control.joint = free[0] if free else "pelvis"
        obj = context.active_object
        if obj is not None and obj.type in ("CURVE", "GREASEPENCIL", "GPENCIL", "EMPTY"):
            control.source = obj
            control.mode = "WAYPOINTS" if obj.type == "EMPTY" else "PATH"
        settings.active_control = len(settings.controls) - 1
        return {"FINISHED"}


class MOTIONLCM_OT_control_remove(Operator):
    """Remove the selected control"""

    bl_idname = "motionlcm.control_remove"
    bl_label = "Remove Control"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = context.scene.motionlcm
        return 0 <= settings.active_control < len(settings.controls)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.motionlcm
        settings.controls.remove(settings.active_control)
        settings.active_control = min(settings.active_control, len(settings.controls) - 1)
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
        settings.variations = 1
        if self.load_only:
            return {"FINISHED"}
        bpy.ops.motionlcm.generate("INVOKE_DEFAULT")
        return {"FINISHED"}


CLASSES = (MOTIONLCM_OT_generate, MOTIONLCM_OT_create_character, MOTIONLCM_OT_cancel, MOTIONLCM_OT_randomize_seed,
           MOTIONLCM_OT_control_add, MOTIONLCM_OT_control_remove, MOTIONLCM_OT_history_apply,
           MOTIONLCM_OT_history_regenerate)
