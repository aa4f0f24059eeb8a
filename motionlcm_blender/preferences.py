"""Add-on preferences: where the backend runs and which model it loads.

Empty fields fall back to `backend_config.json`, which install.py writes next to the add-on. The backend
is a child process on stdio, or a server on this machine (loopback URL): client.py refuses any other
host, which is why the manifest asks for no `network` permission.
"""

from typing import Any

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy.types import AddonPreferences

from . import client


class MotionLCMPreferences(AddonPreferences):
    bl_idname = __package__

    backend_python: StringProperty(
        name="Backend Python", subtype="FILE_PATH",
        description="Interpreter with the MotionLCM backend installed (empty: the one install.py set up)")
    server_url: StringProperty(
        name="Server URL", description="Use a backend already running on this machine, e.g. "
        "http://127.0.0.1:8765 (python -m backend.serving.server --port 8765); empty: start one as a child process")
    server_token: StringProperty(name="Server Token", subtype="PASSWORD",
                                 description="Bearer token the server was started with (--token), if any")
    checkpoint_path: StringProperty(name="Checkpoint", subtype="FILE_PATH",
                                    description="MotionLCM checkpoint (empty: the backend's default)")
    text_encoder_path: StringProperty(name="Text Encoder", subtype="DIR_PATH",
                                      description="Local text-encoder folder (empty: the checkpoint's own)")
    device: EnumProperty(name="Device", default="auto", items=[
        ("auto", "Auto", "CUDA when available, otherwise CPU"), ("cpu", "CPU", "Always the CPU"),
        ("cuda", "CUDA", "An NVIDIA GPU")])
    smpl_model_dir: StringProperty(name="SMPL Models", subtype="DIR_PATH",
                                   description="Optional SMPL/SMPL-X model folder: the real body mesh replaces "
                                   "the wooden mannequin (models under their own licence)")
    smpl_gender: EnumProperty(name="SMPL Body", default="neutral", items=[
        ("neutral", "Neutral", "SMPL(X)_NEUTRAL"), ("female", "Female", "SMPL(X)_FEMALE"),
        ("male", "Male", "SMPL(X)_MALE")], description="Which model of the SMPL folder the character uses")

    def draw(self, _context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        col = layout.column(heading="Backend")
        col.prop(self, "backend_python")
        col.prop(self, "server_url")
        if self.server_url:
            col.prop(self, "server_token")
        col = layout.column(heading="Model")
        col.prop(self, "checkpoint_path")
        col.prop(self, "text_encoder_path")
        col.prop(self, "device")
        col.prop(self, "smpl_model_dir")
        row = col.row()
        row.active = bool(self.smpl_model_dir)
        row.prop(self, "smpl_gender")


def _path(value: str) -> str:
    return bpy.path.abspath(value) if value else ""


def addon_preferences(context: bpy.types.Context) -> MotionLCMPreferences | None:
    """This add-on's preferences, or None when it was registered without being enabled (tests, scripts)."""
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def backend_config(prefs: Any) -> dict[str, Any]:
    """install.py's backend_config.json with every preference the user filled in taking precedence."""
    config = client.read_backend_config()
    if prefs is None:
        return config
    overrides = {"python": _path(prefs.backend_python), "url": prefs.server_url.strip(),
                 "token": prefs.server_token, "checkpoint": _path(prefs.checkpoint_path),
                 "text_encoder": _path(prefs.text_encoder_path), "smpl_dir": _path(prefs.smpl_model_dir)}
    config.update({key: value for key, value in overrides.items() if value})
    config["device"] = prefs.device
    if config.get("smpl_dir"):  # the gender means nothing to the mannequin: changing it need not restart
        config["smpl_gender"] = prefs.smpl_gender
    return config
