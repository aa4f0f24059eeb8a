"""HumanML3D caption files: one `caption#tokens#from#to` line per caption.

`tokens` are `lemma/POS` pairs (spaCy tags in the original release); only the Guo et al.
evaluator reads them. Without a tagger here, a small lexicon covers the motion vocabulary and
everything else is tagged OTHER, which that evaluator's word vectoriser accepts.
`from`/`to` are seconds; 0#0 means the caption covers the whole clip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_LEXICON: dict[str, tuple[str, str]] = {
    **{w: (w, "DET") for w in ("a", "an", "the", "this", "that", "both")},
    **{w: (w, "PRON") for w in ("someone", "he", "she", "they", "it", "his", "her", "their")},
    **{w: (w, "ADP") for w in ("with", "in", "on", "to", "like", "at", "of", "along", "up", "into", "around", "as")},
    **{w: (w, "NOUN") for w in ("person", "man", "woman", "figure", "hand", "arm", "circle", "way", "step",
                                 "manner", "style", "energy", "air", "motion", "movement", "pace", "foot", "leg")},
    **{w: (w[:-1], "NOUN") for w in ("hands", "arms", "steps", "feet", "legs")},
    **{w: (w, "ADJ") for w in ("left", "right", "elderly", "exhausted", "feminine", "masculine", "normal",
                                "youthful", "active", "young", "old", "careful", "tired", "steady", "ordinary", "few")},
    **{w: (w, "ADV") for w in ("forward", "backwards", "backward", "quickly", "slowly", "energetically", "wearily",
                                "normally", "briskly", "playfully", "straight", "ahead", "while", "then")},
}
_VERBS = ("walk", "run", "jog", "wave", "raise", "lift", "put", "turn", "curve", "stroll", "take", "do",
          "perform", "stand", "jump", "kick", "sit", "throw", "dance", "would", "be")


def _lemma_verb(word: str) -> str | None:
    irregular = {"is": "be", "are": "be", "does": "do", "puts": "put", "putting": "put", "running": "run"}
    if word in irregular:
        return irregular[word]
    for suffix in ("ing", "es", "s", ""):
        stem = word[: len(word) - len(suffix)] if suffix else word
        for candidate in (stem, stem + "e"):
            if word.endswith(suffix) and candidate in _VERBS:
                return candidate
    return None


def tokenize(caption: str) -> str:
    """`a person walks forward` -> `a/DET person/NOUN walk/VERB forward/ADV`."""
    tokens = []
    for word in re.findall(r"[a-z]+", caption.lower()):
        verb = _lemma_verb(word)
        if verb:
            lemma, pos = verb, "AUX" if verb in ("be", "would") else "VERB"
        else:
            lemma, pos = _LEXICON.get(word, (word, "OTHER"))
        tokens.append(f"{lemma}/{pos}")
    return " ".join(tokens)


def format_caption_line(caption: str, start: float = 0.0, end: float = 0.0) -> str:
    clean = caption.replace("#", " ").replace("\n", " ").strip()
    return f"{clean}#{tokenize(clean)}#{start}#{end}"


@dataclass(frozen=True)
class CaptionEntry:
    caption: str
    tokens: list[str]
    start: float  # seconds; 0 and 0 = whole clip
    end: float


def read_caption_file(path: str | Path) -> list[CaptionEntry]:
    entries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.strip().split("#")
        if len(parts) < 4 or not parts[0].strip():
            continue
        start, end = (float(p) if p.strip() not in ("", "nan") else 0.0 for p in parts[2:4])
        entries.append(CaptionEntry(parts[0].strip(), parts[1].split(" "), start, end))
    return entries
