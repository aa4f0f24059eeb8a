"""Where a clip's captions come from, for `motionlcm-data prepare --captions`.

- `captions.csv` with header `clip,caption`: literal captions, several rows per clip allowed.
- `labels.csv` with header `clip,content,style`: captions generated from labels (`captions.py`),
  with direction/speed words only where the clip's measured trajectory supports them.
- preset `bandai`: the same generator, labels read from each clip's sidecar JSON
  (`{"content": i, "style": j}` indexing `cfg/content_label.txt` / `cfg/style_label.txt`, found
  next to or above the source folder) or, failing that, from the `dataset-N_CONTENT_STYLE_ID` name.
`clip` is the file name without its extension.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Protocol

import numpy as np

from .captions import captions_from_labels, describe_trajectory, parse_bandai_name


class CaptionSource(Protocol):
    def has(self, path: Path) -> bool: ...

    def captions(self, path: Path, joints: np.ndarray) -> list[str]:
        """Captions for the clip at `path`; `joints` (T, 22, 3) are its processed joints (facing +Z)."""
        ...


class LiteralCaptions:
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    def has(self, path: Path) -> bool:
        return bool(self.table.get(path.stem))

    def captions(self, path: Path, joints: np.ndarray) -> list[str]:
        return self.table[path.stem]


class LabelCaptions:
    """Template captions from (content, style) labels per clip."""

    def __init__(self, labels: dict[str, tuple[str, str | None]], seed: int = 0) -> None:
        self.labels, self.seed = labels, seed

    def label(self, path: Path) -> tuple[str, str | None] | None:
        return self.labels.get(path.stem)

    def has(self, path: Path) -> bool:
        return self.label(path) is not None

    def captions(self, path: Path, joints: np.ndarray) -> list[str]:
        content, style = self.label(path)  # type: ignore[misc]
        return captions_from_labels(path.stem, content, style, describe_trajectory(joints), seed=self.seed)


class BandaiCaptions(LabelCaptions):
    def __init__(self, source: Path, seed: int = 0) -> None:
        super().__init__({}, seed)
        self.content_names, self.style_names = _find_label_lists(source)

    def label(self, path: Path) -> tuple[str, str | None] | None:
        sidecar = path.with_suffix(".json")
        if sidecar.is_file() and self.content_names:
            try:
                data = json.loads(sidecar.read_text(encoding="utf-8"))
                return self.content_names[int(data["content"])], self.style_names[int(data["style"])]
            except (ValueError, KeyError, IndexError, TypeError):
                return None  # a broken sidecar means unknown labels: reported, not guessed
        return parse_bandai_name(path.stem)


def _strip_prefix(label: str) -> str:
    """`dataset-2_walk-turn-left` -> `walk-turn-left`."""
    return label.split("_", 1)[1] if "_" in label else label


def _find_label_lists(source: Path) -> tuple[list[str], list[str]]:
    for folder in [source, *source.resolve().parents]:
        content, style = folder / "cfg" / "content_label.txt", folder / "cfg" / "style_label.txt"
        if content.is_file() and style.is_file():
            read = lambda p: [_strip_prefix(s.strip()) for s in p.read_text(encoding="utf-8").split() if s.strip()]
            return read(content), read(style)
    return [], []


def load_caption_source(spec: str | Path, source: str | Path, seed: int = 0) -> CaptionSource:
    if str(spec) == "bandai":
        return BandaiCaptions(Path(source), seed)
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"captions {spec!r} is neither the preset 'bandai' nor a CSV file")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    header = set(rows[0]) if rows else set()
    if {"clip", "caption"} <= header:
        table: dict[str, list[str]] = {}
        for row in rows:
            if row["caption"] and row["caption"].strip():
                table.setdefault(Path(row["clip"]).stem, []).append(row["caption"].strip())
        return LiteralCaptions(table)
    if {"clip", "content"} <= header:
        return LabelCaptions({Path(r["clip"]).stem: (r["content"].strip(), (r.get("style") or "").strip() or None)
                              for r in rows if r["content"].strip()}, seed)
    raise ValueError(f"{path}: expected a header 'clip,caption' or 'clip,content,style'")
