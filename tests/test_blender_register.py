"""The add-on registers and unregisters cleanly, and its panels draw headless (through a checking layout)."""

from __future__ import annotations

import pytest

bpy = pytest.importorskip("bpy")

import motionlcm_blender  # noqa: E402
from addon_synthetic import skeleton_reply  # noqa: E402
from motionlcm_blender import character, operators, panel, preferences, properties, session  # noqa: E402

CLASS_NAMES = ("MOTIONLCM_PT_main", "MOTIONLCM_PT_target", "MOTIONLCM_PT_controls", "MOTIONLCM_PT_history",
               "MOTIONLCM_UL_controls", "MOTIONLCM_OT_generate", "MOTIONLCM_OT_cancel")
ALL_CLASSES = operators.CLASSES + panel.CLASSES + properties.CLASSES + (preferences.MotionLCMPreferences,)


def _handler_counts():
    return {name: len(getattr(bpy.app.handlers, name)) for name in dir(bpy.app.handlers)
            if isinstance(getattr(bpy.app.handlers, name), list)}


@pytest.fixture()
def registered():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    motionlcm_blender.register()
    yield
    motionlcm_blender.unregister()


def test_register_unregister_twice_leaves_nothing_behind():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    handlers = _handler_counts()
    for _ in range(2):
        motionlcm_blender.register()
        assert hasattr(bpy.types.Scene, "motionlcm") and hasattr(bpy.ops.motionlcm, "generate")
        assert all(hasattr(bpy.types, name) for name in CLASS_NAMES)
        assert all(cls.is_registered for cls in ALL_CLASSES)
        motionlcm_blender.unregister()
        assert not hasattr(bpy.types.Scene, "motionlcm")
        assert not any(hasattr(bpy.types, name) for name in CLASS_NAMES)
        assert not any(cls.is_registered for cls in ALL_CLASSES)
        assert _handler_counts() == handlers
        assert session.run is None


class CheckingLayout:
    """Stands in for UILayout: accepts any layout call, but checks every property, operator and list it names."""

    def __init__(self, log):
        self.log = log

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.log.append(name)
            if name == "prop":
                data, prop = args[0], args[1]
                assert prop in data.bl_rna.properties, f"{type(data).__name__} has no property {prop!r}"
            elif name == "operator":
                category, op = args[0].split(".")
                rna = getattr(getattr(bpy.ops, category), op).get_rna_type()  # KeyError when unknown
                return _OperatorProps(rna)
            elif name == "template_list":
                assert hasattr(bpy.types, args[0])
                assert args[3] in args[2].bl_rna.properties and args[5] in args[4].bl_rna.properties
            return CheckingLayout(self.log)
        return call


class _OperatorProps:
    def __init__(self, rna):
        object.__setattr__(self, "rna", rna)

    def __setattr__(self, name, value):
        assert name in self.rna.properties, f"operator has no property {name!r}"


def _draw_all(context):
    log = []
    for cls in (panel.MOTIONLCM_PT_main, panel.MOTIONLCM_PT_target, panel.MOTIONLCM_PT_controls,
                panel.MOTIONLCM_PT_history):
        cls.draw(type("FakePanel", (), {"layout": CheckingLayout(log)})(), context)
    return log


def test_panels_draw_without_armature(registered):
    settings = bpy.context.scene.motionlcm
    settings.prompt = "a person walks in a circle, then sits down on the floor and waves with both hands"
    bpy.ops.motionlcm.control_add()
    log = _draw_all(bpy.context)
    assert "prop" in log and "template_list" in log and "operator" in log


def test_panels_draw_with_armatures_history_progress_and_error(registered, monkeypatch):
    context = bpy.context
    rig = bpy.data.objects.new("rig", bpy.data.armatures.new("rig"))
    context.scene.collection.objects.link(rig)
    settings = context.scene.motionlcm
    settings.target, settings.armature, settings.seconds = "ARMATURE", rig, 12.0
    item = settings.history.add()
    item.prompt, item.seed = "a person jumps", 3
    monkeypatch.setattr(session, "run", type("Run", (), {"fraction": 0.4, "stage": "sampling"})())
    monkeypatch.setattr(session, "last_error", "The backend stopped unexpectedly. " * 5)
    log = _draw_all(context)
    assert "progress" in log and "box" in log
    settings.armature = character.create_character(context, skeleton_reply())
    _draw_all(context)


def test_backend_config_prefers_filled_in_preferences(registered, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(preferences.client, "read_backend_config",
                        lambda: {"python": "/venv/bin/python", "backend_root": "/repo", "device": "cuda"})
    prefs = SimpleNamespace(backend_python="", server_url=" ", server_token="", checkpoint_path="/m/ckpt.safetensors",
                            text_encoder_path="", smpl_model_dir="", device="cpu")
    assert preferences.backend_config(prefs) == {"python": "/venv/bin/python", "backend_root": "/repo",
                                                 "device": "cpu", "checkpoint": "/m/ckpt.safetensors"}
    assert preferences.backend_config(None)["device"] == "cuda"


def test_unregister_during_a_generation_stops_its_timer_and_job(monkeypatch):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    motionlcm_blender.register()
    cancelled = []
    fake = type("FakeClient", (), {"submit": lambda self, r: r["type"], "poll": lambda self: [],
                                   "cancel": lambda self, job_id: cancelled.append(job_id)})()
    monkeypatch.setattr(session, "client_for", lambda config: fake)
    assert bpy.ops.motionlcm.generate() == {"RUNNING_MODAL"}
    run = session.run
    assert run is not None and run.timer is not None
    assert not bpy.ops.motionlcm.generate.poll()  # one generation at a time
    motionlcm_blender.unregister()
    assert session.run is None and run.timer is None and run.state == "CANCELLED"
    assert set(cancelled) - {"ping"} == {"skeleton", "generate"}  # the ping is answered at once anyway
