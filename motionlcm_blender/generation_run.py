"""One Generate (or Create Character) click, from validation to the applied result, without the event loop.

The modal operators are a thin shell around `GenerationRun`: `start()` validates the panel and submits the
requests, the window timer calls `tick()` until it returns FINISHED or CANCELLED, and Esc / the Cancel button
call `cancel()`. Keeping every step here lets tests drive exactly what the operator does (headless Blender
delivers no timer events).

Undo: the result is applied in a single tick and followed by exactly one `ed.undo_push`, so one Ctrl+Z takes
the scene back to before the generation. The operators therefore do not carry the UNDO flag (Blender would
push a second, identical step when the modal operator finishes).
"""

from __future__ import annotations

import bpy

from . import curves, preferences, request_builder, scene_io, session
from .backend_job import BackendJob
from .client import BackendError
from .rig_mapping import RigMappingError

RUNNING, FINISHED, CANCELLED = "RUNNING", "FINISHED", "CANCELLED"
USER_ERRORS = (request_builder.RequestError, curves.CurveError, RigMappingError, BackendError)


class GenerationRun:
    def __init__(self, character_only: bool = False, continuing: bool = False) -> None:
        self.character_only, self.continuing = character_only, continuing
        self.plan: scene_io.GenerationPlan | None = None
        self.job: BackendJob | None = None
        self.state = RUNNING
        self.failed = False  # CANCELLED by an error rather than by the user
        self.message = ""
        self.warnings: list[str] = []  # controls the result did not meet (the backend's figures)
        self.timer = None  # the operator's window timer (bpy.types.Timer), removed when the operator ends

    @classmethod
    def start(cls, context: bpy.types.Context, character_only: bool = False,
              continuing: bool = False) -> GenerationRun:
        """Validate and submit; the run becomes `session.run`. Returns a CANCELLED run with the message on
        a bad setting or an unreachable backend (nothing was changed or left running). `continuing`: extend the
        target's animation from the current frame (Continue)."""
        run = cls(character_only, continuing)
        try:
            run.plan = scene_io.plan_generation(context, character_only, continuing)
            if context.window is None:  # nothing would ever call tick()
                raise request_builder.RequestError(
                    "Generating needs a Blender window; from a script or the command line use `motionlcm generate`.")
            client = session.client_for(preferences.backend_config(preferences.addon_preferences(context)))
            # The ping answers at once with the backend's limits, which the next validation uses.
            run.job = BackendJob(client, {"ping": {"type": "ping"}, **run.plan.requests})
        except USER_ERRORS as exc:
            run._fail(str(exc))
            return run
        except Exception as exc:  # a bug or an unusual object: report it, never raise into Blender's UI
            run._fail(f"Could not prepare the generation ({type(exc).__name__}): {exc}")
            return run
        session.run = run
        session.set_info("Starting the backend…")
        return run

    @property
    def stage(self) -> str:
        return self.job.stage if self.job is not None else ""

    @property
    def fraction(self) -> float:
        return self.job.fraction if self.job is not None else 0.0

    def tick(self, context: bpy.types.Context) -> str:
        """Consume the backend's replies; apply the result once all are in. Returns RUNNING, FINISHED or
        CANCELLED; never raises (an exception must not escape into Blender's event loop)."""
        if self.state != RUNNING:
            return self.state
        try:
            if not self.job.update():
                return RUNNING
            if "ping" in self.job.results:
                session.limits = self.job.results["ping"].get("limits")
            if self.job.error is not None:
                return self._fail(self.job.error)
            obj = scene_io.apply_generation(context, self.plan, self.job.results)
        except Exception as exc:  # apply_generation has put the scene back
            return self._fail(f"Could not apply the motion: {exc}")
        bpy.ops.ed.undo_push(message="MotionLCM: " + ("Create Character" if self.character_only else
                                                      "Continue" if self.continuing else "Generate"))
        if self.character_only:
            return self._end(FINISHED, f"created {obj.name}.", session.set_info)
        fit, self.warnings = request_builder.control_summary(self.job.results.get("generate", {}))
        self.warnings += self.plan.notes
        done = f"baked '{obj.animation_data.action.name}' onto {obj.name}." + (f" {fit}." if fit else "")
        return self._end(FINISHED, done, lambda message: session.set_info(message, self.warnings))

    def cancel(self) -> None:
        """Stop waiting (Esc, the Cancel button, the add-on disabled); the scene is not touched."""
        if self.state != RUNNING:
            return
        if self.job is not None:
            self.job.cancel()
        self._end(CANCELLED, "Cancelled; the scene is unchanged.", session.set_info)

    def _fail(self, message: str) -> str:
        self.failed = True  # the job has already cancelled its other requests (BackendJob.update)
        return self._end(CANCELLED, message, session.set_error)

    def _end(self, state: str, message: str, show) -> str:
        self.state, self.message = state, message
        show(message)
        if session.run is self:
            session.run = None
        return state
