"""Guo et al.'s text-to-motion evaluator (FID, R-precision, matching score, diversity, multimodality).

The published MotionLCM numbers use the co-embedding networks of "Generating Diverse and Natural 3D Human
Motions from Text" (Guo et al. 2022), trained on HumanML3D: a bidirectional GRU over GloVe word vectors
plus POS one-hots for text, and two strided 1-D convolutions (4x shorter) followed by a bidirectional GRU
for motion. This is our own implementation with the parameter names of their released state dicts, so
their files load; the files are user-supplied (not bundled):

    EVALUATOR_DIR/t2m/text_mot_match/model/finest.tar   {"text_encoder", "movement_encoder", "motion_encoder"}
    EVALUATOR_DIR/t2m/Comp_v6_KLD01/meta/{mean,std}.npy  the evaluator's feature normalisation
    GLOVE_DIR/our_vab_{data.npy,words.pkl,idx.pkl}        word vectors, vocabulary, word -> row

Safety: finest.tar is read with torch.load(weights_only=True); the vocabulary pickles are read by an
unpickler that refuses every global, so only plain lists/dicts/strings/ints can come out of them.
Equivalence with the official evaluator's numbers has not been checked here (no weights are available).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

EVALUATOR_FILES = ("t2m/text_mot_match/model/finest.tar", "t2m/Comp_v6_KLD01/meta/mean.npy",
                   "t2m/Comp_v6_KLD01/meta/std.npy")
GLOVE_FILES = ("our_vab_data.npy", "our_vab_words.pkl", "our_vab_idx.pkl")
POS_TAGS = ("VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV",
            "Loc_VIP", "Body_VIP", "Obj_VIP", "Act_VIP", "Desc_VIP", "OTHER")
# Words whose one-hot is their "very important" class instead of their POS (the evaluator's vocabulary).
VIP_WORDS = {
    "Loc_VIP": ("left", "right", "clockwise", "counterclockwise", "anticlockwise", "forward", "back", "backward",
                "up", "down", "straight", "curve"),
    "Body_VIP": ("arm", "chin", "foot", "feet", "face", "hand", "mouth", "leg", "waist", "eye", "knee", "shoulder",
                 "thigh"),
    "Obj_VIP": ("stair", "dumbbell", "chair", "window", "floor", "car", "ball", "handrail", "baseball", "basketball"),
    "Act_VIP": ("walk", "run", "swing", "pick", "bring", "kick", "put", "squat", "throw", "hop", "dance", "jump",
                "turn", "stumble", "stop", "sit", "lift", "lower", "raise", "wash", "stand", "kneel", "stroll", "rub",
                "bend", "balance", "flap", "jog", "shuffle", "lean", "rotate", "spin", "spread", "climb"),
    "Desc_VIP": ("slowly", "carefully", "fast", "careful", "slow", "quickly", "happy", "angry", "sad", "happily",
                 "angrily", "sadly"),
}
MAX_TEXT_TOKENS = 20  # MAX_TEXT_LEN; plus sos/eos
UNIT_LEN = 4


class EvaluatorUnavailable(RuntimeError):
    """No usable evaluator: the message says what is missing."""


def _co_embedding_head(hidden: int, output: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden * 2, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(0.2),
                         nn.Linear(hidden, output))


def _bigru_last(gru: nn.GRU, inputs: torch.Tensor, lengths: torch.Tensor, hidden0: nn.Parameter) -> torch.Tensor:
    packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    _, last = gru(packed, hidden0.repeat(1, inputs.shape[0], 1).contiguous())
    return torch.cat([last[0], last[1]], dim=-1)


class TextEncoder(nn.Module):
    def __init__(self, word_size: int = 300, pos_size: int = 15, hidden: int = 512, output: int = 512) -> None:
        super().__init__()
        self.pos_emb = nn.Linear(pos_size, word_size)
        self.input_emb = nn.Linear(word_size, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.output_net = _co_embedding_head(hidden, output)
        self.hidden = nn.Parameter(torch.zeros(2, 1, hidden))

    def forward(self, words: torch.Tensor, pos: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.output_net(_bigru_last(self.gru, self.input_emb(words + self.pos_emb(pos)), lengths, self.hidden))


class MovementEncoder(nn.Module):
    """Two stride-2 convolutions: T frames -> T/4 movement tokens."""

    def __init__(self, input_size: int = 259, hidden: int = 512, output: int = 512) -> None:
        super().__init__()
        self.main = nn.Sequential(nn.Conv1d(input_size, hidden, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2),
                                  nn.Conv1d(hidden, output, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2))
        self.out_net = nn.Linear(output, output)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.out_net(self.main(feats.transpose(1, 2)).transpose(1, 2))


class MotionEncoder(nn.Module):
    def __init__(self, input_size: int = 512, hidden: int = 1024, output: int = 512) -> None:
        super().__init__()
        self.input_emb = nn.Linear(input_size, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.output_net = _co_embedding_head(hidden, output)
        self.hidden = nn.Parameter(torch.zeros(2, 1, hidden))

    def forward(self, movements: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.output_net(_bigru_last(self.gru, self.input_emb(movements), lengths, self.hidden))


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: vocabulary files hold plain data only")


def _read_plain_pickle(path: Path):
    with open(path, "rb") as f:
        return _NoGlobals(f).load()


class T2MEvaluator:
    description = "Guo et al. (user-supplied weights)"
    text_key = "tokens"  # its text side reads HumanML3D's word/POS tokens, not the caption

    def __init__(self, evaluator_dir: Path, glove_dir: Path) -> None:
        state = torch.load(evaluator_dir / EVALUATOR_FILES[0], map_location="cpu", weights_only=True)
        self.text_encoder, self.movement_encoder = TextEncoder(), MovementEncoder()
        self.motion_encoder = MotionEncoder()
        for module, key in ((self.text_encoder, "text_encoder"), (self.movement_encoder, "movement_encoder"),
                            (self.motion_encoder, "motion_encoder")):
            module.load_state_dict(state[key])
            module.eval()
        self.mean = np.load(evaluator_dir / EVALUATOR_FILES[1]).astype(np.float32)
        self.std = np.load(evaluator_dir / EVALUATOR_FILES[2]).astype(np.float32)
        vectors = np.load(glove_dir / GLOVE_FILES[0], allow_pickle=False)
        words, index = _read_plain_pickle(glove_dir / GLOVE_FILES[1]), _read_plain_pickle(glove_dir / GLOVE_FILES[2])
        self.word_vectors = {w: vectors[index[w]].astype(np.float32) for w in words}
        if "unk" not in self.word_vectors:
            raise EvaluatorUnavailable(f"{glove_dir}: the vocabulary has no 'unk' entry")

    def _token(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        word, _, pos = token.partition("/")
        one_hot = np.zeros(len(POS_TAGS), dtype=np.float32)
        if word not in self.word_vectors:
            one_hot[POS_TAGS.index("OTHER")] = 1.0
            return self.word_vectors["unk"], one_hot
        vip = next((kind for kind, words in VIP_WORDS.items() if word in words), None)
        tag = vip or (pos if pos in POS_TAGS else "OTHER")
        one_hot[POS_TAGS.index(tag)] = 1.0
        return self.word_vectors[word], one_hot

    @torch.inference_mode()
    def text_embeddings(self, token_lists: list[str]) -> np.ndarray:
        """Space-separated `word/POS` token strings (HumanML3D caption files) -> (N, 512)."""
        sequences = []
        for tokens in token_lists:
            words = tokens.split()[:MAX_TEXT_TOKENS]
            sequences.append(["sos/OTHER", *words, "eos/OTHER"])
        longest = max(len(s) for s in sequences)
        lengths = torch.tensor([len(s) for s in sequences])
        padded = [s + ["unk/OTHER"] * (longest - len(s)) for s in sequences]
        pairs = [[self._token(t) for t in s] for s in padded]
        words = torch.from_numpy(np.array([[w for w, _ in p] for p in pairs]))
        pos = torch.from_numpy(np.array([[o for _, o in p] for p in pairs]))
        return self.text_encoder(words, pos, lengths).numpy()

    @torch.inference_mode()
    def motion_embeddings(self, feats: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
        """Un-normalised HumanML3D features (B, T, 263) with frame counts -> (B, 512); foot contacts unused."""
        normalised = (feats.float().cpu() - torch.from_numpy(self.mean)) / torch.from_numpy(self.std)
        movements = self.movement_encoder(normalised[..., :-4])
        return self.motion_encoder(movements, torch.div(lengths.cpu(), UNIT_LEN, rounding_mode="floor")).numpy()


def load_t2m_evaluator(evaluator_dir: str | Path | None, glove_dir: str | Path | None) -> T2MEvaluator:
    if evaluator_dir is None or glove_dir is None:
        raise EvaluatorUnavailable("no evaluator was given: Guo et al.'s weights and GloVe (--evaluator DIR "
                                   "--glove DIR) or one from `motionlcm-eval train-evaluator` (--evaluator DIR)")
    evaluator_dir, glove_dir = Path(evaluator_dir), Path(glove_dir)
    missing = [str(evaluator_dir / f) for f in EVALUATOR_FILES if not (evaluator_dir / f).exists()]
    missing += [str(glove_dir / f) for f in GLOVE_FILES if not (glove_dir / f).exists()]
    if missing:
        raise EvaluatorUnavailable(f"missing evaluator files: {', '.join(missing)}")
    try:
        return T2MEvaluator(evaluator_dir, glove_dir)
    except (pickle.UnpicklingError, RuntimeError, KeyError, ValueError, OSError) as exc:
        raise EvaluatorUnavailable(f"could not load the evaluator: {exc}") from exc
