"""A Hugging Face text encoder (BERT, DistilBERT, MiniLM, ...) as the VQA question encoder.

``model.question_encoder=hf:NAME_OR_FOLDER``: ``transformers.AutoModel`` with its pretrained
weights (the point of the option: the built-in ``gru``/``lstm``/``transformer`` learn every word
from the training questions alone), wrapped by ``HFQuestionEncoder`` to ``QuestionEncoder``'s
contract: token ids (B, L), padded with the tokenizer's pad id (``data/hf_tokenizer.py``), in;
(B, dim) out, ``dim`` the head's width (``decoder_dim``).

**Pooling**: the mean of the last hidden state over the question's tokens (``ids != pad``). A
BERT's [CLS] vector and pooler are trained for next-sentence prediction and make a weak sentence
vector unless fine-tuned (Reimers & Gurevych 2019, Sentence-BERT: mean pooling beats both), the
sentence-transformers models are trained for the mean, and DistilBERT has no pooler: the mean is
right for all of them, frozen or not. It is layer-normalised before the projection (BERT's hidden
states have a few outlier channels far larger than the rest).

**Freezing** (``model.freeze_question_encoder=true``, default): the encoder runs without
gradients and stays in eval mode (no dropout). One learning rate drives the whole model, and the
head's (1e-3 by default) is ~30x what fine-tuning BERT tolerates (2e-5 ... 5e-5), so a small VQA
set would wreck the pretrained weights it was chosen for; on a CPU frozen is also ~3x cheaper (no
backward, no AdamW moments for 110 M parameters). ``false`` fine-tunes it (lower
``learning_rate`` then, ~1e-4: the head's new layers share it). A frozen encoder's vector for a
question never changes, so a training run remembers it (``cache_questions``, called by the task's
``training_model``; float32, ``hidden_size`` x 4 bytes per distinct question, ~3 KB for
bert-base): from the second epoch on the encoder does not run, as the image grid is cached in
frozen-backbone mode. Evaluate, predict and serve see each question once and do not cache (a
server's memory stays flat).

**Without the hub**: at setup the task saves the encoder's ``config.json`` beside its tokenizer
in the run folder (``question_encoder/``, ``save_encoder_config``); evaluate and predict build the
same architecture from that config (``pretrained=False``) and the run's checkpoint, which holds
the encoder's weights too, fills them in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from viewfinder.errors import UserError


def encoder_source(question_encoder: str) -> str | None:
    """The hub name or folder ``model.question_encoder`` names, or None for the built-in ones."""
    return question_encoder[3:] if question_encoder.startswith("hf:") else None


def _path(source: str) -> str:
    folder = Path(source).expanduser()
    if not folder.is_dir() and source.startswith((".", "/", "~")):
        raise UserError(f"model.question_encoder=hf:{source}: folder not found")
    return str(folder) if folder.is_dir() else source


def _failed(source: str, err: Exception) -> UserError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return UserError(f"text encoder {source!r} could not be loaded ({first}); pass "
                     "question_encoder=hf:FOLDER with config.json, weights, tokenizer")  # fmt: skip


def save_encoder_config(source: str, folder: Path) -> None:
    """The encoder's ``config.json`` into ``folder`` (what ``pretrained=False`` builds from)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(_path(source))
    except (OSError, ValueError) as err:
        raise _failed(source, err) from None
    config.save_pretrained(str(folder))


def load_text_encoder(source: str, *, pretrained: bool) -> nn.Module:
    """``AutoModel`` from a hub name or folder: its weights (``pretrained``), or the architecture
    of its ``config.json`` alone (a run folder's copy; the checkpoint holds the weights)."""
    from transformers import AutoConfig, AutoModel

    try:
        if pretrained:
            return AutoModel.from_pretrained(_path(source))
        return AutoModel.from_config(AutoConfig.from_pretrained(_path(source)))
    except (OSError, ValueError) as err:
        raise _failed(source, err) from None


