"""MotionLCM for Blender: text and trajectories to animation (Blender 4.2 to 5.x extension).

The add-on never imports torch or the backend package: it starts `python -m backend.serving.server` (client.py)
and talks the protocol of docs/protocol.md. Modules that touch `bpy` are imported in register(), so the
pure ones (curves, pose_math, request_builder, wire, client, backend_job) import without Blender.
"""

from __future__ import annotations


def _modules():
    from . import mapping_panel, mapping_store, operators, panel, preferences, properties
    return properties, preferences, operators, panel, mapping_store, mapping_panel


def register() -> None:
    import bpy

    properties, preferences, operators, panel, mapping_store, mapping_panel = _modules()
    properties.register()
    mapping_store.register()
    bpy.utils.register_class(preferences.MotionLCMPreferences)
    for cls in operators.CLASSES + panel.CLASSES + mapping_panel.CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    import bpy

    from . import session
    properties, preferences, operators, panel, mapping_store, mapping_panel = _modules()
    operators.stop_timer(bpy.context.window_manager, session.run)  # a generation may still be running
    session.shutdown()  # cancel the running generation and stop the backend process
    for cls in reversed(operators.CLASSES + panel.CLASSES + mapping_panel.CLASSES):
        bpy.utils.unregister_class(cls)
    bpy.utils.unregister_class(preferences.MotionLCMPreferences)
    mapping_store.unregister()
    properties.unregister()
