"""`motionlcm-eval`: evaluate an engine checkpoint on a HumanML3D-format split and write a markdown report.

Sections: VAE reconstruction (MPJPE, feature error); text-to-motion with the LCM (foot skating, diversity,
AITS); ControlNet control (OmniControl/MotionLCM control errors per joint and density, skating, AITS).
FID, R-precision, matching score, diversity and multimodality use a text-motion evaluator: Guo et al.'s
when its weights and GloVe are given (`t2m_evaluator.py`), or one trained here by contrastive retrieval
(`motionlcm-eval train-evaluator`, `retrieval.py`); the report names the one used. Without either the report
says so, and the only diversity shown is a proxy on mean-pooled features, labelled as not comparable.

Why one module past 300 lines: each report section sits beside the measurement that fills it (reconstruction,
text to motion, control, the report and its command line), so a number and its method are read together.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from backend.motion.features import denormalize, features_to_joints
from backend.generation.latent_sampler import LatentSampler
from backend.motion.skeleton import CONTROL_JOINTS

from ..data.dataset import ControlSpec, HumanML3D, collate
from . import metrics
from .retrieval import is_retrieval_evaluator, load_retrieval_evaluator, train_retrieval_evaluator
from .t2m_evaluator import EvaluatorUnavailable, load_t2m_evaluator

DENSITIES = (1, 2, 5, 25, 100)  # 1/2/5 frames, 25 % and 100 % of the frames (OmniControl's table)


@dataclasses.dataclass
class EvalSettings:
    split: str = "test"
    max_clips: int = 64
    batch_size: int = 16
    steps: int = 1  # LCM sampling steps
    joints: tuple[str, ...] = tuple(CONTROL_JOINTS)
    densities: tuple[int, ...] = DENSITIES
    seed: int = 0
    diversity_times: int = 300  # official; reduced to N - 1 for smaller splits (reported)
    mm_repeats: int = 0  # multimodality: generations per caption (official 30); 0 = skip
    tuning: int = 0  # latent tuning iterations for the extra "ControlNet + tuning" rows; 0 = none
    tuning_joints: tuple[str, ...] = ("pelvis",)
    tuning_densities: tuple[int, ...] = (100,)
    tuning_penalties: tuple[float, ...] = ()  # correlation penalties, one tuning row each; () = the checkpoint's


class Evaluator(Protocol):
    """What the metrics need from a text-motion evaluator (Guo et al.'s or our retrieval one)."""

    description: str  # the report's evaluator line
    text_key: str  # the batch field its text side reads: "tokens" (Guo et al.: word/POS) or "text" (captions)

    def text_embeddings(self, texts: list[str]) -> np.ndarray: ...

    def motion_embeddings(self, feats: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
        """Un-normalised features (B, T, 263) and frame counts -> (B, D)."""


def load_evaluator(evaluator_dir: str | None, glove_dir: str | None) -> Evaluator:
    """Our retrieval evaluator folder (recognised by its config.json) or Guo et al.'s files plus GloVe."""
    if evaluator_dir is not None and is_retrieval_evaluator(evaluator_dir):
        return load_retrieval_evaluator(evaluator_dir)
    return load_t2m_evaluator(evaluator_dir, glove_dir)


def spread(total: int, count: int) -> list[int]:
    """`count` clip indices evenly spread over a split of `total` (all of them when count >= total). Split files
    are sorted by name, which groups clips by content, so the first `count` would evaluate a few actions only."""
    if count >= total:
        return list(range(total))
    return np.linspace(0, total - 1, count).round().astype(int).tolist()


def _batches(dataset: HumanML3D, indices: list[int], size: int):
    for start in range(0, len(indices), size):
        yield collate([dataset[i] for i in indices[start:start + size]])


def _joints(feats: torch.Tensor, mean: np.ndarray, std: np.ndarray, lengths: torch.Tensor) -> list[np.ndarray]:
    joints = features_to_joints(denormalize(feats.float().cpu(), mean, std)).numpy()
    return [j[: int(n)] for j, n in zip(joints, lengths)]


@torch.inference_mode()
def reconstruction(ckpt, dataset: HumanML3D, indices: list[int], batch_size: int) -> dict[str, float]:
    """VAE round trip with the posterior mean (deterministic). MPJPE as the official PosMetrics: averaged over
    all frames, with each skeleton moved to its pelvis (MPJPE) or not (unaligned, root drift included).
    The body-motion ratio (metrics.body_motion of the reconstruction over the original's) shows a decoder that
    averages motion away: 1 is right, 0 a held pose."""
    aligned, unaligned, feat_abs, feat_sq, frames = 0.0, 0.0, 0.0, 0.0, 0
    moved_rec, moved_ref = 0.0, 0.0
    for batch in _batches(dataset, indices, batch_size):
        _, dist = ckpt.model.vae.encode(batch["motion"], batch["mask"])
        rec = ckpt.model.vae.decode(dist.loc, batch["mask"])
        mask = batch["mask"][..., None].float()
        feat_abs += float(((rec - batch["motion"]).abs() * mask).sum())
        feat_sq += float((((rec - batch["motion"]) ** 2) * mask).sum())
        frames += int(mask.sum())
        for a, b in zip(_joints(rec, ckpt.mean, ckpt.std, batch["length"]),
                        _joints(batch["motion"], ckpt.mean, ckpt.std, batch["length"])):
            aligned += metrics.mpjpe(a, b, align_root=True) * len(a)
            unaligned += metrics.mpjpe(a, b) * len(a)
            moved_rec += metrics.body_motion(a) * len(a)
            moved_ref += metrics.body_motion(b) * len(a)
    dim = dataset.items[0][1].shape[-1]
    return {"MPJPE (m)": aligned / frames, "MPJPE unaligned (m)": unaligned / frames,
            "feature MAE (normalised)": feat_abs / (frames * dim),
            "feature RMSE (normalised)": float(np.sqrt(feat_sq / (frames * dim))),
            "body-motion ratio": moved_rec / moved_ref}


@torch.inference_mode()
def generate(ckpt, encoder, batch: dict, steps: int, generator: torch.Generator,
             control: bool, tuning: int = 0,
             penalty: float | None = None) -> tuple[list[np.ndarray], torch.Tensor, float]:
    """Joints of generated clips, their normalised features, and seconds spent (text to features), through the
    pipeline's own LatentSampler (the checkpoint's guidance and timesteps for `steps`). penalty: the latent tuning
    correlation penalty (default: the checkpoint's)."""
    start = time.perf_counter()
    sampler = LatentSampler(ckpt)
    guidance = sampler.guidance(steps)
    text_emb = encoder.encode(batch["text"])
    z_T = torch.randn((len(batch["text"]), *ckpt.config.latent_shape), generator=generator)
    noise = [torch.randn(z_T.shape, generator=generator) for _ in range(steps - 1)]
    hint, hint_mask = (batch["hint"], batch["hint_mask"]) if control else (None, None)
    if tuning:
        z_T = sampler.tune(z_T, text_emb, hint, hint_mask, batch["length"].tolist(), steps, guidance, noise,
                           tuning, penalty=penalty)
    z0 = sampler.sample(text_emb, z_T, steps, guidance, hint, hint_mask, noise=noise)
    feats, denormalised = sampler.decode(z0, batch["length"])
    seconds = time.perf_counter() - start
    joints = sampler.joints(denormalised.float().cpu()).numpy()
    return [j[: int(n)] for j, n in zip(joints, batch["length"])], feats, seconds


def _proxy_embeddings(feats: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    """Mean over valid frames of the normalised features: a stand-in for the evaluator's motion embedding,
    used only for a diversity number that is NOT comparable to published ones."""
    mask = (torch.arange(feats.shape[1])[None] < lengths[:, None]).float()[..., None]
    return ((feats.float().cpu() * mask).sum(1) / mask.sum(1)).numpy()


def text_to_motion(ckpt, encoder, dataset: HumanML3D, settings: EvalSettings, indices: list[int],
                   evaluator: Evaluator | None) -> dict[str, float]:
    generator = torch.Generator().manual_seed(settings.seed)
    clips, clip_features, real_clips, proxies, seconds = [], [], [], [], 0.0
    gen_emb, real_emb, text_emb = [], [], []
    for batch in _batches(dataset, indices, settings.batch_size):
        joints, feats, took = generate(ckpt, encoder, batch, settings.steps, generator, control=False)
        clips += joints
        raw_feats = denormalize(feats.float().cpu(), ckpt.mean, ckpt.std)  # for Foot Lock and the evaluator
        clip_features += [f[:len(j)] for f, j in zip(raw_feats.numpy(), joints)]
        real_clips += _joints(batch["motion"], ckpt.mean, ckpt.std, batch["length"])
        proxies.append(_proxy_embeddings(feats, batch["length"]))
        seconds += took
        if evaluator is not None:
            gen_emb.append(evaluator.motion_embeddings(raw_feats, batch["length"]))
            real_emb.append(evaluator.motion_embeddings(denormalize(batch["motion"], ckpt.mean, ckpt.std),
                                                        batch["length"]))
            text_emb.append(evaluator.text_embeddings(batch[evaluator.text_key]))
    rng = np.random.default_rng(settings.seed)
    # The real clips' skating ratio and body motion are the reference: a sample that glides in a held pose
    # shows as skating with a low body-motion ratio.
    result = {"skating ratio": metrics.mean_skating_ratio(clips),
              "skating ratio, grounded": metrics.mean_skating_ratio(clips, grounded=True),
              "skating ratio, Foot Lock": metrics.foot_locked_skating_ratio(clips, clip_features),
              "real skating ratio": metrics.mean_skating_ratio(real_clips),
              "body-motion ratio": float(np.mean([metrics.body_motion(c) for c in clips])
                                         / np.mean([metrics.body_motion(c) for c in real_clips])),
              "AITS (s)": seconds / len(indices)}
    if evaluator is None:
        activations = np.concatenate(proxies)
        times = min(settings.diversity_times, len(activations) - 1)
        result[f"diversity (proxy features, {times} pairs)"] = metrics.diversity(activations, times, rng)
        return result
    generated, real, texts = np.concatenate(gen_emb), np.concatenate(real_emb), np.concatenate(text_emb)
    times = min(settings.diversity_times, len(generated) - 1)
    result.update({"FID": metrics.frechet_distance(real, generated),
                   f"Diversity ({times} pairs)": metrics.diversity(generated, times, rng),
                   f"real Diversity ({times} pairs)": metrics.diversity(real, times, rng)})
    if len(texts) >= metrics.R_PRECISION_GROUP:
        result.update(metrics.r_precision_and_matching(texts, generated))
        result.update({f"real {k}": v for k, v in metrics.r_precision_and_matching(texts, real).items()})
    if settings.mm_repeats > 1:
        result["MultiModality"] = multimodality(ckpt, encoder, dataset, indices[:100], settings, evaluator, rng)
    return result


def multimodality(ckpt, encoder, dataset: HumanML3D, indices: list[int], settings: EvalSettings,
                  evaluator: Evaluator, rng: np.random.Generator) -> float:
    """Official protocol: 100 captions, `mm_repeats` generations each (30), 10 random pairs per caption."""
    generator = torch.Generator().manual_seed(settings.seed + 1)
    per_text = []
    for index in indices:
        batch = collate([dataset[index]] * settings.mm_repeats)
        _, feats, _ = generate(ckpt, encoder, batch, settings.steps, generator, control=False)
        per_text.append(evaluator.motion_embeddings(denormalize(feats, ckpt.mean, ckpt.std), batch["length"]))
    return metrics.multimodality(np.stack(per_text), min(10, settings.mm_repeats - 1), rng)


def control(ckpt, encoder, root: Path, settings: EvalSettings) -> list[dict]:
    rows = []
    cases = [(joint, density, 0, None) for joint in settings.joints for density in settings.densities]
    if settings.tuning:
        cases += [(joint, density, settings.tuning, penalty) for joint in settings.tuning_joints
                  for density in settings.tuning_densities
                  for penalty in settings.tuning_penalties or (ckpt.sampling.tuning_penalty,)]
    for joint, density, tuning, penalty in cases:
        spec = ControlSpec(joints=(CONTROL_JOINTS[joint],), density=density, all_joints=True)
        dataset = HumanML3D(root, settings.split, mean=ckpt.mean, std=ckpt.std, control=spec,
                            raw_mean=ckpt.raw_mean, raw_std=ckpt.raw_std, seed=settings.seed)
        indices = spread(len(dataset), settings.max_clips)
        generator = torch.Generator().manual_seed(settings.seed)
        per_clip, clips, seconds, uncontrolled = [], [], 0.0, []
        for batch in _batches(dataset, indices, settings.batch_size):
            same_noise = torch.Generator().set_state(generator.get_state())
            joints, _, took = generate(ckpt, encoder, batch, settings.steps, generator, control=True,
                                       tuning=tuning, penalty=penalty)
            seconds += took
            target = (batch["hint"].numpy() * ckpt.raw_std + ckpt.raw_mean)
            free = generate(ckpt, encoder, batch, settings.steps, same_noise, control=False)[0] if not tuning else []
            for i, j in enumerate(joints):
                n = int(batch["length"][i])
                per_clip.append(metrics.control_errors(j, target[i, :n], batch["hint_mask"][i, :n].numpy()))
                if free:
                    uncontrolled.append(metrics.control_errors(free[i], target[i, :n],
                                                               batch["hint_mask"][i, :n].numpy()))
            clips += joints
        label = f"{density} frame{'s' if density > 1 else ''}" if density in (1, 2, 5) else f"{density} %"
        # The same samples without the hint: a ControlNet that does not steer scores the same as this.
        baseline = metrics.mean_control_errors(uncontrolled)["kps_mean_err(m)"] if uncontrolled else "-"
        tuned = f"{tuning}, correlation penalty {penalty:g}" if tuning else 0
        rows.append({"joint": joint, "density": label, "tuning": tuned, **metrics.mean_control_errors(per_clip),
                     "mean err without control (m)": baseline,
                     "skating ratio": metrics.mean_skating_ratio(clips), "AITS (s)": seconds / len(indices)})
    return rows


def _table(rows: list[dict]) -> str:
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def evaluate(checkpoint: str | Path, data: str | Path, settings: EvalSettings, text_encoder: str | None = None,
             evaluator_dir: str | None = None, glove_dir: str | None = None, card: str | Path | None = None,
             previews: str | Path | None = None, report_dir: str | Path = ".") -> str:
    """Run every applicable section; returns the markdown report.

    card: a markdown file put first (what the model is, its data, licence and limits). previews: a PNG to
    write with preview frames, linked from the report (relative to `report_dir`, the report's folder); with
    it come the speed (AITS at batch 1) and vocabulary sections, measured through the generation pipeline."""
    from backend.checkpoints import load_checkpoint
    from backend.generation.text_encoders import check_text_encoder, load_text_encoder

    torch.manual_seed(settings.seed)
    ckpt = load_checkpoint(checkpoint)
    encoder = load_text_encoder(text_encoder or ckpt.text_encoder_id)
    check_text_encoder(encoder, ckpt.text_encoder_id, ckpt.text_dim, str(checkpoint))
    dataset = HumanML3D(data, settings.split, mean=ckpt.mean, std=ckpt.std, seed=settings.seed)
    indices = spread(len(dataset), settings.max_clips)
    lines = [Path(card).read_text(encoding="utf-8").rstrip(), ""] if card else []
    lines += [f"# MotionLCM evaluation: `{ckpt.checkpoint_id}`", "",
             f"Data `{data}`, split `{settings.split}`: VAE reconstruction on all {len(dataset)} clips, the other "
             f"sections on {len(indices)} spread evenly over the split; seed {settings.seed}, "
             f"LCM steps {settings.steps}, batch {settings.batch_size}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} CPU threads" + (", CUDA" if torch.cuda.is_available() else ""), "",
             "## VAE reconstruction", "",
             _table([reconstruction(ckpt, dataset, list(range(len(dataset))), settings.batch_size)]), ""]
    evaluator = None
    try:
        evaluator = load_evaluator(evaluator_dir, glove_dir)
        lines += [f"Evaluator (FID, R-precision, matching score, multimodality): {evaluator.description}", ""]
    except EvaluatorUnavailable as why:
        lines += ["FID, R-precision, matching score and multimodality: **not computed**: " + str(why), ""]
    if ckpt.model.denoiser.time_cond_proj_dim is not None:
        t2m = text_to_motion(ckpt, encoder, dataset, settings, indices, evaluator)
        lines += ["## Text to motion (LCM)", "", _table([t2m]), ""]
    if ckpt.model.has_controlnet:
        lines += ["## Control (ControlNet)", "",
                  "Errors in metres over controlled points; traj_fail = share of clips with any point off by more "
                  "than 20 / 50 cm; kps_fail = share of points off by more than 20 / 50 cm; the same samples without "
                  "the hint give the mean error without control.", "",
                  _table(control(ckpt, encoder, Path(data), settings)), ""]
    if previews is not None:
        lines += _pipeline_sections(ckpt, encoder, settings, Path(previews), Path(report_dir))
    return "\n".join(lines)


def _pipeline_sections(ckpt, encoder, settings: EvalSettings, previews: Path, report_dir: Path) -> list[str]:
    from backend.generation.pipeline import MotionLCMPipeline

    from . import behaviour

    pipe = MotionLCMPipeline(ckpt, encoder, torch.device("cpu"))
    lines = ["## Speed (AITS, batch 1, 196 frames, this machine)", "",
             "Text encoding to joint positions, median of 5 runs after a warm-up, through the generation pipeline.",
             "", _table(behaviour.aits(pipe, tuning=settings.tuning)), ""]
    if not pipe.has_controlnet or not pipe.is_lcm:
        return lines
    lines += ["## Prompt vocabulary (no control, 8 seeds per prompt, 6 s)", "",
              "Runs should travel faster than walks; a waving or raised hand should rise above the other.", "",
              _table(behaviour.vocabulary_check(pipe, seed=settings.seed)), ""]
    previews.parent.mkdir(parents=True, exist_ok=True)
    behaviour.preview_sheet(pipe, previews, seed=settings.seed, tuning=settings.tuning)
    link = Path(os.path.relpath(previews.resolve(), report_dir.resolve())).as_posix()
    lines += ["## Preview frames", "", f"![preview frames]({link})", ""]
    return lines


def train_evaluator_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="motionlcm-eval train-evaluator",
                                     description="Train a contrastive text-motion retrieval evaluator.")
    parser.add_argument("out", help="evaluator folder to write (model.safetensors + config.json)")
    parser.add_argument("--data", required=True, help="HumanML3D-format root")
    parser.add_argument("--split", default="train")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    result = train_retrieval_evaluator(args.data, args.out, args.steps, args.batch_size, args.seed, split=args.split,
                                       threads=args.threads, log=print)
    print(f"evaluator written to {result.folder}; use it with motionlcm-eval --evaluator {result.folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train-evaluator"]:  # a subcommand, so the evaluation flags (--steps: LCM steps) stay as they are
        return train_evaluator_main(argv[1:])
    if argv[:1] == ["tokenizer"]:  # the MotionMillion tokenizer (tokenizer_eval.py)
        from .tokenizer_eval import main as tokenizer_main

        return tokenizer_main(argv[1:])
    if argv[:1] == ["signatures"]:  # behaviour pass rates of either engine (signatures.py)
        from .signatures import main as signatures_main

        return signatures_main(argv[1:])
    parser = argparse.ArgumentParser(prog="motionlcm-eval", description="Evaluate a MotionLCM checkpoint "
                                     "(`motionlcm-eval train-evaluator OUT --data ROOT` trains a retrieval evaluator).")
    parser.add_argument("--checkpoint", required=True,
                        help="engine checkpoint folder (e.g. runs/NAME/controlnet/checkpoint)")
    parser.add_argument("--data", required=True, help="HumanML3D-format root")
    parser.add_argument("--out", default="evaluation.md", help="markdown report to write")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-clips", type=int, default=64,
                        help="clips for the generation sections, spread evenly over the split (VAE: all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1, choices=(1, 2, 4))
    parser.add_argument("--joints", default=",".join(CONTROL_JOINTS), help="comma-separated control joints")
    parser.add_argument("--densities", default="1,2,5,25,100")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text-encoder", help="text encoder folder when the checkpoint's is not the default")
    parser.add_argument("--evaluator", help="Guo et al. text-motion evaluator weights folder, or a retrieval "
                        "evaluator folder from `motionlcm-eval train-evaluator`")
    parser.add_argument("--glove", help="GloVe folder for the Guo et al. evaluator")
    parser.add_argument("--mm-repeats", type=int, default=0, help="multimodality: generations per caption (30)")
    parser.add_argument("--tuning", type=int, default=0, metavar="N",
                        help="also evaluate ControlNet + N iterations of latent tuning (rows below)")
    parser.add_argument("--tuning-joints", default="pelvis", help="comma-separated joints for the tuning rows")
    parser.add_argument("--tuning-densities", default="100", help="densities for the tuning rows")
    parser.add_argument("--tuning-penalties", default="",
                        help="correlation penalties for the tuning rows (comma-separated; one row each; "
                             "default: the checkpoint's own)")
    parser.add_argument("--card", help="markdown put at the top of the report (model card, limits)")
    parser.add_argument("--previews", help="PNG of preview frames to write and link; adds the speed and "
                                           "vocabulary sections (generation pipeline)")
    args = parser.parse_args(argv)
    settings = EvalSettings(split=args.split, max_clips=args.max_clips, batch_size=args.batch_size, steps=args.steps,
                            joints=tuple(j for j in args.joints.split(",") if j),
                            densities=tuple(int(d) for d in args.densities.split(",") if d), seed=args.seed,
                            mm_repeats=args.mm_repeats, tuning=args.tuning,
                            tuning_joints=tuple(j for j in args.tuning_joints.split(",") if j),
                            tuning_densities=tuple(int(d) for d in args.tuning_densities.split(",") if d),
                            tuning_penalties=tuple(float(p) for p in args.tuning_penalties.split(",") if p))
    unknown = [j for j in settings.joints + settings.tuning_joints if j not in CONTROL_JOINTS]
    if unknown:
        parser.error(f"unknown control joints {unknown}; choose from {', '.join(CONTROL_JOINTS)}")
    report = evaluate(args.checkpoint, args.data, settings, args.text_encoder, args.evaluator, args.glove,
                      card=args.card, previews=args.previews, report_dir=Path(args.out).resolve().parent)
    Path(args.out).write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
