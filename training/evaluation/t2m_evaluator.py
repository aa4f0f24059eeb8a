"""Loading point for Guo et al.'s text-to-motion evaluator (FID, R-precision, matching score, multimodality).

The published numbers of MotionLCM use the evaluator of "Generating Diverse and Natural 3D Human Motions
from Text" (Guo et al. 2022): a bidirectional-GRU text encoder over GloVe word vectors + POS one-hots, and
a convolutional movement encoder + GRU motion encoder, trained on HumanML3D. Its weights and GloVe files
are not bundled (licences and size), and the reading of those files is not implemented yet, so this
module only reports precisely what is missing; the metric functions themselves are in `metrics.py`.
"""

from __future__ import annotations

from pathlib import Path

# Files the official release places under deps/t2m and deps/glove.
EVALUATOR_FILES = ("t2m/text_mot_match/model/finest.tar",)
GLOVE_FILES = ("our_vab_data.npy", "our_vab_idx.pkl", "our_vab_words.pkl")


class EvaluatorUnavailable(RuntimeError):
    """No usable evaluator: the message says what is missing."""


def load_t2m_evaluator(evaluator_dir: str | Path | None, glove_dir: str | Path | None):
    if evaluator_dir is None or glove_dir is None:
        raise EvaluatorUnavailable("no Guo et al. evaluator weights and GloVe folder were given "
                                   "(--evaluator DIR --glove DIR)")
    missing = [str(Path(evaluator_dir) / f) for f in EVALUATOR_FILES if not (Path(evaluator_dir) / f).exists()]
    missing += [str(Path(glove_dir) / f) for f in GLOVE_FILES if not (Path(glove_dir) / f).exists()]
    if missing:
        raise EvaluatorUnavailable(f"missing evaluator files: {', '.join(missing)}")
    # The official files are pickles (torch.save of whole dicts, .pkl vocabularies); reading them safely
    # needs a weights_only conversion step that is not written yet.
    raise EvaluatorUnavailable("reading the Guo et al. evaluator files is not implemented in this version")
