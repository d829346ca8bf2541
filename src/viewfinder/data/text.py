"""Word-level text: the tokenizer and vocabulary shared by captioning and VQA.

Built from the training captions or questions only (nothing downloaded): text is lower-cased and
split into words and punctuation marks (``"too dark, noisy."`` -> ``too dark , noisy .``); words
seen fewer than ``min_count`` times map to ``<unk>``. Ids 0-3 are ``<pad>``, ``<bos>``, ``<eos>``,
``<unk>``. ``encode`` adds ``<bos>``/``<eos>`` and truncates to ``max_length`` tokens (the caller
counts truncations: ``Encoded.truncated``); ``decode`` stops at ``<eos>`` and rejoins punctuation,
so ``decode(encode(text))`` is the normalised text for in-vocabulary words. Saved as JSON in the
run folder (``vocab.json``), so evaluate/predict/serve decode exactly as training encoded.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from viewfinder.errors import UserError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
_NO_SPACE_BEFORE = {".", ",", "!", "?", ";", ":", ")", "'"}


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks of ``text``."""
    return _TOKEN.findall(text.lower())


# Words that trade places when an image is flipped left-right (``mirror_text``).
_MIRROR = {"left": "right", "right": "left", "leftmost": "rightmost", "rightmost": "leftmost"}
_MIRROR_WORD = re.compile(r"\b(" + "|".join(_MIRROR) + r")\b", re.IGNORECASE)


def mirror_text(text: str) -> str:
    """``text`` as it reads for the image flipped left-right: "left" and "right" (and "leftmost",
    "rightmost") swapped as whole words, their capitalisation kept. Word lists, not parsing: the
    verb ("he left") is swapped too, which questions and captions about images rarely use."""

    def swap(match: re.Match[str]) -> str:
        word = match.group(1)
        new = _MIRROR[word.lower()]
        if word.isupper():
            return new.upper()
        return new.capitalize() if word[0].isupper() else new

    return _MIRROR_WORD.sub(swap, text)


def join_words(tokens: Iterable[str]) -> str:
    """Words back to text: no space before punctuation or after an opening bracket."""
    out = ""
    for token in tokens:
        if out and token not in _NO_SPACE_BEFORE and not out.endswith("("):
            out += " "
        out += token
    return out


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    truncated: bool