class HFQuestionEncoder(nn.Module):
    """Question ids (B, L), ``pad``-padded -> (B, dim): masked mean of a Hugging Face encoder's
    last hidden state, normalised and projected; see the module doc."""

    def __init__(
        self, model: nn.Module, dim: int, *, pad: int, frozen: bool, dropout: float,
        max_length: int, source: str, vocab: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.model, self.pad, self.frozen, self.dim = model, pad, frozen, dim
        self._cache: dict[bytes, torch.Tensor] | None = None  # question ids -> pooled vector
        self.register_load_state_dict_pre_hook(HFQuestionEncoder._forget)
        positions = getattr(model.config, "max_position_embeddings", None)
        if positions and max_length > positions:
            raise UserError(f"text.max_length={max_length}: more than the {positions} positions "
                            f"of {source!r}; lower text.max_length")  # fmt: skip
        width = self._probe(source)
        rows = getattr(model.get_input_embeddings(), "num_embeddings", vocab)
        if vocab > rows:
            raise UserError(f"{source!r}: its tokenizer has {vocab} tokens, its embedding "
                            f"{rows} rows; the tokenizer does not belong to the model")  # fmt: skip
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(width, dim)
        if frozen:
            model.requires_grad_(False)
            model.eval()

    def _probe(self, source: str) -> int:
        """The encoder's width, from one tiny forward pass: a model that is not a text encoder
        (CLIP, an encoder-decoder, ...) fails here, at build time, in one line."""
        ids = torch.zeros(1, 2, dtype=torch.long)
        try:
            with torch.no_grad():
                return int(self._hidden(ids, torch.ones_like(ids)).shape[-1])
        except (AttributeError, TypeError, ValueError, RuntimeError, IndexError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise UserError(f"{source!r} is not a text encoder ({type(err).__name__}: {first}); "
                            "question_encoder=hf: takes BERT-like models") from None  # fmt: skip

    def _hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state

    def train(self, mode: bool = True) -> HFQuestionEncoder:
        """A frozen encoder stays in eval mode (its dropout off) while the head trains."""
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def cache_questions(self) -> None:
        """Frozen: remember each question's pooled vector by its ids (see the module doc)."""
        if self.frozen:
            self._cache = {}

    def _forget(self, *args: Any) -> None:
        """New weights (``load_state_dict``): the remembered vectors are stale."""
        if self._cache is not None:
            self._cache.clear()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pooled = self._pool(tokens) if self._cache is None else self._cached(tokens)
        return self.proj(self.drop(self.norm(pooled)))

    def _pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, width): the masked mean of the last hidden state."""
        mask = tokens != self.pad
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hidden = self._hidden(tokens, mask.long())
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def _cached(self, tokens: torch.Tensor) -> torch.Tensor:
        """``_pool`` for the questions not seen yet; the rest from the cache (keyed by the
        question's ids without padding, so a question is one entry at any batch width; kept in
        float32, exact for bf16 results, whatever autocast the next step runs under)."""
        keys = [row[row != self.pad].tobytes() for row in tokens.cpu().numpy()]
        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        if missing:
            with torch.no_grad():
                fresh = self._pool(tokens[missing]).float()
            self._cache.update(zip([keys[i] for i in missing], fresh, strict=True))
        return torch.stack([self._cache[key] for key in keys])


def build_hf_question_encoder(
    cfg: Any, source: str, *, pretrained: bool, dim: int, pad: int, max_length: int, vocab: int
) -> HFQuestionEncoder:
    """``cfg`` is ``model``: ``freeze_question_encoder`` and ``decoder_dropout`` (the head's);
    ``vocab``: the tokenizer's size (its ids must fit the embedding)."""
    return HFQuestionEncoder(
        load_text_encoder(source, pretrained=pretrained), dim, pad=pad,
        frozen=cfg.freeze_question_encoder, dropout=cfg.decoder_dropout, max_length=max_length,
        source=source, vocab=vocab,
    )  # fmt: skip
