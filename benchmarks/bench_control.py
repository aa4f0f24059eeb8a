"""Control fitting on the shipped default model: pelvis error, time and foot skating, draft against default.

Per path (training/evaluation/control_paths.py: dataset 1's 33 held-out captures and 7 built paths), one
`generate` with the dense pelvis path: the draft (`fit=False`, the ControlNet alone) and the default (`fit=True`).
Errors are the pelvis's distance from its path (mean and max over the frames, metres). Times are whole calls,
text to joints (prompt cache cleared), the median of --repeats after one warm-up. Skating: the official ratio
of the motion as delivered with Foot Lock (retargeted onto the default body, grounded). Optional rows: sparse
waypoints (--density 0.25) and the pelvis plus a wrist target within reach. Prints one JSON object.

    python benchmarks/bench_control.py [--repeats 3] [--seed 0] [--device cpu] [--limit N] [--density 0.25]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import backend  # noqa: E402,F401  (before torch, see backend/__init__.py)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.generation.controls import JointControl  # noqa: E402
from backend.motion import Motion  # noqa: E402
from backend.generation.pipeline import MotionLCMPipeline  # noqa: E402
from backend.retarget import GENERATED_REFINE, retarget  # noqa: E402
from backend.retarget.feet import skating_ratio  # noqa: E402
from backend.motion.skeleton import MIN_FRAMES  # noqa: E402
from training.evaluation.control_paths import built_paths, held_out_paths  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _timed(pipe: MotionLCMPipeline, prompt: str, controls: list[JointControl], frames: int, seed: int, fit: bool,
           repeats: int):
    times, result = [], None
    for i in range(repeats + 1):
        pipe.prompt_cache.clear()
        start = time.perf_counter()
        result = pipe.generate([prompt], [frames], controls=[controls], seed=seed, fit=fit)
        if i:  # the first call warms up
            times.append((time.perf_counter() - start) * 1000.0)
    return result, statistics.median(times)


def _skating(result) -> float:
    motion = result.motions[0]
    delivered = retarget(Motion(motion.joints, features=motion.features), foot_lock=True, refine=GENERATED_REFINE)
    return skating_ratio(delivered.fk())


def _sparse(path: np.ndarray, density: float) -> JointControl:
    frames = np.unique(np.round(np.linspace(0, len(path) - 1, max(2, round(len(path) * density)))).astype(int))
    return JointControl("pelvis", frames, path[frames])


def _row(pipe, name: str, prompt: str, controls: list[JointControl], frames: int, args) -> dict:
    draft, draft_ms = _timed(pipe, prompt, controls, frames, args.seed, False, args.repeats)
    fitted, fit_ms = _timed(pipe, prompt, controls, frames, args.seed, True, args.repeats)
    report = fitted.fit_reports[0]
    peak = {k: float(np.linalg.norm(np.diff(r.joints[0, :frames, 0], axis=0), axis=-1).max() * 20.0)
            for k, r in (("draft", draft), ("default", fitted))}
    return {"path": name, "prompt": prompt, "frames": frames,
            "draft": {"error": {j: e.to_dict() for j, e in report.draft.items()}, "ms": round(draft_ms, 1),
                      "skating_foot_lock": round(_skating(draft), 4), "peak_pelvis_speed": round(peak["draft"], 2)},
            "default": {"error": {j: e.to_dict() for j, e in report.final.items()}, "ms": round(fit_ms, 1),
                        "skating_foot_lock": round(_skating(fitted), 4),
                        "peak_pelvis_speed": round(peak["default"], 2)},
            "time_ratio": round(fit_ms / draft_ms, 3), "warnings": report.warnings}


def _summary(rows: list[dict]) -> dict:
    def pick(mode: str, key: str) -> list[float]:
        return [r[mode]["error"]["pelvis"][key] for r in rows]

    out = {}
    for mode in ("draft", "default"):
        out[mode] = {"pelvis_mean_m": {"mean": round(float(np.mean(pick(mode, "mean_m"))), 4),
                                       "worst_path": round(float(np.max(pick(mode, "mean_m"))), 4)},
                     "pelvis_max_m": round(float(np.max(pick(mode, "max_m"))), 4),
                     "skating_foot_lock": round(float(np.mean([r[mode]["skating_foot_lock"] for r in rows])), 4),
                     "ms_median": round(float(np.median([r[mode]["ms"] for r in rows])), 1),
                     "ms_max": round(float(np.max([r[mode]["ms"] for r in rows])), 1)}
    out["skating_ratio_default_over_draft"] = round(out["default"]["skating_foot_lock"]
                                                    / max(out["draft"]["skating_foot_lock"], 1e-9), 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=None, help="only the first N held-out clips")
    parser.add_argument("--density", type=float, default=0.25, help="sparse-waypoint rows (0: none)")
    args = parser.parse_args()

    pipe = MotionLCMPipeline.from_checkpoint(None, device=args.device)
    paths = held_out_paths(SHARED_DATA)[:args.limit] + built_paths()
    rows = {"dense": [], "sparse": [], "pelvis_and_wrist": []}
    for p in paths:
        frames = len(p.pelvis)
        if frames < MIN_FRAMES:
            continue
        dense = [JointControl.dense("pelvis", p.pelvis.astype(np.float32))]
        rows["dense"].append(_row(pipe, p.name, p.prompt, dense, frames, args))
        if args.density:
            rows["sparse"].append(_row(pipe, p.name, p.prompt, [_sparse(p.pelvis, args.density)], frames, args))
        if p.joints is not None:  # the capture's own right wrist: reachable by construction
            wrist = JointControl.dense("right_wrist", p.joints[:, 21].astype(np.float32))
            rows["pelvis_and_wrist"].append(_row(pipe, p.name, p.prompt, dense + [wrist], frames, args))
    result = {
        "benchmark": "control_fitting", "checkpoint": pipe.checkpoint.checkpoint_id, "device": args.device,
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "repeats": args.repeats, "seed": args.seed, "density": args.density,
        "summary": {kind: _summary(r) for kind, r in rows.items() if r}, "rows": rows,
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
