"""Behaviour signatures: does a generated motion do what its prompt names? One physical test per action, on
(T, 22, 3) joints at 20 fps in HumanML3D axes (metres, Y up, frame 0 facing +Z, +X the body's left), with
paraphrased prompts that no training caption uses (training/data/captions.py keeps its own held-out phrasings
apart; these are written here, for this test only).

A signature must pass on real clips of its action: `real_pass_rates` checks that on a prepared split (the
held-out styles), so a failing generated motion is the model's fault, not the test's. `pass_rates` runs an engine
(anything with the pipelines' `generate(prompts, lengths, seed=...)`) over prompts x seeds. Thresholds follow the
issue's examples (backwards: 1 m behind; sidestep: 1 m to the side with the facing within 45 degrees; dash faster
than the run) where real clips pass them, and are loosened where they do not (the bow, `_bow`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from backend.motion.humanml3d_skeleton import canonicalize, facing_forward
from backend.motion.skeleton import CONTROL_JOINTS, FPS, JOINT_NAMES

from . import metrics

PELVIS, HEAD = CONTROL_JOINTS["pelvis"], CONTROL_JOINTS["head"]
WRISTS = {"left": CONTROL_JOINTS["left_wrist"], "right": CONTROL_JOINTS["right_wrist"]}
SHOULDERS = {"left": JOINT_NAMES.index("left_shoulder"), "right": JOINT_NAMES.index("right_shoulder")}
FEET = (CONTROL_JOINTS["left_foot"], CONTROL_JOINTS["right_foot"])
SECONDS = 5.0  # every prompt is generated for 5 s


def _travel(joints: np.ndarray) -> np.ndarray:
    """Pelvis displacement (x: left, z: forward) from frame 0 to the end, in frame 0's facing (canonical)."""
    return joints[-1, PELVIS, [0, 2]] - joints[0, PELVIS, [0, 2]]


def _speed(joints: np.ndarray) -> float:
    return metrics.horizontal_speed(joints, FPS, PELVIS)


def _heading_change(joints: np.ndarray) -> float:
    """Degrees the body turned from the first to the last second (positive: to the left), unwrapped."""
    forward = facing_forward(joints)
    angles = np.unwrap(np.arctan2(forward[:, 0], forward[:, 2]))
    second = int(FPS)
    return float(np.degrees(angles[-second:].mean() - angles[:second].mean()))


def _above_shoulder(joints: np.ndarray, side: str) -> np.ndarray:
    return joints[:, WRISTS[side], 1] > joints[:, SHOULDERS[side], 1] + 0.1


def _oscillates(joints: np.ndarray, side: str, frames: np.ndarray) -> bool:
    """The wrist sways side to side while up: at least 2 reversals of its lateral velocity (beyond 0.1 m/s)."""
    x = joints[frames, WRISTS[side], 0] - joints[frames, PELVIS, 0]
    velocity = np.diff(x) * FPS
    signs = np.sign(velocity[np.abs(velocity) > 0.1])
    return int((np.diff(signs) != 0).sum()) >= 2


def _stays(joints: np.ndarray, metres: float = 1.0) -> bool:
    return bool(np.linalg.norm(joints[:, PELVIS][:, [0, 2]] - joints[0, PELVIS, [0, 2]], axis=-1).max() <= metres)


def _walk(j: np.ndarray, _: dict) -> bool:
    return _travel(j)[1] >= 1.0 and 0.4 <= _speed(j) <= 2.2


def _run(j: np.ndarray, _: dict) -> bool:
    return _travel(j)[1] >= 2.0 and _speed(j) >= 1.6


def _dash(j: np.ndarray, context: dict) -> bool:
    return _travel(j)[1] >= 2.0 and _speed(j) > context.get("run_speed", 1.6)


def _sideways(sign: float) -> Callable[[np.ndarray, dict], bool]:
    def test(j: np.ndarray, _: dict) -> bool:
        facing_kept = abs(_heading_change(j)) <= 45.0
        return sign * _travel(j)[0] >= 1.0 and facing_kept

    return test


def _backwards(j: np.ndarray, _: dict) -> bool:
    return _travel(j)[1] <= -1.0 and abs(_heading_change(j)) <= 45.0


def _turn(sign: float) -> Callable[[np.ndarray, dict], bool]:
    def test(j: np.ndarray, _: dict) -> bool:
        return sign * _heading_change(j) >= 45.0 and np.linalg.norm(_travel(j)) >= 0.5

    return test


def _rise(joints: np.ndarray, side: str) -> float:
    """How far the wrist rises above where it starts (the mean of the first second)."""
    wrist = joints[:, WRISTS[side], 1]
    return float(wrist.max() - wrist[: int(FPS)].mean())


