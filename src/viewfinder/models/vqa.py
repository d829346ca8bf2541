"""Visual question answering models: an image backbone and a question encoder, joined two ways.

- ``answerer=classifier`` (the competition winners' design; Antol et al. 2015, Kazemi & Elqursh
  2017 "Show, Ask, Attend, and Answer"): the question's vector (``QuestionEncoder``, or a
  pretrained Hugging Face text encoder: ``question_encoder=hf:NAME``, ``models/hf_encoder.py``)
  and the image are fused (``fusion``: ``film``, the default, question-modulated residual blocks
  on every grid cell read out in place; ``concat`` of pooled image and question; ``product``,
  their element-wise product after a tanh projection each; ``attention``, question-guided
  attention over the feature grid, two glimpses, then the product) and classified over the top-K
  training answers.
- ``answerer=generative`` (the study's design): the projected image grid plus the question's
  vector as one more memory token feed any caption decoder (``lstm``/``gru``/``transformer`` or a
  Hugging Face causal LM as prefix tokens; ``models/text.py``, ``models/lm.py``), which writes the
  answer; decoding is the captioners' (greedy or beam; ``models/decoding.py``). The question
  enters as one summary token so every decoder and the decoding code work unchanged (no masks for
  padded questions inside the memory).

Both read the backbone's grid (``forward_features``), so frozen mode caches the grid once per
image. Batches carry each *image* once (``image``/``features``: (U, ...)) and ``image_of``: (B,)
the image row of each question, so an image asked four questions is encoded once.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from viewfinder.errors import UserError
from viewfinder.models.decoding import DecodeSettings, decode
from viewfinder.models.heads import ImageClassifier
from viewfinder.models.hf_encoder import (
    HFQuestionEncoder,
    build_hf_question_encoder,
    encoder_source,
)
from viewfinder.models.text import CaptionHead, build_decoder, grid_tokens

ENCODERS = ("gru", "lstm", "transformer")
FUSIONS = ("concat", "product", "attention", "film")
EXTRA_CHANNELS = 3 + 2  # each grid cell's mean colour and x, y (VQAModel, with_coordinates)


class QuestionEncoder(nn.Module):
    """Question tokens (B, L), ``pad``-padded -> (B, dim): an RNN's last state (packed, so padding
    is never read) or a small transformer encoder's masked mean."""

    def __init__(
        self, kind: str, vocab_size: int, dim: int, *, pad: int, layers: int, heads: int,
        dropout: float, max_length: int,
    ) -> None:  # fmt: skip
        super().__init__()
        if kind not in ENCODERS:
            raise UserError(f"question_encoder={kind!r}: choose {', '.join(ENCODERS)}")
        self.kind, self.pad, self.dim = kind, pad, dim
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad)
        self.drop = nn.Dropout(dropout)
        if kind == "transformer":
            self.position = nn.Parameter(torch.zeros(1, max_length, dim))
            layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, batch_first=True,
                                               norm_first=True)  # fmt: skip
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(dim)
        else:
            rnn = nn.LSTM if kind == "lstm" else nn.GRU
            self.rnn = rnn(dim, dim, num_layers=layers, batch_first=True,
                           dropout=dropout if layers > 1 else 0.0)  # fmt: skip

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens != self.pad
        x = self.drop(self.embed(tokens))
        if self.kind == "transformer":
            x = x + self.position[:, : x.shape[1]]
            x = self.norm(self.encoder(x, src_key_padding_mask=~mask))
            weights = mask.unsqueeze(-1).to(x.dtype)
            return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed)
        hidden = state[0] if self.kind == "lstm" else state
        return hidden[-1]


