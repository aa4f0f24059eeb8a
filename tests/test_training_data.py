"""Training data: synthetic preparation, the HumanML3D-format reader, control hints, captions, mappings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backend.motion.features import features_to_joints
from backend.retarget.bandai import bandai_positions_to_smpl
from backend.motion.skeleton import CONTROL_JOINTS, JOINT_NAMES, MAX_FRAMES, MIN_FRAMES
from training.data.captions import captions_from_labels, describe_trajectory
from training.data.dataset import ControlSpec, HumanML3D, collate
from training.data.mapping import BANDAI, load_mapping, mapping_from_dict
from training.data.synthetic import walking_clip, waving_clip
from training.data.text_format import format_caption_line, read_caption_file
from training_helpers import synthetic_root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return synthetic_root(tmp_path_factory)


def test_prepared_folder_has_the_humanml3d_layout(root):
    names = (root / "all.txt").read_text().split()
    assert len(names) == 24
    splits = [set((root / f"{s}.txt").read_text().split()) for s in ("train", "val", "test")]
    assert set.union(*splits) == set(names) and sum(map(len, splits)) == len(names)
    for name in names:
        feats = np.load(root / "new_joint_vecs" / f"{name}.npy")
        joints = np.load(root / "new_joints" / f"{name}.npy")
        assert feats.shape[1] == 263 and joints.shape == (len(feats), 22, 3) and feats.dtype == np.float32
        assert read_caption_file(root / "texts" / f"{name}.txt")
    mean, std = np.load(root / "Mean.npy"), np.load(root / "Std.npy")
    assert mean.shape == std.shape == (263,) and (std > 0).all()
    assert std[0] == pytest.approx(std[0:1].mean())  # HumanML3D's per-group std
    assert np.all(std[259:263] == std[259])
    report = json.loads((root / "report.json").read_text())
    assert report["skipped"] == {} and len(report["prepared"]) == 24


def test_items_are_normalised_crops_of_multiples_of_four_frames(root):
    data = HumanML3D(root, "train", seed=3)
    for index in range(len(data)):
        item = data[index]
        assert item["length"] % 4 == 0 and MIN_FRAMES <= item["length"] <= MAX_FRAMES
        assert item["motion"].shape == (item["length"], 263)
        assert (item["text"], item["tokens"]) in data.items[index][2]
    again = HumanML3D(root, "train", seed=3)
    assert torch.equal(again[5]["motion"], data[5]["motion"])  # randomness is a function of (seed, epoch, index)
    data.set_epoch(1)
    lengths = {(data[i]["length"], data[i]["text"]) for i in range(len(data))}
    data.set_epoch(0)
    assert lengths != {(data[i]["length"], data[i]["text"]) for i in range(len(data))}


def test_caption_time_windows_and_the_length_filter(root, tmp_path):
    import shutil

    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    name = (copy / "train.txt").read_text().split()[0]
    frames = len(np.load(copy / "new_joint_vecs" / f"{name}.npy"))
    (copy / "texts" / f"{name}.txt").write_text("\n".join([
        format_caption_line("a person walks"),
        format_caption_line("the first two seconds", 0.0, 2.0),  # 40 frames: kept
        format_caption_line("too short a window", 0.0, 1.0),  # 20 frames: dropped
    ]) + "\n")
    short = np.load(copy / "new_joint_vecs" / f"{name}.npy")[:30]
    np.save(copy / "new_joint_vecs" / "short.npy", short)
    (copy / "texts" / "short.txt").write_text(format_caption_line("a short clip") + "\n")
    (copy / "train.txt").write_text((copy / "train.txt").read_text() + "short\n")
    data = HumanML3D(copy, "train")
    names = [item[0] for item in data.items]
    assert f"{name}@0.0-2.0" in names and "short" not in names
    assert not any("1.0" in n for n in names if n.startswith(name + "@"))
    window = dict((n, m) for n, m, _ in data.items)[f"{name}@0.0-2.0"]
    assert len(window) == 40 and frames > 40


def test_control_hints_are_normalised_joints_at_the_chosen_frames(root):
    spec = ControlSpec.six_joints()
    data = HumanML3D(root, "train", control=spec, seed=0)
    for index in range(4):
        item = data[index]
        hint, mask = item["hint"].numpy(), item["hint_mask"].numpy()
        controlled_joints = np.flatnonzero(mask.any(axis=(0, 2)))
        assert len(controlled_joints) == 1 and controlled_joints[0] in CONTROL_JOINTS.values()
        frames = np.flatnonzero(mask.any(axis=(1, 2)))
        assert 1 <= len(frames) <= item["length"] - 1
        crop = item["motion"].numpy() * data.std + data.mean
        joints = features_to_joints(crop)
        positions = hint * data.raw_std + data.raw_mean
        j = controlled_joints[0]
        np.testing.assert_allclose(positions[frames, j], joints[frames, j], atol=1e-4)
        assert np.all(hint[mask == 0] == 0)
    pelvis = HumanML3D(root, "train", control=ControlSpec(density=100, all_joints=True), seed=0)[0]
    assert pelvis["hint_mask"][:, 0].all() and pelvis["hint_mask"][:, 1:].sum() == 0


def test_collate_pads_and_masks(root):
    data = HumanML3D(root, "train", control=ControlSpec.pelvis(), seed=0)
    batch = collate([data[0], data[1], data[2]])
    longest = int(batch["length"].max())
    assert batch["motion"].shape == (3, longest, 263) and batch["hint"].shape == (3, longest, 22, 3)
    for i in range(3):
        n = int(batch["length"][i])
        assert batch["mask"][i, :n].all() and not batch["mask"][i, n:].any()
        assert torch.all(batch["motion"][i, n:] == 0)


def test_trajectory_words_follow_the_measured_root_path():
    from backend.motion.features import joints_to_features

    def canonical(joints):
        return features_to_joints(joints_to_features(joints.astype(np.float32)))

    assert describe_trajectory(canonical(walking_clip(80, 1.2, 0.0, 1.0)))["direction"] == "forward"
    assert describe_trajectory(canonical(walking_clip(80, 1.2, 0.8, 1.0)))["direction"] == "turning left"
    assert describe_trajectory(canonical(walking_clip(80, 1.2, -0.8, 1.0)))["direction"] == "turning right"
    assert describe_trajectory(canonical(walking_clip(196, 1.2, 2.2, 1.0)))["direction"] == "in a circle"
    assert describe_trajectory(canonical(waving_clip(80, "left", 1.5)))["direction"] is None
    backwards = walking_clip(80, 1.2, 0.0, 1.0)[::-1]  # played in reverse: facing +Z, moving towards -Z
    assert describe_trajectory(canonical(backwards))["direction"] == "backward"


def test_label_captions_are_varied_deterministic_and_honest():
    still = {"direction": None, "speed": None}
    first = captions_from_labels("clip_1", "walk-turn-left", "exhausted", {"direction": "turning left", "speed": None})
    assert first == captions_from_labels("clip_1", "walk-turn-left", "exhausted",
                                         {"direction": "turning left", "speed": None})
    assert len(first) == 3 and len(set(first)) == 3
    assert not any("while turning left" in c for c in first)  # the label already says it
    waves = [c for seed in range(5) for c in captions_from_labels("w", "wave-right-hand", "normal", still, seed)]
    assert all("right" in c for c in waves) and not any(w in c for c in waves for w in ("forward", "circle"))
    walks = [c for seed in range(5) for c in captions_from_labels("x", "walk", "active", {"direction": "forward",
                                                                                          "speed": None}, seed)]
    assert any("forward" in c for c in walks) and not any("backward" in c for c in walks)
    assert captions_from_labels("u", "cartwheel", "graceful", still)[0].startswith(
        ("a person", "someone", "a man", "a woman", "the person", "a figure"))


def test_mappings_from_presets_and_json(tmp_path):
    assert load_mapping("bandai") is BANDAI and BANDAI.scale == 0.01
    names = sorted(BANDAI.source_names())
    positions = np.random.default_rng(0).normal(size=(3, len(names), 3)) * 50.0
    mapped = BANDAI.apply(names, positions)
    index = {n: i for i, n in enumerate(names)}
    # One-to-one joints are the source joints in metres; the branch joints come from backend.retarget.bandai.
    np.testing.assert_allclose(mapped[:, 4], positions[:, index["LowerLeg_L"]] * 0.01)
    expected = bandai_positions_to_smpl({n: positions[:, index[n]] * 0.01 for n in names})
    np.testing.assert_allclose(mapped, expected)
    with pytest.raises(ValueError, match="lacks joints"):
        BANDAI.apply(names[1:], positions[:, 1:])
    with pytest.raises(ValueError, match="does not cover"):
        mapping_from_dict({"joints": {"pelvis": "Hips"}})
    path = tmp_path / "mapping.json"
    joints = {name: name for name in JOINT_NAMES}
    joints["spine2"] = ["spine1", "spine3", 0.5]
    path.write_text(json.dumps({"scale": 0.0254, "joints": joints}))
    custom = load_mapping(path)
    assert custom.scale == 0.0254
    smpl_positions = np.random.default_rng(1).normal(size=(2, len(JOINT_NAMES), 3))
    out = custom.apply(list(JOINT_NAMES), smpl_positions)
    np.testing.assert_allclose(out[:, 6], 0.0254 * (smpl_positions[:, 3] + smpl_positions[:, 9]) / 2)


def test_prepare_from_labels_csv_splits_long_clips_and_keeps_parts_together(tmp_path):
    from training.cli import data_main

    source = tmp_path / "source"
    source.mkdir()
    np.save(source / "long_walk.npy", walking_clip(300, 1.2, 0.0, 1.0).astype(np.float32))  # 299 feature frames
    np.save(source / "turn.npy", walking_clip(90, 1.2, 0.9, 1.0).astype(np.float32))
    np.save(source / "wave.npy", waving_clip(90, "right", 1.5).astype(np.float32))
    np.save(source / "collapsed.npy", np.zeros((60, 22, 3), np.float32))  # every joint at one point
    np.save(source / "flat.npy", np.zeros((60, 66), np.float32))  # not (T, 22, 3)
    (source / "labels.csv").write_text("clip,content,style\nlong_walk,walk,normal\nturn,walk,active\n"
                                       "wave,wave-right-hand,elderly\ncollapsed,walk,\nflat,run,\n")
    out = tmp_path / "out"
    assert data_main(["prepare", "--source", str(source), "--mapping", "smpl", "--captions",
                      str(source / "labels.csv"), "--out", str(out), "--seed", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["prepared"]) == ["long_walk__part0", "long_walk__part1", "turn", "wave"]
    assert report["notes"]["long_walk.npy"] == "299 frames: split into 2 parts"
    assert report["skipped"]["collapsed.npy"].startswith("conversion failed")
    assert report["skipped"]["flat.npy"].startswith("unreadable: expected a (T, 22, 3) joint array")
    splits = {s: set((out / f"{s}.txt").read_text().split()) for s in ("train", "val", "test")}
    assert any({"long_walk__part0", "long_walk__part1"} <= names for names in splits.values())
    assert "unknown" in json.loads((out / "dataset.json").read_text())["licence"]
    turn = " ".join(c.caption for c in read_caption_file(out / "texts" / "turn.txt"))
    wave = " ".join(c.caption for c in read_caption_file(out / "texts" / "wave.txt"))
    assert "walk" in turn and "wav" in wave and "right" in wave
    assert not any(w in wave for w in ("forward", "turning", "circle"))  # it stands still


def test_prepare_writes_the_272_dim_representation_with_both_formats(tmp_path):
    """`--format both`: every clip also in the 272-dim representation (MotionMillion), with its statistics; the
    features decode to a body that walks the clip's own pelvis path."""
    from backend.motion import rep272
    from training.cli import data_main

    source = tmp_path / "source"
    source.mkdir()
    np.save(source / "walk.npy", walking_clip(90, 1.2, 0.4, 1.0).astype(np.float32))
    np.save(source / "wave.npy", waving_clip(90, "left", 1.5).astype(np.float32))
    (source / "labels.csv").write_text("clip,content,style\nwalk,walk,normal\nwave,wave-left-hand,normal\n")
    out = tmp_path / "out"
    assert data_main(["prepare", "--source", str(source), "--mapping", "smpl", "--captions",
                      str(source / "labels.csv"), "--out", str(out), "--format", "both", "--val", "0",
                      "--test", "0"]) == 0
    assert json.loads((out / "dataset.json").read_text())["formats"] == ["263", "272"]
    mean, std = np.load(out / "Mean_272.npy"), np.load(out / "Std_272.npy")
    assert mean.shape == std.shape == (272,) and (std >= 1e-3).all()
    for name in ("walk", "wave"):
        features = np.load(out / "vector_272" / f"{name}.npy")
        joints = np.load(out / "new_joints" / f"{name}.npy")
        assert features.shape == (len(joints), 272) and features.dtype == np.float32 and np.isfinite(features).all()
        positions, rotations = rep272.from_272(features)
        np.testing.assert_allclose(rep272.to_272(positions, rotations), features, atol=1e-4)
        travelled = np.linalg.norm(np.diff(positions[:, 0, [0, 2]], axis=0), axis=-1).sum()
        expected = np.linalg.norm(np.diff(joints[:, 0, [0, 2]], axis=0), axis=-1).sum()
        assert travelled == pytest.approx(expected, abs=1e-3)  # the pelvis path, whatever the turn