class Vocabulary:
    """Word <-> id; see the module doc."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self.itos = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.pad, self.bos, self.eos, self.unk = (self.stoi[t] for t in SPECIALS)

    @classmethod
    def build(cls, texts: Iterable[str], *, min_count: int = 1, max_size: int | None = None):
        """From training texts: words by frequency (ties alphabetically), ``min_count`` and up."""
        if min_count < 1:
            raise UserError(f"min_count={min_count}: must be at least 1")
        counts = Counter(w for text in texts for w in words(text))
        if not counts:
            raise UserError("no text to build a vocabulary from (are the captions empty?)")
        ranked = sorted((w for w, c in counts.items() if c >= min_count),
                        key=lambda w: (-counts[w], w))  # fmt: skip
        return cls(ranked[:max_size] if max_size else ranked)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_length: int) -> Encoded:
        """``<bos> words <eos>``, at most ``max_length`` ids (truncated: ``<eos>`` kept last)."""
        if max_length < 3:
            raise UserError(f"max_length={max_length}: must leave room for <bos>, a word, <eos>")
        body = [self.stoi.get(w, self.unk) for w in words(text)]
        truncated = len(body) > max_length - 2
        return Encoded([self.bos, *body[: max_length - 2], self.eos], truncated)

    def decode(self, ids: Iterable[int]) -> str:
        tokens = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                tokens.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return join_words(tokens)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"tokens": self.itos[len(SPECIALS) :]}, indent=0))

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: vocabulary missing (was the run trained with captions?)")
        return cls(json.loads(path.read_text())["tokens"])


PAD_MULTIPLE = 8  # token widths in steps of 8: a few shapes, so oneDNN builds each kernel once


def pad_ids(ids: Sequence[Sequence[int]], pad: int, limit: int) -> Any:
    """(B, W) int64 ``pad``-filled tensor; W a multiple of 8, at most ``max(limit, 8)``."""
    import torch

    width = min(-(-max(len(x) for x in ids) // PAD_MULTIPLE) * PAD_MULTIPLE,
                max(limit, PAD_MULTIPLE))  # fmt: skip
    out = torch.full((len(ids), width), pad, dtype=torch.int64)
    for row, seq in enumerate(ids):
        out[row, : len(seq)] = torch.tensor(list(seq)[:width], dtype=torch.int64)
    return out


class WrappedBatches:
    """What a dataset wrapping an image/feature dataset (``self.base``) passes through: whether
    loader workers help, and the epoch (per-sample seeds) in the base's shared memory.

    It also owns horizontal flips, because its texts must follow them: a question or caption
    about a flipped image reads with "left" and "right" swapped (``mirror_text``). With
    ``mirror`` (training on images), half the images of each epoch are flipped here, drawn per
    (seed, epoch, image); the task's batch transform then flips nothing. On cached features the
    feature dataset draws the view (``feature_flip``: original or flipped) and says which one
    (``view``).
    """

    base: Any
    mirror: bool = False
    seed: int = 0

    @property
    def needs_workers(self) -> bool:
        return getattr(self.base, "needs_workers", True)

    @property
    def epoch(self) -> int:
        return self.base.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.base.epoch = value

    def flip_images(self, batch: dict[str, Any]) -> list[bool]:
        """Which image rows of the collated ``batch`` are mirrored; flips them (images only)."""
        import torch

        from viewfinder.data.dataset import drawn_view

        if "features" in batch:  # the feature dataset drew each view (1: the flipped one)
            return [bool(v) for v in batch["view"].tolist()]
        index = batch["index"].tolist()
        if not self.mirror:
            return [False] * len(index)
        flips = [bool(drawn_view(self.seed, self.epoch, i, 2)) for i in index]
        if any(flips):
            rows = torch.tensor(flips)[:, None, None, None]
            batch["image"] = torch.where(rows, batch["image"].flip(-1), batch["image"])
        return flips


class TextBatches(WrappedBatches):
    """A dataset of images (or cached features) whose batches also carry their texts.

    Wraps an ``ImageDataset``/``FeatureDataset`` and returns whole collated batches (the
    ``DataLoader`` calls ``__getitems__``) with:
    - ``tokens``: (B, L) int64 ids, ``<pad>``-padded: in training one of an image's texts, drawn
      per (seed, epoch, image) like augmentation; in evaluation its first text (the teacher-forced
      validation loss);
    - ``references``: every text of each image (lists of str; empty for unlabelled images).
    The drawn text of a flipped image is mirrored (``WrappedBatches``); references never are.
    """

    def __init__(
        self,
        base: Any,
        records: list[Any],
        texts: list[tuple[str, ...]],
        encode: Callable[[str], list[int]],
        pad: int,
        *,
        max_length: int,
        train: bool,
        seed: int = 0,
        mirror: bool = False,
    ) -> None:
        self.base, self.records, self.texts, self.max_length = base, records, texts, max_length
        self.encode, self.pad, self.train, self.seed = encode, pad, train, seed
        self.mirror = mirror  # flip images here, texts swapped to match (``WrappedBatches``)

    def __len__(self) -> int:
        return len(self.base)

    @property
    def targets(self) -> Any:
        """The base's targets (a MOS); else the texts when every image has one (scoreable)."""
        base = getattr(self.base, "targets", None)
        if base is not None:
            return base
        return self.texts if self.texts and all(self.texts) else None

    def _text(self, index: int) -> str:
        options = self.texts[index]
        if not options:
            return ""
        if not self.train or len(options) == 1:
            return options[0]
        from viewfinder.data.dataset import sample_seed

        pick = random.Random(sample_seed(self.seed, self.epoch, index)).randrange(len(options))
        return options[pick]

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        import torch

        from viewfinder.data.dataset import collate_skipping

        getitems = getattr(self.base, "__getitems__", None)
        batch = collate_skipping(getitems(indices) if getitems else [self.base[i] for i in indices])
        if batch is None:  # every image skipped: an empty batch the task's collate drops
            return {"index": torch.zeros(0, dtype=torch.int64)}
        index = [int(i) for i in batch["index"]]
        flips = self.flip_images(batch)
        texts = [self._text(i) for i in index]
        ids = [self.encode(mirror_text(t) if f else t) for t, f in zip(texts, flips, strict=True)]
        tokens = pad_ids(ids, self.pad, self.max_length)
        return {**batch, "tokens": tokens, "references": [list(self.texts[i]) for i in index]}

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])