class Fusion(nn.Module):
    """Image grid (U, N, C) + question (B, D) -> (B, D); see the module doc.

    The last ``extra`` grid channels (each cell's mean colour and x, y; ``VQAModel``) skip the
    LayerNorm that evens out the backbone's channels: normalised together with hundreds of
    feature channels they were washed out ("what color" fell from 0.45 to 0.32 on the demo
    questions; docs/benchmarks.md).

    ``film`` (Perez et al. 2018, FiLM) runs ``layers`` residual blocks on every cell, each scaled
    and shifted by the question, then reads the cell map *in place*: the map, average-pooled to
    a fixed ``SPATIAL`` x ``SPATIAL`` (the grid itself at 64 px on a stride-16 backbone),
    flattened, so "on the left" and "is there a star" keep where each answer came from. Mean and
    max pooling, the previous read-out, threw that away: "Is the X on the left side?" stayed near
    chance (0.53-0.58 on the demo questions) and rose to 0.74 with the in-place read-out.
    """

    SPATIAL = 4

    def __init__(
        self, kind: str, image_dim: int, dim: int, dropout: float, glimpses: int = 2, *,
        layers: int = 2, extra: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        if kind not in FUSIONS:
            raise UserError(f"fusion={kind!r}: choose {', '.join(FUSIONS)}")
        self.kind, self.extra = kind, extra
        self.norm = nn.LayerNorm(image_dim - extra)
        self.drop = nn.Dropout(dropout)
        if kind == "attention":
            self.att_image = nn.Linear(image_dim, dim)
            self.att_question = nn.Linear(dim, dim)
            self.att_score = nn.Linear(dim, glimpses)
            image_dim = image_dim * glimpses
        if kind == "film":
            self.cell = nn.Linear(image_dim, dim)
            self.gamma_beta = nn.Linear(dim, 2 * dim * layers)
            self.blocks = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
            self.out = nn.Sequential(nn.Linear(self.SPATIAL**2 * dim, dim), nn.GELU())
        elif kind == "concat":
            self.out = nn.Sequential(nn.Linear(image_dim + dim, dim), nn.GELU())
        else:
            self.image = nn.Linear(image_dim, dim)
            self.question = nn.Linear(dim, dim)

    def forward(
        self, grid: torch.Tensor, image_of: torch.Tensor, question: torch.Tensor,
        shape: tuple[int, int] | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """``grid``: (U, N, C), each distinct image once; ``image_of``: (B,) its row per question;
        ``shape``: the grid's (h, w) (default: square when N is, else one row). What does not
        depend on the question is computed once per image, then gathered."""
        if self.extra:
            grid = torch.cat([self.norm(grid[..., : -self.extra]), grid[..., -self.extra :]], -1)
        else:
            grid = self.norm(grid)
        if self.kind == "film":
            return self._film(grid, image_of, question, shape)
        if self.kind == "attention":
            keys = self.att_image(grid)[image_of]
            hidden = torch.tanh(keys + self.att_question(question)[:, None])
            weights = self.att_score(self.drop(hidden)).softmax(dim=1)  # (B, N, G)
            image = torch.einsum("bng,bnc->bgc", weights, grid[image_of]).flatten(1)
        else:
            image = grid.mean(dim=1)[image_of]
        if self.kind == "concat":
            return self.out(self.drop(torch.cat([image, question], dim=1)))
        return torch.tanh(self.image(self.drop(image))) * torch.tanh(self.question(question))

    def _film(
        self, grid: torch.Tensor, image_of: torch.Tensor, question: torch.Tensor,
        shape: tuple[int, int] | None,
    ) -> torch.Tensor:  # fmt: skip
        film = self.gamma_beta(question)[:, None].chunk(2 * len(self.blocks), dim=-1)
        cells = torch.relu(self.cell(grid))[image_of]  # no dropout on (B, N, D): slow, unneeded
        for k, block in enumerate(self.blocks):
            cells = torch.relu(block(cells) * (1 + film[2 * k]) + film[2 * k + 1]) + cells
        h, w = shape or _grid_shape(cells.shape[1])
        cell_map = cells.transpose(1, 2).reshape(cells.shape[0], -1, h, w)
        if (h, w) != (self.SPATIAL, self.SPATIAL):
            cell_map = F.adaptive_avg_pool2d(cell_map, self.SPATIAL)
        return self.out(self.drop(cell_map.flatten(1)))


def _grid_shape(cells: int) -> tuple[int, int]:
    """(h, w) of ``cells`` grid tokens when the caller did not say: square if it can be."""
    side = math.isqrt(cells)
    return (side, side) if side * side == cells else (1, cells)


class AnswerClassifier(nn.Module):
    """Question encoder + fusion + an MLP over the top-K answers (``fc`` last, zero-started)."""

    def __init__(self, image_dim: int, encoder: nn.Module, fusion: Fusion, dim: int,
                 answers: int, dropout: float) -> None:  # fmt: skip
        super().__init__()
        self.question, self.fusion = encoder, fusion
        self.hidden = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, 2 * dim), nn.GELU(),
                                    nn.Dropout(dropout))  # fmt: skip
        self.fc = nn.Linear(2 * dim, answers)

    def forward(
        self, grid: torch.Tensor, image_of: torch.Tensor, question: torch.Tensor,
        shape: tuple[int, int] | None = None,
    ) -> torch.Tensor:  # fmt: skip
        return self.fc(self.hidden(self.fusion(grid, image_of, self.question(question), shape)))


