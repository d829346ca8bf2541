"""A Hugging Face text encoder's own tokenizer with ``Vocabulary``'s interface (VQA questions).

``model.question_encoder=hf:NAME_OR_FOLDER`` (``models/hf_encoder.py``) only understands the ids
its tokenizer makes (BERT's WordPiece, ...), so questions are encoded with that tokenizer:
``[CLS] question [SEP]`` (the model's own special tokens), truncated to ``text.max_length`` ids,
padded per batch with the tokenizer's pad id by ``QuestionBatches``. The encoder's attention mask
is ``ids != pad``, so a question must never contain the pad id: special-token strings typed in a
question ("[PAD]", "[SEP]") are split as plain text, and a pad id left over is dropped.

Saved with ``save_pretrained`` into the run folder (``question_encoder/``: ``tokenizer.json`` and
``tokenizer_config.json``, JSON only, nothing unpickled), so evaluate, predict and serve encode as
training did without the hub or the original folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from viewfinder.data.text import Encoded
from viewfinder.errors import UserError


class EncoderTokenizer:
    """Question text <-> an encoder's token ids; see the module doc."""

    def __init__(self, tokenizer: Any, *, source: str) -> None:
        if tokenizer.pad_token_id is None:
            raise UserError(f"the tokenizer of {source!r} has no pad token; "
                            "question_encoder=hf: takes a text encoder (BERT-like)")  # fmt: skip
        self.tok, self.source, self.pad = tokenizer, source, int(tokenizer.pad_token_id)

    def __len__(self) -> int:
        return len(self.tok)

    def encode(self, text: str, max_length: int) -> Encoded:
        """The tokenizer's ids with its special tokens, at most ``max_length`` (truncated: the
        closing special token kept last)."""
        text = " ".join(text.split())
        ids = self._ids(text, None)
        truncated = len(ids) > max_length
        if truncated:
            ids = self._ids(text, max_length)
        return Encoded([i for i in ids if i != self.pad], truncated)

    def _ids(self, text: str, max_length: int | None) -> list[int]:
        out = self.tok(text, truncation=max_length is not None, max_length=max_length,
                       split_special_tokens=True)  # fmt: skip
        return list(out["input_ids"])

    @classmethod
    def from_pretrained(cls, source: str) -> EncoderTokenizer:
        """The tokenizer of the encoder at ``source`` (hub name or folder)."""
        folder = Path(source).expanduser()
        if not folder.is_dir() and source.startswith((".", "/", "~")):
            raise UserError(f"model.question_encoder=hf:{source}: folder not found")
        path = str(folder) if folder.is_dir() else source
        return cls(_auto_tokenizer(path, source), source=source)

    def save(self, folder: Path) -> None:
        self.tok.save_pretrained(str(folder))

    @classmethod
    def load(cls, folder: Path) -> EncoderTokenizer:
        """The tokenizer ``save`` wrote (the run folder's ``question_encoder/``)."""
        if not (Path(folder) / "tokenizer_config.json").is_file():
            raise UserError(f"{folder}: question tokenizer missing (was the run trained with "
                            "question_encoder=hf:...?)")  # fmt: skip
        return cls(_auto_tokenizer(str(folder), str(folder)), source=str(folder))


def _auto_tokenizer(path: str, source: str) -> Any:
    """``AutoTokenizer.from_pretrained``; failures are one line."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"tokenizer of {source!r} could not be loaded ({first}); pass "
                        "question_encoder=hf:FOLDER with the encoder's tokenizer files"
                        ) from None  # fmt: skip
