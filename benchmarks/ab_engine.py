"""A/B engine speed: run bench_engine.py alternately against two source trees and report per-figure medians.

On a shared machine the load drifts over minutes; alternating A, B, A, B, ... exposes both trees to the same
drift, so their medians compare. A tree is any folder holding a `backend` package (e.g. an export of a previous
commit: `git archive HEAD backend | tar -x -C /tmp/base`). Prints one JSON object {"a": ..., "b": ...}.

    python benchmarks/ab_engine.py --a /tmp/base --b . [--rounds 3] [--repeats 7] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent / "bench_engine.py"


def numeric_leaves(report: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in report.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(numeric_leaves(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="tree A (e.g. the baseline)")
    parser.add_argument("--b", required=True, help="tree B (e.g. this checkout)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    extra = ["--repeats", str(args.repeats)] + (["--threads", str(args.threads)] if args.threads else [])
    runs: dict[str, list[dict[str, float]]] = {"a": [], "b": []}
    for round_ in range(args.rounds):
        for label in ("a", "b"):
            root = str(Path(getattr(args, label)).resolve())
            done = subprocess.run([sys.executable, str(BENCH), "--backend-root", root, *extra],
                                  check=True, capture_output=True, text=True)
            runs[label].append(numeric_leaves(json.loads(done.stdout)))
            print(f"round {round_ + 1}/{args.rounds} {label} done", file=sys.stderr)
    summary = {label: {key: round(statistics.median(r[key] for r in reports), 2) for key in reports[0]
                       if all(key in r for r in reports)}
               for label, reports in runs.items()}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