class AnswerGenerator(nn.Module):
    """Question encoder + a caption head whose memory is the grid plus the question's vector."""

    def __init__(self, encoder: nn.Module, caption: CaptionHead, width: int) -> None:
        super().__init__()
        self.question, self.caption = encoder, caption
        self.question_proj = nn.Sequential(nn.Linear(encoder.dim, width),
                                           nn.LayerNorm(width))  # fmt: skip

    def memory(
        self, grid: torch.Tensor, image_of: torch.Tensor, question: torch.Tensor
    ) -> torch.Tensor:
        image = self.caption.proj(grid)[image_of]
        asked = self.question_proj(self.question(question))[:, None].to(image.dtype)
        return torch.cat([image, asked], dim=1)


class VQAModel(ImageClassifier):
    """A backbone and an ``AnswerClassifier`` or ``AnswerGenerator`` head.

    The head reads ``features_for_head(x)``: the backbone's grid with each cell's mean input
    colour appended (3 channels). Classification backbones learn to ignore colour, and "what
    color is ..." is among the most common question types; the cell's own pixels keep it at no
    cost. Frozen mode caches exactly this (``models/frozen.py`` asks for ``features_for_head``).

    ``forward(x, question, image_of, tokens=None, from_features=False, settings=None)``: ``x`` is
    the batch's distinct images (or their cached grids), ``image_of`` the image row of each
    question. Returns ``{"logits"}`` (answer logits; or, generative, teacher-forced token logits
    on ``tokens``) and, generative with ``settings``, ``{"ids"}``: decoded answers.
    """

    def features_for_head(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_features(x)
        if features.ndim == 4:
            colour = F.adaptive_avg_pool2d(x.float(), features.shape[-2:]).to(features.dtype)
            return torch.cat([features, colour], dim=1)
        tokens = grid_tokens(features)  # a ViT's tokens: the image's mean colour on each
        colour = x.float().mean(dim=(2, 3))[:, None].to(tokens.dtype)
        return torch.cat([tokens, colour.expand(-1, tokens.shape[1], -1)], dim=2)

    def forward(
        self,
        x: torch.Tensor,
        question: torch.Tensor,
        image_of: torch.Tensor,
        tokens: torch.Tensor | None = None,
        *,
        from_features: bool = False,
        settings: DecodeSettings | None = None,
    ) -> dict[str, torch.Tensor]:
        features = x if from_features else self.features_for_head(x)
        grid = with_coordinates(features)
        if isinstance(self.head, AnswerClassifier):
            shape = tuple(features.shape[-2:]) if features.ndim == 4 else None
            return {"logits": self.head(grid, image_of, question, shape)}
        memory = self.head.memory(grid, image_of, question)
        out: dict[str, torch.Tensor] = {}
        if tokens is not None:
            out["logits"] = self.head.caption.decoder(memory, tokens)
        if settings is not None:
            out["ids"] = decode(self.head.caption.decoder, memory, settings)
        return out


def with_coordinates(features: torch.Tensor) -> torch.Tensor:
    """(B, N, C + 2) grid tokens with each cell's x and y in [-1, 1] appended: where a thing is
    ("on the left", "at the top") stays readable after pooling. A pooled (B, C) vector gets 0, 0."""
    tokens = grid_tokens(features)
    if features.ndim == 4:
        h, w = features.shape[-2:]
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, h, device=features.device),
            torch.linspace(-1, 1, w, device=features.device),
            indexing="ij",
        )
        coords = torch.stack([xs.flatten(), ys.flatten()], dim=1)
    else:
        coords = torch.zeros(tokens.shape[1], 2, device=features.device)
    coords = coords.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
    return torch.cat([tokens, coords], dim=2)


