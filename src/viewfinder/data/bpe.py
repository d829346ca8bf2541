"""Byte-level BPE: a Hugging Face causal LM's own tokenizer, with ``Vocabulary``'s interface.

A pretrained LM (``model.decoder=gpt2``, ``hf:NAME_OR_FOLDER``) only understands the ids its
tokenizer makes, so captions are encoded with that tokenizer (``data/text.py``'s word vocabulary
is for the decoders trained from scratch). Sources, first found wins:

- the LM's tokenizer (``transformers.AutoTokenizer``: a hub name, or a folder with
  ``tokenizer.json``, ``vocab.json`` + ``merges.txt``, ...);
- a ``*.tiktoken`` file in the LM's folder (GPT-2's byte-level BPE in tiktoken's format);
- for a GPT-2 folder without one: ``openai-whisper``'s ``assets/gpt2.tiktoken``, when installed.

GPT-2 has one special token, ``<|endoftext|>``: it is ``<eos>`` here, and two ids are added after
the tokenizer's own, ``<pad>`` (= size) and ``<bos>`` (= size + 1), because decoding bans
``<pad>``/``<bos>`` and must still be able to end with ``<eos>`` (``models/decoding.py``). The LM's
embedding grows by those two rows (``models/lm.py``). Saved in the run folder (``bpe.json`` and
the tokenizer file beside it, ~1 MB for GPT-2), so evaluate/predict decode as training encoded.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from viewfinder.data.text import Encoded
from viewfinder.errors import UserError

ENDOFTEXT = "<|endoftext|>"
# GPT-2's pre-tokenizer split (tiktoken's r50k pattern)
GPT2_PATTERN = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"


def read_tiktoken(path: Path) -> dict[bytes, int]:
    """A ``.tiktoken`` file (``base64(token) rank`` per line) as ranks; parsed here because
    tiktoken's own loader caches local files in the temp folder by path."""
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(Path(path).read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except ValueError:
            raise UserError(f"{path}:{number}: not a .tiktoken line (base64 token, rank)") from None
    return ranks


def whisper_gpt2_file() -> Path | None:
    """``openai-whisper``'s copy of GPT-2's BPE, found without importing whisper (torch, numba)."""
    spec = importlib.util.find_spec("whisper")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "gpt2.tiktoken"
    return path if path.is_file() else None


class _Tokenizers:
    """Backend: a ``tokenizers.Tokenizer`` (what every fast Hugging Face tokenizer wraps)."""

    suffix = ".tokenizer.json"

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer

    @classmethod
    def load(cls, path: Path, info: dict[str, Any]) -> _Tokenizers:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def save(self, path: Path) -> dict[str, Any]:
        self.tok.save(str(path))
        return {}


class _Tiktoken:
    """Backend: a tiktoken ``Encoding`` over ``.tiktoken`` ranks (GPT-2's pattern)."""

    suffix = ".tiktoken"

    def __init__(self, ranks_file: Path, specials: dict[str, int], pattern: str) -> None:
        import tiktoken

        self.file, self.specials, self.pattern = Path(ranks_file), specials, pattern
        self.enc = tiktoken.Encoding(Path(ranks_file).stem, pat_str=pattern,
                                     mergeable_ranks=read_tiktoken(ranks_file),
                                     special_tokens=specials)  # fmt: skip

    @classmethod
    def load(cls, path: Path, info: dict[str, Any]) -> _Tiktoken:
        return cls(path, info["specials"], info["pattern"])

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def decode(self, ids: list[int]) -> str:
        special = set(self.specials.values())
        return self.enc.decode([i for i in ids if i not in special])

    def save(self, path: Path) -> dict[str, Any]:
        if self.file.resolve() != Path(path).resolve():
            shutil.copyfile(self.file, path)
        return {"specials": self.specials, "pattern": self.pattern}


_BACKENDS = {"tokenizers": _Tokenizers, "tiktoken": _Tiktoken}


class BPETokenizer:
    """Text <-> an LM's BPE ids, as ``Vocabulary`` does for words; see the module doc."""

    def __init__(
        self, backend: _Tokenizers | _Tiktoken, *, size: int, eos: int, source: str
    ) -> None:
        self.backend, self.source, self.eos = backend, source, eos
        self.size, self.pad, self.bos = size, size, size + 1  # ids < size: the tokenizer's own

    def __len__(self) -> int:
        return self.size + 2

    def encode(self, text: str, max_length: int) -> Encoded:
        """``<bos> tokens <eos>``, at most ``max_length`` ids (truncated: ``<eos>`` kept last)."""
        if max_length < 3:
            raise UserError(f"max_length={max_length}: must leave room for <bos>, a token, <eos>")
        body = self.backend.encode(" ".join(text.split()))
        truncated = len(body) > max_length - 2
        return Encoded([self.bos, *body[: max_length - 2], self.eos], truncated)

    def decode(self, ids: Iterable[int]) -> str:
        """Text up to ``<eos>``; ``<pad>``, ``<bos>`` and ids out of range are dropped."""
        body = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if 0 <= i < self.size:
                body.append(i)
        return self.backend.decode(body).strip()

    @classmethod
    def from_pretrained(cls, source: str) -> BPETokenizer:
        """The tokenizer of the LM at ``source`` (hub name or folder); see the module doc."""
        folder = Path(source).expanduser()
        tiktoken_files = sorted(folder.glob("*.tiktoken")) if folder.is_dir() else []
        if folder.is_dir() and not _has_hf_tokenizer(folder):
            fallback = tiktoken_files[0] if tiktoken_files else _gpt2_fallback(folder)
            if fallback is None:
                raise UserError(f"{folder}: no tokenizer (tokenizer.json, vocab.json + "
                                "merges.txt, or a .tiktoken file); copy the LM's tokenizer "
                                "files into the folder")  # fmt: skip
            return cls.from_tiktoken(fallback, source=source)
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(folder) if folder.is_dir() else source)
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"tokenizer of {source!r} could not be loaded ({first})") from None
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is None or tok.eos_token_id is None:
            raise UserError(f"{source!r}: needs a fast (tokenizers) tokenizer with an eos token")
        size = max(backend.get_vocab_size(with_added_tokens=True), int(tok.eos_token_id) + 1)
        return cls(_Tokenizers(backend), size=size, eos=int(tok.eos_token_id), source=source)

    @classmethod
    def from_tiktoken(cls, path: Path, *, source: str | None = None) -> BPETokenizer:
        """GPT-2-style ranks from a ``.tiktoken`` file; ``<|endoftext|>`` follows the ranks."""
        ranks = read_tiktoken(path)
        eos = max(ranks.values()) + 1
        backend = _Tiktoken(path, {ENDOFTEXT: eos}, GPT2_PATTERN)
        return cls(backend, size=eos + 1, eos=eos, source=source or str(path))

    def save(self, path: Path) -> None:
        """``path`` (JSON) and the tokenizer file beside it (``<stem>.tokenizer.json`` or
        ``<stem>.tiktoken``)."""
        path = Path(path)
        kind = next(k for k, v in _BACKENDS.items() if isinstance(self.backend, v))
        data = path.with_name(path.stem + self.backend.suffix)
        info = {"kind": kind, "file": data.name, "size": self.size, "eos": self.eos,
                "source": self.source, **self.backend.save(data)}  # fmt: skip
        path.write_text(json.dumps(info, indent=1))

    @classmethod
    def load(cls, path: Path) -> BPETokenizer:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: tokenizer missing (was the run trained with an LM decoder?)")
        info = json.loads(path.read_text())
        backend = _BACKENDS[info["kind"]].load(path.with_name(info["file"]), info)
        return cls(backend, size=info["size"], eos=info["eos"], source=info["source"])


def _has_hf_tokenizer(folder: Path) -> bool:
    """Whether ``AutoTokenizer`` has files to read in ``folder`` (else: a ``.tiktoken`` file)."""
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
    return any((folder / name).is_file() for name in names)


def _gpt2_fallback(folder: Path) -> Path | None:
    """Whisper's GPT-2 BPE for a GPT-2 folder (``config.json`` says ``gpt2``) without one."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text())
    if config.get("model_type") != "gpt2" or config.get("vocab_size") != 50257:
        return None
    return whisper_gpt2_file()
