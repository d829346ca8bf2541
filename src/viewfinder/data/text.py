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
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from viewfinder.errors import UserError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
_NO_SPACE_BEFORE = {".", ",", "!", "?", ";", ":", ")", "'"}


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks of ``text``."""
    return _TOKEN.findall(text.lower())


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