def build_vqa_model(
    cfg: Any, *, question_vocab: int, pad: int, question_length: int, answers: int,
    answer_vocab: int, answer_length: int, question_source: str | None = None,
    question_pretrained: bool = True,
) -> tuple[nn.Module, str]:  # fmt: skip
    """Backbone ``cfg.name`` (no classifier) + the ``cfg.answerer`` head; ``weights=`` loads the
    backbone (or a whole VQA checkpoint). ``question_encoder=hf:...`` builds the encoder at
    ``question_source``: its hub name or folder (``question_pretrained``), or at load time the
    run folder's ``question_encoder/`` config, the weights from the checkpoint
    (``models/hf_encoder.py``)."""
    from viewfinder.models.backbones import apply_weights, create_backbone
    from viewfinder.models.classifier import parse_model_name

    spec = parse_model_name(cfg.name)
    if spec.head != "linear" or len(spec.backbones) > 1:
        raise UserError(
            f"model {cfg.name!r}: VQA takes one backbone name; the head is "
            f"answerer=classifier|generative with fusion={'|'.join(FUSIONS)}"
        )
    backbone = create_backbone(spec.backbone, num_classes=0, pretrained=cfg.pretrained)
    image_dim = backbone.num_features + EXTRA_CHANNELS
    source = (question_source, question_pretrained)
    if cfg.answerer == "classifier":
        dim = cfg.decoder_dim
        encoder = _encoder(cfg, question_vocab, dim, pad, question_length, source)
        fusion = Fusion(cfg.fusion, image_dim, dim, cfg.decoder_dropout,
                        layers=cfg.fusion_layers, extra=EXTRA_CHANNELS)  # fmt: skip
        head: nn.Module = AnswerClassifier(
            image_dim, encoder, fusion, dim, answers, cfg.decoder_dropout
        )
    else:
        decoder = build_decoder(cfg, answer_vocab, answer_length)
        width = getattr(decoder, "width", cfg.decoder_dim)
        caption = CaptionHead(image_dim, decoder, width, cfg.decoder_dropout)
        encoder = _encoder(cfg, question_vocab, cfg.decoder_dim, pad, question_length, source)
        head = AnswerGenerator(encoder, caption, width)
    model = VQAModel(backbone, head)
    note = apply_weights(model, cfg)
    if isinstance(encoder, HFQuestionEncoder):
        state = "frozen" if encoder.frozen else "fine-tuned"
        note += f", question encoder {cfg.question_encoder} ({state})"
    return model, note


def _encoder(
    cfg: Any, vocab: int, dim: int, pad: int, length: int, source: tuple[str | None, bool]
) -> nn.Module:
    """The built-in ``QuestionEncoder`` or, for ``hf:...``, the Hugging Face one."""
    if encoder_source(cfg.question_encoder) is not None:
        where, pretrained = source
        if where is None:
            raise ValueError("question_encoder=hf:... needs question_source (the task's)")
        return build_hf_question_encoder(cfg, where, pretrained=pretrained, dim=dim, pad=pad,
                                         max_length=length, vocab=vocab)  # fmt: skip
    return QuestionEncoder(
        cfg.question_encoder, vocab, dim, pad=pad, layers=cfg.decoder_layers,
        heads=cfg.decoder_heads, dropout=cfg.decoder_dropout, max_length=length,
    )  # fmt: skip
