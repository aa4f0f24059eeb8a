"""View3D > Sidebar > MotionLCM: prompt and settings, controls, target, progress and errors, history."""

from __future__ import annotations

import textwrap

import bpy
from bpy.types import Panel, UIList

from . import request_builder, session

WRAP_PIXELS_PER_CHAR = 7  # rough width of a UI character, to wrap long prompts and messages


class SidebarPanel:
    """Where every MotionLCM panel lives: the 3D viewport's sidebar, under its own tab."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MotionLCM"


def _wrapped(layout: bpy.types.UILayout, context: bpy.types.Context, text: str, icon: str = "NONE") -> None:
    width = max(20, int((context.region.width if context.region else 300) / WRAP_PIXELS_PER_CHAR) - 4)
    column = layout.column(align=True)
    for number, line in enumerate(textwrap.wrap(text, width) or [""]):
        column.label(text=line, icon=icon if number == 0 else "BLANK1")


def _draw_run(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """Generate, or progress and Cancel while running; then the last error or outcome."""
    run = session.run
    if run is None:
        row = layout.row(align=True)
        row.operator("motionlcm.generate", icon="PLAY")
        row.operator("motionlcm.continue_animation", icon="FF")
    else:
        layout.progress(factor=run.fraction, type="BAR", text=f"{run.stage.capitalize()}…")
        layout.operator("motionlcm.cancel", icon="CANCEL")
    if session.last_error:
        box = layout.box()
        box.alert = True
        _wrapped(box, context, session.last_error, icon="ERROR")
    elif session.last_info:
        _wrapped(layout, context, session.last_info, icon="INFO")
    for warning in session.last_warnings:
        _wrapped(layout, context, warning, icon="ERROR")


class MOTIONLCM_UL_controls(UIList):
    def draw_item(self, _context, layout, _data, item, _icon, _active_data, _active_prop, _index=0, _flt_flag=0):
        row = layout.row(align=True)
        row.prop(item, "joint", text="", emboss=False)
        row.label(text=item.source.name if item.source else "(no source)",
                  icon="OUTLINER_OB_CURVE" if item.source and item.source.type == "CURVE" else "OBJECT_DATA")


class MOTIONLCM_UL_segments(UIList):
    def draw_item(self, _context, layout, _data, item, _icon, _active_data, _active_prop, _index=0, _flt_flag=0):
        row = layout.row(align=True)
        row.prop(item, "prompt", text="", emboss=False)
        sub = row.row(align=True)
        sub.ui_units_x = 3.5
        sub.prop(item, "seconds", text="")


class MOTIONLCM_UL_history(UIList):
    def draw_item(self, _context, layout, _data, item, _icon, _active_data, _active_prop, _index=0, _flt_flag=0):
        layout.label(text=f"{item.prompt} (seed {item.seed})", icon="ACTION")


def _draw_prompt(layout: bpy.types.UILayout, context: bpy.types.Context, settings, limits: dict) -> None:
    col = layout.column(align=True)
    col.label(text="Prompt")
    col.prop(settings, "prompt_text", text="", icon="TEXT")
    if settings.prompt_text is None:
        col.prop(settings, "prompt", text="")
    prompt = settings.prompt_text.as_string() if settings.prompt_text else settings.prompt
    if len(prompt) > 40 or settings.prompt_text is not None:
        _wrapped(layout.box(), context, " ".join(prompt.split()) or "(empty prompt)")
    col = layout.column()
    col.use_property_split = True
    col.prop(settings, "seconds")
    frames = round(settings.seconds * 20)
    ar = settings.engine == request_builder.AR_ENGINE
    longest = limits["max_ar_seconds"] if ar else limits["max_timeline_seconds"]
    in_range = limits["min_frames"] <= frames <= round(longest * 20)
    hint = col.row()
    hint.alert = not in_range
    segmented = " (in segments)" if frames > limits["max_frames"] and not ar else ""
    hint.label(text=f"{frames} model frames" + (segmented if in_range else f" (2 to {longest:g} s)"))


def _draw_timeline(layout: bpy.types.UILayout, settings, limits: dict) -> None:
    row = layout.row()
    row.template_list("MOTIONLCM_UL_segments", "", settings, "segments", settings, "active_segment", rows=4)
    buttons = row.column(align=True)
    buttons.operator("motionlcm.segment_add", text="", icon="ADD")
    buttons.operator("motionlcm.segment_remove", text="", icon="REMOVE")
    buttons.separator()
    buttons.operator("motionlcm.segment_move", text="", icon="TRIA_UP").direction = "UP"
    buttons.operator("motionlcm.segment_move", text="", icon="TRIA_DOWN").direction = "DOWN"
    total = sum(segment.seconds for segment in settings.segments)
    hint = layout.row()
    hint.alert = total > limits["max_timeline_seconds"] or any(
        segment.seconds < limits["min_segment_seconds"] for segment in settings.segments)
    hint.label(text=f"{len(settings.segments)} segments, {total:.1f} s (each at least "
                    f"{limits['min_segment_seconds']:g} s, at most {limits['max_timeline_seconds']:g} s in all)")


class MOTIONLCM_PT_main(SidebarPanel, Panel):
    bl_label = "MotionLCM"
    bl_idname = "MOTIONLCM_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.motionlcm
        layout.prop(settings, "engine", expand=True)
        ar = settings.engine == request_builder.AR_ENGINE
        limits = request_builder.usable_limits(session.limits)
        if ar and (settings.controls or settings.use_timeline):  # said before Generate refuses it
            box = layout.box()
            box.alert = True
            _wrapped(box, context, "The AR engine takes a prompt and a duration only: untick Timeline and remove "
                                   "the trajectory controls, or choose MotionLCM.", icon="ERROR")
        layout.prop(settings, "use_timeline")
        if settings.use_timeline:
            _draw_timeline(layout, settings, limits)
        else:
            _draw_prompt(layout, context, settings, limits)
        layout.use_property_split = True
        col = layout.column()
        col.prop(settings, "start_frame")
        row = col.row(align=True)
        row.prop(settings, "seed")
        row.operator("motionlcm.randomize_seed", text="", icon="FILE_REFRESH")
        if not ar:  # the AR engine samples token by token: no step count
            col.prop(settings, "steps", expand=True)
        row = col.row(heading="Guidance")
        row.prop(settings, "use_guidance", text="")
        if settings.use_guidance:
            row.prop(settings, "guidance", text="")
        else:  # unticked sends null: the checkpoint's own scale for the chosen steps
            row.label(text="Checkpoint default")
        col.prop(settings, "variations")
        col.prop(settings, "in_place")
        col.prop(settings, "foot_lock")
        layout.use_property_split = False
        _draw_run(layout, context)


class MOTIONLCM_PT_target(SidebarPanel, Panel):
    bl_label = "Target"
    bl_parent_id = "MOTIONLCM_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.motionlcm
        layout.prop(settings, "target", expand=True)
        if settings.target == "ARMATURE":
            layout.prop(settings, "armature")
        layout.operator("motionlcm.create_character", icon="OUTLINER_OB_ARMATURE")


class MOTIONLCM_PT_controls(SidebarPanel, Panel):
    bl_label = "Trajectory Controls"
    bl_parent_id = "MOTIONLCM_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.motionlcm
        row = layout.row()
        row.template_list("MOTIONLCM_UL_controls", "", settings, "controls", settings, "active_control", rows=3)
        buttons = row.column(align=True)
        buttons.operator("motionlcm.control_add", text="", icon="ADD")
        buttons.operator("motionlcm.control_remove", text="", icon="REMOVE")
        if 0 <= settings.active_control < len(settings.controls):
            control = settings.controls[settings.active_control]
            col = layout.column()
            col.use_property_split = True
            col.prop(control, "joint")
            col.prop(control, "source")
            col.prop(control, "mode")
            if control.mode == "PATH":
                col.prop(control, "density")
        col = layout.column()
        col.use_property_split = True
        col.enabled = len(settings.controls) > 0
        col.prop(settings, "fit_controls")
        sub = col.row()
        sub.active = settings.fit_controls
        sub.prop(settings, "tuning_iterations")


class MOTIONLCM_PT_history(SidebarPanel, Panel):
    bl_label = "History"
    bl_parent_id = "MOTIONLCM_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.motionlcm
        layout.template_list("MOTIONLCM_UL_history", "", settings, "history", settings, "active_history", rows=3)
        if 0 <= settings.active_history < len(settings.history):
            row = layout.row(align=True)
            row.operator("motionlcm.history_apply", icon="ACTION").index = settings.active_history
            row.operator("motionlcm.history_regenerate", icon="FILE_REFRESH").index = settings.active_history


CLASSES = (MOTIONLCM_UL_controls, MOTIONLCM_UL_segments, MOTIONLCM_UL_history, MOTIONLCM_PT_main, MOTIONLCM_PT_target,
           MOTIONLCM_PT_controls, MOTIONLCM_PT_history)
