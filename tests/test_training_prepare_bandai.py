"""`motionlcm-data prepare` on real Bandai-Namco mocap (a few clips streamed from ../shared at test time).

Licence: CC BY-NC-ND 4.0, so the converted data lives only in pytest's temporary folder.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from backend.motion.bvh import read_bvh
from backend.motion.features import features_to_joints
from backend.motion.humanml3d_skeleton import canonicalize, uniform_skeleton
from training.cli import data_main
from training.data.captions import HELD_OUT_CONTENT_PHRASES
from training.data.mapping import BANDAI
from training.data.prepare import resample

ARCHIVE = Path("bandai_namco_ds2_train") / "bandai_namco_dataset2_bvh_json.tar.xz"
GOOD_CLIPS = 4


def _extract_pairs(data_dir: Path, out: Path, count: int) -> list[Path]:
    """Stream the archive's first members until `count` BVH files with their JSON labels are out."""
    payload: dict[str, dict[str, bytes]] = {}
    with tarfile.open(data_dir / ARCHIVE, "r:xz") as archive:
        for member in archive:
            if not member.isfile() or Path(member.name).suffix not in (".bvh", ".json"):
                continue
            stem = Path(member.name).stem
            with archive.extractfile(member) as src:
                payload.setdefault(stem, {})[Path(member.name).suffix] = src.read()
            complete = [s for s, files in payload.items() if len(files) == 2]
            if len(complete) == count:
                break
    paths = []
    for stem in complete:
        for suffix, data in payload[stem].items():
            (out / f"{stem}{suffix}").write_bytes(data)
        paths.append(out / f"{stem}.bvh")
    return paths


def _trim_frames(text: str, frames: int) -> str:
    head, body = text.split("MOTION", 1)
    lines = body.strip().splitlines()
    motion = [line for line in lines[2:] if line.strip()][:frames]
    return f"{head}MOTION\nFrames: {frames}\n{lines[1]}\n" + "\n".join(motion) + "\n"


