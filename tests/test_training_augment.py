"""Mirror images and time reversal of training clips (training/data/augment.py), checked feature block by
feature block against what a mirror or a reversed clock must do to the HumanML3D representation."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from backend.motion.features import (CONTACT_SLICE, RIC_SLICE, VELOCITY_SLICE, features_to_joints,
                              joints_to_features)
from backend.motion.skeleton import JOINT_NAMES
from training.common import augmentation, load_stage_config
from training.data.augment import MIRRORED_JOINTS, Augment, augment, mirror_caption, mirror_joints
from training.data.captions import describe_trajectory
from training.data.dataset import ControlSpec, HumanML3D
from training.data.synthetic import walking_clip
from training_helpers import synthetic_root

TOL = 1e-3  # metres or radians; measured: 4e-4 (root height), 6e-6 elsewhere. Velocities of the last frame,
#             extrapolated by the augmentation, are not compared


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return synthetic_root(tmp_path_factory)


def _joints(feats: np.ndarray) -> np.ndarray:
    return features_to_joints(torch.from_numpy(feats)[None])[0].numpy()


def _always(**probabilities: float) -> tuple[np.random.Generator, Augment]:
    return np.random.default_rng(0), Augment(**probabilities)


def test_the_mirror_map_pairs_left_with_right_and_is_its_own_inverse():
    for joint, image in enumerate(MIRRORED_JOINTS):
        name, other = JOINT_NAMES[joint], JOINT_NAMES[image]
        assert other == name.replace("left", "right") if "left" in name else \
            other == name.replace("right", "left") if "right" in name else other == name
        assert MIRRORED_JOINTS[image] == joint
    joints = np.random.default_rng(1).normal(size=(5, 22, 3))
    np.testing.assert_array_equal(mirror_joints(mirror_joints(joints)), joints)


def test_mirror_captions_swap_sides_and_nothing_else():
    assert mirror_caption("A person waves the left hand, turning Right") == \
        "A person waves the right hand, turning Left"
    assert mirror_caption("leftover bright steps") == "leftover bright steps"
    assert mirror_caption("waves/VERB left/ADJ hand/NOUN") == "waves/VERB right/ADJ hand/NOUN"


def test_a_mirrored_left_turn_is_a_right_turn_in_every_feature_block():
    feats = joints_to_features(walking_clip(121, speed=1.2, turn_rate=0.6, stride_hz=1.8))
    rng, spec = _always(mirror=1.0)
    mirrored, (text, tokens) = augment(feats, ("walks turning left", "left/ADJ"), spec, rng)
    assert mirrored.shape == feats.shape and (text, tokens) == ("walks turning right", "right/ADJ")
    body = slice(0, -1)  # the last frame's velocities are extrapolated
    np.testing.assert_allclose(mirrored[body, 0], -feats[body, 0], atol=TOL)  # yaw rate changes sign
    np.testing.assert_allclose(mirrored[body, 1], -feats[body, 1], atol=TOL)  # sideways step changes sign
    np.testing.assert_allclose(mirrored[:, 2:4], feats[:, 2:4], atol=TOL)  # forward step and height do not
    ric, ric_mirrored = (f[:, RIC_SLICE].reshape(-1, 21, 3) for f in (feats, mirrored))
    image = [MIRRORED_JOINTS[j] - 1 for j in range(1, 22)]
    np.testing.assert_allclose(ric_mirrored, ric[:, image] * [-1, 1, 1], atol=TOL)
    vel, vel_mirrored = (f[body, VELOCITY_SLICE].reshape(-1, 22, 3) for f in (feats, mirrored))
    np.testing.assert_allclose(vel_mirrored, vel[:, list(MIRRORED_JOINTS)] * [-1, 1, 1], atol=TOL)
    np.testing.assert_array_equal(mirrored[body, CONTACT_SLICE], feats[body, CONTACT_SLICE][:, [2, 3, 0, 1]])
    assert describe_trajectory(_joints(feats))["direction"] == "turning left"
    assert describe_trajectory(_joints(mirrored))["direction"] == "turning right"


def test_a_reversed_walk_retraces_the_same_poses_backwards():
    joints = walking_clip(121, speed=1.3, turn_rate=0.0, stride_hz=1.8)
    feats = joints_to_features(joints)
    rng, spec = _always(reverse=1.0)
    reversed_feats, caption = augment(feats, ("walks forward", "walk/VERB forward/ADV"), spec, rng)
    assert caption == ("", "")  # "sits down" played backwards is not a sit: the text is dropped
    original, played_back = _joints(feats)[::-1], _joints(reversed_feats)
    # Same motion up to where the clip is put: the processing moves frame 0 to the origin facing +Z.
    a, b = original[:, :, [0, 2]].reshape(-1, 2), played_back[:, :, [0, 2]].reshape(-1, 2)
    a_centre, b_centre = a.mean(0), b.mean(0)
    u, _, vt = np.linalg.svd((b - b_centre).T @ (a - a_centre))
    rotation = u @ vt
    aligned = (b - b_centre) @ rotation + a_centre
    assert np.linalg.det(rotation) > 0
    np.testing.assert_allclose(aligned, a, atol=TOL)
    np.testing.assert_allclose(played_back[..., 1], original[..., 1], atol=TOL)
    assert describe_trajectory(_joints(feats))["direction"] == "forward"
    assert describe_trajectory(played_back)["direction"] == "backward"


def test_dataset_items_are_augmented_after_the_caption_and_crop_are_drawn(root):
    spec = ControlSpec(density=100, all_joints=True)  # pelvis on every frame
    plain = HumanML3D(root, "train", control=spec, seed=4)
    mirrored = HumanML3D(root, "train", control=spec, seed=4, augmentation=Augment(mirror=1.0))
    reversed_ = HumanML3D(root, "train", control=spec, seed=4, augmentation=Augment(reverse=1.0))
    unchanged = HumanML3D(root, "train", control=spec, seed=4, augmentation=Augment())
    assert unchanged.augmentation is None
    raw = lambda item, data: item["hint"].numpy()[:, 0] * data.raw_std[0] + data.raw_mean[0]  # noqa: E731
    for index in range(0, len(plain), 5):
        a, m, r, u = plain[index], mirrored[index], reversed_[index], unchanged[index]
        assert torch.equal(a["motion"], u["motion"]) and a["text"] == u["text"]
        assert m["length"] == a["length"] == r["length"]
        assert m["text"] == mirror_caption(a["text"]) and r["text"] == "" and r["tokens"] == ""
        np.testing.assert_allclose(raw(m, mirrored), raw(a, plain) * [-1, 1, 1], atol=TOL)
        assert not torch.equal(m["motion"], a["motion"])


STAGES = ("vae", "mld", "lcm", "controlnet")


def test_no_preset_augments_and_unknown_or_invalid_values_are_refused():
    for stage in STAGES:
        for preset in ("official", "default", "tiny"):
            assert not augmentation(load_stage_config(stage, preset)).active, (stage, preset)
    cfg = load_stage_config("controlnet", "default", ["augment.mirror=0.5", "augment.reverse=0.25"])
    assert augmentation(cfg) == Augment(mirror=0.5, reverse=0.25)
    with pytest.raises(ValueError, match="augment.mirror is a probability"):
        Augment(mirror=1.5)
    with pytest.raises(ValueError, match="unknown key.*mirorr"):
        augmentation(load_stage_config("controlnet", "default", ["augment.mirorr=0.5"]))


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_trains_on_the_configured_augmentation(stage, monkeypatch, tmp_path):
    module = importlib.import_module(f"training.stages.{stage}")

    class Built(Exception):
        pass

    def spy(*args, **kwargs):
        raise Built(kwargs)

    import training.common

    # The text stages build their training set in training.common.start_text_stage; the VAE stage builds its own.
    monkeypatch.setattr(training.common, "HumanML3D", spy)
    if hasattr(module, "HumanML3D"):
        monkeypatch.setattr(module, "HumanML3D", spy)
    with pytest.raises(Built) as built:
        module.main(tmp_path, tmp_path / "run", preset="tiny", overrides=["augment.reverse=0.5"])
    assert built.value.args[0]["augmentation"] == Augment(reverse=0.5)


@pytest.mark.parametrize("speed", [0.8, 1.25])
def test_a_retimed_walk_covers_the_same_path_at_another_speed(speed):
    from training.data.augment import retime_joints

    joints = walking_clip(121, speed=1.3, turn_rate=0.3, stride_hz=1.8)
    faster = retime_joints(joints, speed)
    assert len(faster) % 4 == 0 and abs((len(faster) - 1) - 120 / speed) <= 4
    applied = 120 / (len(faster) - 1)
    # Same poses at the same moments of the clip: frame k of the new clip is the original at time k * applied.
    k = np.arange(0, len(faster), 7)
    t = k * applied
    low = np.minimum(t.astype(int), 119)
    expected = joints[low] + (t - low)[:, None, None] * (joints[low + 1] - joints[low])
    np.testing.assert_allclose(faster[k], expected, atol=1e-9)
    feats = augment(joints_to_features(joints), ("walks", "walk/VERB"), Augment(retime=1.0),
                    np.random.default_rng(3))[0]
    assert 0.8 * 120 - 4 <= len(feats) - 1 <= 1.25 * 120 + 4 and len(feats) != len(joints) - 1
    path = _joints(feats)[:, 0, [0, 2]]
    original = _joints(joints_to_features(joints))[:, 0, [0, 2]]
    length = lambda p: np.linalg.norm(np.diff(p, axis=0), axis=-1).sum()  # noqa: E731
    assert length(path) == pytest.approx(length(original), rel=0.03)  # the same path, in another time


def test_retimed_dataset_items_carry_their_new_length_and_hints(root):
    spec = ControlSpec(density=100, all_joints=True)
    plain = HumanML3D(root, "train", control=spec, seed=4)
    retimed = HumanML3D(root, "train", control=spec, seed=4, augmentation=Augment(retime=1.0))
    changed = 0
    for index in range(len(plain)):
        a, r = plain[index], retimed[index]
        assert r["motion"].shape[0] == r["length"] == r["hint"].shape[0] == r["hint_mask"].shape[0]
        assert r["text"] == a["text"] and r["length"] % 4 == 0
        changed += r["length"] != a["length"]
    assert changed >= len(plain) // 2