def _hand_up(sides: tuple[str, ...], wave: bool) -> Callable[[np.ndarray, dict], bool]:
    """The named wrists rise at least 15 cm (real raises in a small manner rise 15-20 cm), the other at most half
    as far; a wave also sways while up (above half its rise)."""
    others = tuple(s for s in WRISTS if s not in sides)

    def test(j: np.ndarray, _: dict) -> bool:
        rises = {side: _rise(j, side) for side in WRISTS}
        if any(rises[side] < 0.15 for side in sides):
            return False
        if any(rises[other] > 0.5 * min(rises[side] for side in sides) for other in others):
            return False
        if wave:
            for side in sides:
                wrist = j[:, WRISTS[side], 1]
                up = np.flatnonzero(wrist > wrist[: int(FPS)].mean() + 0.5 * rises[side])
                if not _oscillates(j, side, up):
                    return False
        return True

    return test


def _goodbye(sides: int) -> Callable[[np.ndarray, dict], bool]:
    """`sides` wrists above the shoulders for 0.5 s, swaying; the body stays within 1 m."""
    def test(j: np.ndarray, _: dict) -> bool:
        waving = [side for side in WRISTS if _above_shoulder(j, side).sum() >= FPS / 2
                  and _oscillates(j, side, np.flatnonzero(_above_shoulder(j, side)))]
        return len(waving) >= sides and _stays(j)

    return test


def _bow(j: np.ndarray, _: dict) -> bool:
    """The head drops 15 cm with the pelvis within 25 cm (the issue's 25 / 15 cm fail 4 of 5 real bows: real
    bows drop the head 10-46 cm and shift the pelvis up to 21 cm)."""
    drop = j[: int(FPS), HEAD, 1].mean() - j[:, HEAD, 1].min()
    return drop >= 0.15 and _stays(j, 0.25)


def _guide(j: np.ndarray, _: dict) -> bool:
    """An arm held out: a wrist at least 0.45 m from the pelvis horizontally for 0.5 s (a walk's arm swing reaches
    about 0.35 m), the body staying within 1 m."""
    reach = np.max([np.linalg.norm(j[:, WRISTS[s]][:, [0, 2]] - j[:, PELVIS][:, [0, 2]], axis=-1) for s in WRISTS],
                   axis=0)
    return (reach >= 0.45).sum() >= FPS / 2 and _stays(j)


# action -> (signature, three paraphrases never used as training captions)
ACTIONS: dict[str, tuple[Callable[[np.ndarray, dict], bool], tuple[str, ...]]] = {
    "walk": (_walk, ("a person ambles forward", "someone heads straight ahead on foot",
                     "a man goes for a short walk forward")),
    "run": (_run, ("a person moves at a running pace", "someone hurries forward at a jog",
                   "a woman runs straight ahead")),
    "dash": (_dash, ("a person bolts ahead at top speed", "someone sprints as fast as they can",
                     "a man races forward flat out")),
    "walk-back": (_backwards, ("a person retreats step by step", "someone moves backwards while facing forward",
                               "a man backs away slowly")),
    "walk-left": (_sideways(1.0), ("a person shuffles sideways to the left", "someone side-steps toward their left",
                                   "a man slides to his left with side steps")),
    "walk-right": (_sideways(-1.0), ("a person shuffles sideways to the right",
                                     "someone side-steps toward their right",
                                     "a man slides to his right with side steps")),
    "walk-turn-left": (_turn(1.0), ("a person veers to the left while walking", "someone walks and bends left",
                                    "a man strolls, turning toward his left")),
    "walk-turn-right": (_turn(-1.0), ("a person veers to the right while walking", "someone walks and bends right",
                                      "a man strolls, turning toward his right")),
    "wave-left-hand": (_hand_up(("left",), True), ("a person greets by waving the left hand",
                                                   "someone waves hello with their left hand",
                                                   "a man signals with his left hand waving")),
    "wave-right-hand": (_hand_up(("right",), True), ("a person greets by waving the right hand",
                                                     "someone waves hello with their right hand",
                                                     "a man signals with his right hand waving")),
    "wave-both-hands": (_hand_up(("left", "right"), True), ("a person greets with both arms waving overhead",
                                                            "someone waves hello with both hands",
                                                            "a man waves both arms above his head")),
    "raise-up-left-hand": (_hand_up(("left",), False), ("a person holds the left arm up high",
                                                        "someone lifts their left hand above the head",
                                                        "a man reaches up with his left arm")),
    "raise-up-right-hand": (_hand_up(("right",), False), ("a person holds the right arm up high",
                                                          "someone lifts their right hand above the head",
                                                          "a man reaches up with his right arm")),
    "raise-up-both-hands": (_hand_up(("left", "right"), False), ("a person holds both arms up high",
                                                                 "someone lifts both hands above the head",
                                                                 "a man reaches up with both arms")),
    "bye": (_goodbye(1), ("a person waves farewell", "someone says goodbye with a wave of the hand",
                          "a man waves to see someone off")),
    "byebye": (_goodbye(2), ("a person waves farewell with both arms", "someone says goodbye waving both hands",
                             "a man sees someone off, waving both hands")),
    "bow": (_bow, ("a person bends at the waist to greet someone", "someone bows deeply",
                   "a man makes a respectful bow")),
    "guide": (_guide, ("a person gestures to show someone where to go", "someone points out the way with an arm",
                       "a man shows the direction with his hand")),
}