@pytest.fixture(scope="module")
def prepared(data_dir, tmp_path_factory):
    if not (data_dir / ARCHIVE).exists():
        pytest.skip(f"needs {data_dir / ARCHIVE}")
    source = tmp_path_factory.mktemp("bandai_source")
    good = _extract_pairs(data_dir, source, GOOD_CLIPS)
    shutil.copytree(data_dir / ARCHIVE.parent / "cfg", source / "cfg")
    text = good[0].read_text()
    # Bad files: a truncated download, a clip nobody labelled, a clip under 2 s at 20 fps.
    (source / "dataset-2_walk_normal_900.bvh").write_text(text[: len(text) * 3 // 5])
    (source / "mystery_take.bvh").write_text(text)
    (source / "dataset-2_run_active_901.bvh").write_text(_trim_frames(text, 45))
    out = tmp_path_factory.mktemp("bandai") / "humanml3d"
    assert data_main(["prepare", "--source", str(source), "--mapping", "bandai", "--captions", "bandai",
                      "--out", str(out), "--seed", "1"]) == 0
    return source, out, good


def test_good_clips_are_prepared_and_bad_files_reported(prepared):
    source, out, good = prepared
    report = json.loads((out / "report.json").read_text())
    prepared_sources = {name.split("__part")[0] for name in report["prepared"]}
    assert prepared_sources == {p.stem for p in good}
    skipped = report["skipped"]
    assert set(skipped) == {"dataset-2_walk_normal_900.bvh", "mystery_take.bvh", "dataset-2_run_active_901.bvh"}
    assert skipped["dataset-2_walk_normal_900.bvh"].startswith("unreadable")
    assert skipped["mystery_take.bvh"] == "no captions"
    assert skipped["dataset-2_run_active_901.bvh"].startswith("too short: 29 frames")
    summary = (out / "report.txt").read_text()
    assert "skipped 3 files" in summary and "mystery_take.bvh: no captions" in summary
    for name in report["prepared"]:
        assert np.load(out / "new_joint_vecs" / f"{name}.npy").shape[1] == 263
    assert (out / "Mean.npy").exists() and (out / "Std.npy").exists()
    assert "CC BY-NC-ND 4.0" in json.loads((out / "dataset.json").read_text())["licence"]


def test_captions_come_from_the_json_labels(prepared):
    source, out, good = prepared
    for path in good:
        labels = json.loads(path.with_suffix(".json").read_text())
        content = (source / "cfg" / "content_label.txt").read_text().split()[labels["content"]].split("_", 1)[1]
        lines = (out / "texts" / f"{path.stem}.txt").read_text().splitlines()
        assert len(lines) == 3
        first_word = {"walk": "walk", "run": "run", "wave": "wave", "raise": "hand"}[content.split("-")[0]]
        keywords = {"walk": ("walk", "stroll", "step"), "run": ("run", "jog"), "wave": ("wave",),
                    "hand": ("raise", "lift", "put")}[first_word]
        for line in lines:
            caption, tokens, start, end = line.split("#")
            assert any(k in caption for k in keywords), caption
            assert (start, end) == ("0.0", "0.0") and "/" in tokens


def test_features_decode_back_to_the_mapped_joints_within_1cm(prepared):
    """Compared: the BVH's joints through the bandai mapping (metres), resampled to 20 fps, then given
    HumanML3D's normalisation (bone lengths of the uniform skeleton, feet on the floor y = 0, frame 0's
    pelvis at the xz origin, facing +Z); versus features_to_joints of the prepared features. The features
    have one frame fewer (velocities), so the last normalised frame is dropped."""
    _, out, good = prepared
    for path in good:
        bvh = read_bvh(path)
        joints = resample(BANDAI.apply(bvh.names, bvh.global_positions()), bvh.fps)
        reference = canonicalize(uniform_skeleton(joints))[:-1]
        decoded = features_to_joints(np.load(out / "new_joint_vecs" / f"{path.stem}.npy"))
        assert decoded.shape == reference.shape
        error = np.linalg.norm(decoded - reference, axis=-1)
        assert error.max() < 0.01, f"{path.name}: max {error.max():.4f} m"


DS1_ARCHIVE = Path("bandai_namco_ds1_eval") / "bandai_namco_dataset1_bvh_json.tar.xz"
DS1_CLIPS = ("dataset-1_walk-back_happy_001", "dataset-1_bow_happy_001", "dataset-1_walk-back_proud_001",
             "dataset-1_bye_giant_001")


def _extract_named(archive_path: Path, out: Path, stems: tuple[str, ...]) -> None:
    with tarfile.open(archive_path, "r:xz") as archive:
        for member in archive:
            name = Path(member.name)
            if member.isfile() and name.stem in stems and name.suffix in (".bvh", ".json"):
                with archive.extractfile(member) as src:
                    (out / name.name).write_bytes(src.read())


def test_two_datasets_combine_and_held_out_styles_stay_out_of_training(data_dir, prepared, tmp_path):
    """Dataset 2 plus dataset 1 in one prepare: dataset 1's held-out styles (proud, giant here) form the
    `heldout` split only, its other clips are captioned with its own actions, and no caption uses a
    paraphrase kept for testing."""
    if not (data_dir / DS1_ARCHIVE).exists():
        pytest.skip(f"needs {data_dir / DS1_ARCHIVE}")
    ds2_source, _, _ = prepared
    ds1_source = tmp_path / "ds1"
    ds1_source.mkdir()
    _extract_named(data_dir / DS1_ARCHIVE, ds1_source, DS1_CLIPS)
    shutil.copytree(data_dir / DS1_ARCHIVE.parent / "cfg", ds1_source / "cfg")
    out = tmp_path / "combined"
    assert data_main(["prepare", "--source", str(ds2_source), "--source", str(ds1_source), "--mapping", "bandai",
                      "--captions", "bandai", "--out", str(out), "--held-out-styles", "proud,childish,giant",
                      "--val", "0", "--test", "0"]) == 0
    split = {name: (out / f"{name}.txt").read_text().split() for name in ("train", "val", "test", "heldout")}
    base = {name: {n.split("__part")[0] for n in names} for name, names in split.items()}
    assert base["heldout"] == {"dataset-1_walk-back_proud_001", "dataset-1_bye_giant_001"}
    trained = base["train"] | base["val"] | base["test"]
    assert {"dataset-1_walk-back_happy_001", "dataset-1_bow_happy_001"} <= trained
    assert not trained & base["heldout"] and any(n.startswith("dataset-2_") for n in trained)
    assert json.loads((out / "dataset.json").read_text())["held_out_styles"] == ["proud", "childish", "giant"]
    back = (out / "texts" / "dataset-1_walk-back_happy_001.txt").read_text().lower()
    assert ("backwards" in back or "backs up" in back or "reverse" in back) and "forward" not in back
    assert "bow" in (out / "texts" / "dataset-1_bow_happy_001.txt").read_text().lower()
    held_out_phrases = {p for phrases in HELD_OUT_CONTENT_PHRASES.values() for p in phrases}
    for text in (out / "texts").iterdir():
        assert not any(p in text.read_text() for p in held_out_phrases), text.name