def test_every_bandai_action_has_training_and_held_out_phrasings_that_never_meet(shared_dir):
    """Dataset 1's and 2's content labels each have their own training phrasings and paraphrases kept out of
    training (at least a fifth of all), and a held-out caption is built only from the latter."""
    from training.data.captions import CONTENT_PHRASES, HELD_OUT_CONTENT_PHRASES, STYLE_PHRASES

    labels = []
    for folder in ("bandai_namco_ds1_eval", "bandai_namco_ds2_train"):
        cfg = shared_dir / "data" / folder / "cfg"
        labels += [("content", s.split("_", 1)[1]) for s in (cfg / "content_label.txt").read_text().split()]
        labels += [("style", s.split("_", 1)[1]) for s in (cfg / "style_label.txt").read_text().split()]
    for kind, label in labels:
        if kind == "style":
            assert label in STYLE_PHRASES, label
            continue
        train, held = CONTENT_PHRASES[label], HELD_OUT_CONTENT_PHRASES[label]
        assert held and len(held) / (len(held) + len(train)) >= 0.2 and not set(held) & set(train), label
        still = {"direction": None, "speed": None}
        for caption in captions_from_labels("clip", label, "normal", still, held_out=True, count=2):
            assert any(p in caption for p in held) and not any(p in caption for p in train if p not in held[0])
    with pytest.raises(ValueError, match="no held-out paraphrase"):
        captions_from_labels("clip", "cartwheel", None, {"direction": None, "speed": None}, held_out=True)


def test_side_and_backward_walks_get_no_contradicting_direction_words():
    backward = {"direction": "backward", "speed": None}
    for seed in range(5):
        for caption in captions_from_labels("c", "walk-back", "sad", backward, seed):
            assert "forward" not in caption and caption.count("backwards") <= 1
