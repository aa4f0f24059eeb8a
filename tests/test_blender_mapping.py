"""The Bone Mapping panel in headless Blender: Detect, hand edits that Generate uses (and refuses when a chain is
missing), a mapping stored by a bake and reused, presets saved and loaded, bad presets refused."""

from __future__ import annotations

import pytest

bpy = pytest.importorskip("bpy")

import motionlcm_blender  # noqa: E402
from addon_synthetic import generate_result, skeleton_reply  # noqa: E402
from motionlcm_blender import character, mapping_store, rig_transfer, scene_io, session  # noqa: E402
from motionlcm_blender.rig_mapping import JOINT_NAMES  # noqa: E402
from rig_fixtures import MIXAMO_BONES  # noqa: E402

NAMES = dict(zip(JOINT_NAMES, [f"bone{i}" for i in range(22)]))  # meaningless names: mapped by shape
MIXAMO = [f"mixamorig:{MIXAMO_BONES[j]}" for j in JOINT_NAMES]


@pytest.fixture()
def scene(tmp_path, monkeypatch):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    motionlcm_blender.register()
    monkeypatch.setattr(mapping_store, "preset_folder", lambda create=False: tmp_path / "bone_mappings")
    (tmp_path / "bone_mappings").mkdir()
    scene = bpy.context.scene
    yield scene
    motionlcm_blender.unregister()


def _rig(names, name="user rig"):
    reply = skeleton_reply()
    reply.update(joint_names=list(names), mesh=None)
    rig = character.create_character(bpy.context, reply, name=name)
    del rig[character.SKELETON_TAG]  # a user's own armature
    return rig


def _target(scene, rig, mapping="auto"):
    scene.motionlcm.target, scene.motionlcm.armature, scene.motionlcm.mapping = "ARMATURE", rig, mapping


def test_the_panel_and_its_operators_are_registered(scene):
    assert hasattr(bpy.types, "MOTIONLCM_PT_bone_mapping")
    for op in ("mapping_detect", "mapping_clear", "mapping_save", "mapping_load"):
        assert hasattr(bpy.ops.motionlcm, op)
    assert not bpy.ops.motionlcm.mapping_detect.poll()  # no user armature targeted


def test_detect_fills_the_22_joints_from_the_shape_and_generate_uses_the_edits(scene):
    rig = _target_rig = _rig(NAMES.values())
    _target(scene, rig)
    assert bpy.ops.motionlcm.mapping_detect() == {"FINISHED"}
    assert [item.joint for item in rig.motionlcm_bones] == list(JOINT_NAMES)
    assert {item.joint: item.bone for item in rig.motionlcm_bones} == NAMES
    assert "Mapped 22 of 22 joints" in session.last_info and "shape" in session.last_info
    # A hand edit is what the next generation uses.
    rig.motionlcm_bones[JOINT_NAMES.index("head")].bone = NAMES["neck"]
    assert rig_transfer.mapping_of(_target_rig).bones["head"] == NAMES["neck"]
    # A missing chain is named before anything is sent.
    rig.motionlcm_bones[JOINT_NAMES.index("left_knee")].bone = ""
    with pytest.raises(RuntimeError, match=r"no bone for: left leg \(left_knee\)"):
        bpy.ops.motionlcm.generate()
    assert bpy.ops.motionlcm.mapping_clear() == {"FINISHED"} and len(rig.motionlcm_bones) == 0


def test_a_bake_stores_the_mapping_it_used_and_a_regenerate_reuses_it(scene):
    rig = _rig(MIXAMO)
    _target(scene, rig)
    plan = scene_io.plan_generation(bpy.context)
    scene_io.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40)})
    stored, root = mapping_store.stored_mapping(rig)
    assert stored["left_knee"] == "mixamorig:LeftLeg" and root is None and len(stored) == 22
    assert rig_transfer.mapping_of(rig).preset == "custom"


def test_presets_are_saved_and_loaded_onto_another_rig(scene, tmp_path):
    first = _rig(NAMES.values(), "first")
    _target(scene, first)
    bpy.ops.motionlcm.mapping_detect()
    first.motionlcm_root_bone = NAMES["pelvis"]
    assert bpy.ops.motionlcm.mapping_save(name="my rig") == {"FINISHED"}
    assert (tmp_path / "bone_mappings" / "my rig.json").is_file() and mapping_store.preset_names() == ["my rig"]
    second = _rig(NAMES.values(), "second")
    _target(scene, second)
    assert bpy.ops.motionlcm.mapping_load(preset="my rig") == {"FINISHED"}
    assert mapping_store.stored_mapping(second)[0] == NAMES
    # A preset that does not fit the armature (other bone names) or is not a preset is refused; nothing changes.
    third = _rig(MIXAMO, "third")
    _target(scene, third)
    with pytest.raises(RuntimeError, match="names bones it does not have: bone0"):
        bpy.ops.motionlcm.mapping_load(preset="my rig")
    (tmp_path / "bone_mappings" / "broken.json").write_text("{\"bones\": 3}")
    with pytest.raises(RuntimeError, match="Not a bone-mapping preset"):
        bpy.ops.motionlcm.mapping_load(preset="broken")
    assert len(third.motionlcm_bones) == 0
    with pytest.raises(RuntimeError, match="Nothing is mapped on 'third' yet"):
        bpy.ops.motionlcm.mapping_save(name="third")
    _target(scene, second)
    with pytest.raises(RuntimeError, match="A preset name uses letters"):
        bpy.ops.motionlcm.mapping_save(name="../escape")
    assert mapping_store.preset_names() == ["broken", "my rig"]


def test_a_first_generation_mapped_by_shape_says_so(scene):
    rig = _rig(NAMES.values())
    _target(scene, rig)
    plan = scene_io.plan_generation(bpy.context)
    scene_io.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40)})
    assert any("mapped by shape" in note and "Bone Mapping" in note for note in plan.notes)
    assert mapping_store.stored_mapping(rig)[0] == NAMES  # stored: the panel shows it, a regenerate reuses it
    plan = scene_io.plan_generation(bpy.context)
    scene_io.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40)})
    assert plan.notes == []  # the stored mapping is the user's now
