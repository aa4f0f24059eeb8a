"""Console entry points: `motionlcm-train` and `motionlcm-data`.

    motionlcm-data prepare --source DIR --mapping bandai|mapping.json --captions bandai|captions.csv --out ROOT
    motionlcm-data synthetic --out ROOT            (tiny procedural dataset for tests)
    motionlcm-train all --data ROOT --out runs/NAME [--preset tiny|default|official] [--resume]
    motionlcm-train vae|mld|lcm|controlnet --data ROOT --out runs/NAME [--preset ...] [--set train.steps=100]
    motionlcm-train tokenizer --data ROOT --out runs/NAME    (MotionMillion engine; data from prepare --format both)
    motionlcm-train ar --data ROOT --out runs/NAME           (its generator, over the tokenizer of the same run)
Multi-GPU / multi-node: launch the same command with `torchrun --nproc_per_node N -m training.cli train ...`
or `torchrun --nproc_per_node N $(which motionlcm-train) ...`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .common import PRESETS, STAGES, output_path

BANDAI_LICENCE = ("Trained on Bandai-Namco-Research-Motiondataset (CC BY-NC-ND 4.0, (c) 2022 Bandai Namco Research "
                  "Inc.): non-commercial use only")
UNKNOWN_LICENCE = "unknown: state the source data's licence (motionlcm-data prepare --licence)"


def _run_stage(stage: str, args: argparse.Namespace, resume: bool) -> None:
    module = importlib.import_module(f"training.stages.{stage}")
    result = module.main(args.data, args.out, preset=args.preset, overrides=args.set, config=args.config,
                         resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
            print(f"{stage}: {result.steps} steps in {result.seconds:.1f} s; output {output_path(args.out, stage)}",
              flush=True)


def train_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="motionlcm-train", description="Train MotionLCM stages.")
    # `tokenizer` and `ar` are the MotionMillion engine's (on `prepare --format both` data), not part of `all`.
    parser.add_argument("stage", choices=(*STAGES, "all", "tokenizer", "ar"))
    parser.add_argument("--data", required=True, help="HumanML3D-format root (motionlcm-data prepare)")
    parser.add_argument("--out", required=True, help="run folder, e.g. runs/NAME (one sub-folder per stage)")
    parser.add_argument("--preset", choices=PRESETS, default="default")
    parser.add_argument("--config", help="a stage YAML replacing the bundled one (single stage only)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. train.steps=2000 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue from the stage's last training state")
    args = parser.parse_args(argv)
    if args.stage == "all" and args.config:
        parser.error("--config applies to a single stage")
    try:
        if args.stage != "all":
            _run_stage(args.stage, args, args.resume)
            return 0
        upstream_changed = False  # once a stage (re)trains, later stages must start from scratch
        for stage in STAGES:
            if args.resume and not upstream_changed and output_path(args.out, stage).exists():
                print(f"{stage}: already finished, skipped", flush=True)
                continue
            state = output_path(args.out, stage).parent / "train_state" / "state.json"
            _run_stage(stage, args, args.resume and not upstream_changed and state.exists())
            upstream_changed = True
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def data_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="motionlcm-data", description="Build HumanML3D-format training data.")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="BVH files or (T, 22, 3) .npy joints + captions -> HumanML3D format")
    prep.add_argument("--source", required=True, action="append",
                      help="folder of BVH or .npy clips; repeat to combine datasets (each with its own labels)")
    prep.add_argument("--mapping", default="bandai", help="preset (bandai, smpl) or mapping.json")
    prep.add_argument("--captions", required=True,
                      help="preset bandai, or a CSV with header clip,caption or clip,content,style")
    prep.add_argument("--out", required=True)
    prep.add_argument("--npy-fps", type=float, default=20.0, help="frame rate of .npy joint arrays")
    prep.add_argument("--seed", type=int, default=0, help="splits and caption phrasing")
    prep.add_argument("--format", choices=("263", "both"), default="263",
                      help="263: HumanML3D features (MotionLCM); both: also the 272-dim representation with "
                           "rotations (the MotionMillion engine)")
    prep.add_argument("--val", type=float, default=0.05)
    prep.add_argument("--test", type=float, default=0.15)
    prep.add_argument("--held-out-styles", default="", metavar="A,B",
                      help="style labels whose clips form the `heldout` split only (never trained on), e.g. "
                           "proud,childish,giant for Bandai dataset 1")
    prep.add_argument("--licence", help="licence of the source data, carried into trained checkpoints "
                                        "(default for --mapping bandai: CC BY-NC-ND 4.0)")
    synth = sub.add_parser("synthetic", help="a tiny procedural dataset (tests and smoke runs only)")
    synth.add_argument("--out", required=True)
    synth.add_argument("--clips", type=int, default=24)
    synth.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "synthetic":
        from .data.synthetic import build_synthetic_dataset

        report = build_synthetic_dataset(args.out, num_clips=args.clips, seed=args.seed)
    else:
        from .data.caption_sources import load_caption_source
        from .data.mapping import load_mapping
        from .data.prepare import prepare

        licence = args.licence or (BANDAI_LICENCE if args.mapping == "bandai" else UNKNOWN_LICENCE)
        sources = [(source, load_caption_source(args.captions, source, args.seed)) for source in args.source]
        report = prepare(sources, args.out, load_mapping(args.mapping), npy_fps=args.npy_fps, seed=args.seed,
                         with_272=args.format == "both",
                         val_fraction=args.val, test_fraction=args.test, licence=licence,
                         held_out_styles=tuple(s for s in args.held_out_styles.split(",") if s))
    print(report.summary())
    print(f"report: {args.out}/report.txt")
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