def _canonical(joints: np.ndarray) -> np.ndarray:
    return canonicalize(np.asarray(joints, np.float64))


def training_prompts(action: str) -> tuple[str, ...]:
    """Three training captions of the action ("a person" + its first phrasings): for choosing sampling settings,
    so that the paraphrases stay unseen by every choice."""
    from training.data.captions import CONTENT_PHRASES

    return tuple(f"a person {phrase}" for phrase in CONTENT_PHRASES[action][:3])


def pass_rates(engine, seeds: tuple[int, ...] = (0, 1, 2), actions: tuple[str, ...] | None = None,
               seconds: float = SECONDS, phrasing: str = "paraphrase", **sampling) -> dict[str, dict]:
    """Per action: passes of 3 paraphrases (phrasing "training": 3 training captions) x len(seeds) generations,
    and each prompt's results. The dash is judged against the mean speed of this engine's own runs. `sampling`
    goes to engine.generate (e.g. guidance)."""
    frames = int(round(seconds * FPS))
    names = actions or tuple(ACTIONS)
    order = sorted(names, key=lambda a: a != "run")  # the run's speed first, for the dash
    context: dict = {}
    rows = {}
    for action in order:
        test, prompts = ACTIONS[action]
        if phrasing == "training":
            prompts = training_prompts(action)
        results, speeds = [], []
        for index, prompt in enumerate(prompts):
            for seed in seeds:
                motion = engine.generate([prompt], [frames], seed=seed + 100 * index, **sampling).motions[0]
                joints = _canonical(motion.joints)
                results.append({"prompt": prompt, "seed": seed + 100 * index, "passed": bool(test(joints, context))})
                speeds.append(_speed(joints))
        if action == "run":
            context["run_speed"] = float(np.mean(speeds))
        rows[action] = {"passed": sum(r["passed"] for r in results), "total": len(results), "results": results}
    return {action: rows[action] for action in names}


def real_pass_rates(data: str | Path, split: str = "heldout") -> dict[str, dict]:
    """The signatures on the real clips of a prepared dataset's split (named content_style_..., as Bandai's):
    per action, how many of its clips pass (cut to the first 5 s, as generated motions are)."""
    root = Path(data)
    clips: dict[str, list[np.ndarray]] = {}
    for name in (root / f"{split}.txt").read_text(encoding="utf-8").split():
        content = name.split("_")[1] if name.count("_") >= 2 else name
        if content in ACTIONS:
            joints = np.load(root / "new_joints" / f"{name}.npy")[: int(SECONDS * FPS)]
            clips.setdefault(content, []).append(_canonical(joints))
    context = {"run_speed": float(np.mean([_speed(c) for c in clips.get("run", [])] or [1.6]))}
    return {action: {"passed": sum(bool(ACTIONS[action][0](c, context)) for c in found), "total": len(found)}
            for action, found in clips.items()}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="motionlcm-eval signatures",
                                     description="Behaviour pass rates of an engine on paraphrased prompts.")
    parser.add_argument("--engine", choices=("motionlcm", "ar"), default="motionlcm")
    parser.add_argument("--checkpoint", default=None, help="default: the engine's shipped model")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data", help="also the signatures on this prepared dataset's real clips (--split)")
    parser.add_argument("--split", default="heldout")
    parser.add_argument("--phrasing", choices=("paraphrase", "training"), default="paraphrase",
                        help="the held-out paraphrases (default), or training captions (for choosing settings)")
    parser.add_argument("--guidance", type=float, help="sampling guidance (default: the checkpoint's)")
    parser.add_argument("--temperature", type=float, help="AR engine: sampling temperature")
    parser.add_argument("--top-k", type=int, help="AR engine: top-k")
    args = parser.parse_args(argv)
    if args.engine == "ar":
        from backend.generation.ar_pipeline import ARPipeline

        engine = ARPipeline.from_checkpoint(args.checkpoint)
    else:
        from backend.generation.pipeline import MotionLCMPipeline

        engine = MotionLCMPipeline.from_checkpoint(args.checkpoint)
    sampling = {k: v for k, v in (("guidance", args.guidance), ("temperature", args.temperature),
                                  ("top_k", args.top_k)) if v is not None}
    report = {"engine": args.engine, "checkpoint": engine.checkpoint.checkpoint_id, "phrasing": args.phrasing,
              "sampling": sampling,
              "generated": pass_rates(engine, seeds=tuple(range(args.seeds)), phrasing=args.phrasing, **sampling)}
    if args.data:
        report["real"] = real_pass_rates(args.data, args.split)
    print(json.dumps(report, indent=1))
    return 0
