"""Text decoders over image features, and the captioner that joins them to a backbone.

Every decoder reads a *memory*: the backbone's feature grid as (B, N, D) tokens (a pooled vector
is N = 1), projected to the decoder's width. Three designs, chosen by ``model.decoder``:

- ``lstm`` / ``gru``: show-and-tell (Vinyals et al. 2015): the pooled image sets the initial
  state, then the RNN reads the caption; with ``decoder_attention=true`` it is show-attend-tell
  (Xu et al. 2015): additive attention over the grid at every step, the context fed with the word.
- ``transformer``: a small pre-norm decoder with causal self-attention and cross-attention over
  the grid (learned positions for words and grid cells).
- a Hugging Face causal LM (``models/lm.py``): the grid becomes prefix tokens.

All decoders share ``forward(memory, tokens) -> logits`` for teacher forcing and
``start``/``step`` for decoding (``models/decoding.py``). Decoder state is batch-first, so beam
search can reorder it with one ``index_select``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from viewfinder.errors import UserError
from viewfinder.models.decoding import DecodeSettings, decode
from viewfinder.models.heads import ImageClassifier


def grid_tokens(features: torch.Tensor) -> torch.Tensor:
    """A backbone's output as (B, N, C) tokens: a (B, C, H, W) map, (B, N, C) tokens or (B, C)."""
    if features.ndim == 4:
        return features.flatten(2).transpose(1, 2)
    if features.ndim == 2:
        return features[:, None]
    return features


class RNNDecoder(nn.Module):
    """Show-and-tell / show-attend-tell; see the module doc."""

    def __init__(
        self, kind: str, vocab_size: int, dim: int, *, layers: int, dropout: float, attention: bool
    ) -> None:
        super().__init__()
        self.kind, self.layers, self.attention = kind, layers, attention
        self.embed = nn.Embedding(vocab_size, dim)
        rnn = nn.LSTM if kind == "lstm" else nn.GRU
        width = 2 * dim if attention else dim
        self.rnn = rnn(width, dim, num_layers=layers, batch_first=True,
                       dropout=dropout if layers > 1 else 0.0)  # fmt: skip
        self.init_h = nn.Linear(dim, layers * dim)
        self.init_c = nn.Linear(dim, layers * dim) if kind == "lstm" else None
        if attention:
            self.att_memory = nn.Linear(dim, dim)
            self.att_hidden = nn.Linear(dim, dim)
            self.att_score = nn.Linear(dim, 1)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(width, vocab_size)

    def start(self, memory: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = memory.mean(dim=1)
        batch, dim = pooled.shape
        state = {"memory": memory, "h": torch.tanh(self.init_h(pooled)).view(batch, -1, dim)}
        if self.attention:  # the grid's side of the attention, once per caption, not per word
            state["keys"] = self.att_memory(memory)
        if self.init_c is not None:
            state["c"] = torch.tanh(self.init_c(pooled)).view(batch, -1, dim)
        return state

    def _context(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Additive (Bahdanau) attention of the top hidden state over the grid: (B, D)."""
        energy = torch.tanh(state["keys"] + self.att_hidden(state["h"][:, -1])[:, None])
        weights = self.att_score(energy).softmax(dim=1)  # (B, N, 1)
        return (weights * state["memory"]).sum(dim=1)

    def _run(
        self, inputs: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hidden = state["h"].transpose(0, 1).contiguous()
        if self.init_c is not None:
            cell = state["c"].transpose(0, 1).contiguous()
            out, (hidden, cell) = self.rnn(inputs, (hidden, cell))
            return out, {**state, "h": hidden.transpose(0, 1), "c": cell.transpose(0, 1)}
        out, hidden = self.rnn(inputs, hidden)
        return out, {**state, "h": hidden.transpose(0, 1)}

    def _one_step(
        self, state: dict[str, torch.Tensor], token: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        words = self.drop(self.embed(token))  # (B, D)
        if not self.attention:
            out, state = self._run(words[:, None], state)
            return self.out(self.drop(out[:, 0])), state
        context = self._context(state)
        out, state = self._run(torch.cat([words, context], dim=-1)[:, None], state)
        return self.out(self.drop(torch.cat([out[:, 0], context], dim=-1))), state

    def forward(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        state = self.start(memory)
        if not self.attention:  # the whole caption in one cuDNN/oneDNN call
            out, _ = self._run(self.drop(self.embed(tokens)), state)
            return self.out(self.drop(out))
        # attention needs the previous hidden state, so the RNN runs word by word; the embedding
        # and the output layer run once over the whole caption (the same sums, fewer, larger ops)
        words, steps = self.drop(self.embed(tokens)), []
        for t in range(tokens.shape[1]):
            context = self._context(state)
            out, state = self._run(torch.cat([words[:, t], context], dim=-1)[:, None], state)
            steps.append(torch.cat([out[:, 0], context], dim=-1))
        return self.out(self.drop(torch.stack(steps, dim=1)))

    def step(
        self, state: dict[str, torch.Tensor], prefix: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self._one_step(state, prefix[:, -1])


class TransformerTextDecoder(nn.Module):
    """Causal self-attention over the words, cross-attention over the grid; see the module doc."""

    def __init__(
        self, vocab_size: int, dim: int, *, layers: int, heads: int, dropout: float,
        max_length: int, max_memory: int = 1024,
    ) -> None:  # fmt: skip
        super().__init__()
        if dim % heads:
            raise UserError(f"decoder_dim={dim} must be a multiple of decoder_heads={heads}")
        self.embed = nn.Embedding(vocab_size, dim)
        self.positions = nn.Parameter(torch.zeros(1, max_length, dim))
        self.memory_positions = nn.Parameter(torch.zeros(1, max_memory, dim))
        nn.init.normal_(self.positions, std=0.02)
        nn.init.normal_(self.memory_positions, std=0.02)
        layer = nn.TransformerDecoderLayer(dim, heads, 4 * dim, dropout, batch_first=True,
                                           norm_first=True)  # fmt: skip
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab_size)

    def start(self, memory: torch.Tensor) -> dict[str, torch.Tensor]:
        if memory.shape[1] > self.memory_positions.shape[1]:
            raise UserError(f"{memory.shape[1]} grid cells: more than the decoder's "
                            f"{self.memory_positions.shape[1]}; lower image_size")  # fmt: skip
        return {"memory": memory + self.memory_positions[:, : memory.shape[1]]}

    def _decode(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        x = self.embed(tokens) + self.positions[:, :length]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        x = self.decoder(x, memory, tgt_mask=mask.to(x.dtype), tgt_is_causal=True)
        return self.out(self.norm(x))

    def forward(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self._decode(self.start(memory)["memory"], tokens)

    def step(
        self, state: dict[str, torch.Tensor], prefix: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The whole prefix again (captions are short: ~20 tokens, no key/value cache needed)."""
        return self._decode(state["memory"], prefix)[:, -1], state


class CaptionHead(nn.Module):
    """Backbone features -> memory (projected grid) -> a decoder."""

    def __init__(self, in_features: int, decoder: nn.Module, dim: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_features, dim), nn.LayerNorm(dim),
                                  nn.Dropout(dropout))  # fmt: skip
        self.decoder = decoder

    def memory(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(grid_tokens(features))

    def forward(self, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.memory(features), tokens)


class Captioner(ImageClassifier):
    """A backbone (``forward_features``) and a ``CaptionHead``, or ``QualityCaptionHeads`` (a MOS
    head beside it: ``iqa+caption``).

    ``forward`` takes images, or cached backbone features (``from_features=True``: frozen mode),
    and returns ``{"logits"}`` for teacher forcing on ``tokens`` and/or ``{"ids"}`` generated by
    ``decode`` (greedy or beam), plus ``{"mos"}`` (standardised, (B, 1)) with a MOS head. One
    ``forward`` for all keeps DDP-wrapped models working.
    """

    def forward(
        self,
        x: torch.Tensor,
        tokens: torch.Tensor | None = None,
        *,
        from_features: bool = False,
        settings: DecodeSettings | None = None,
    ) -> dict[str, torch.Tensor]:
        features = x if from_features else self.backbone.forward_features(x)
        caption = getattr(self.head, "caption", self.head)
        out: dict[str, torch.Tensor] = {}
        if hasattr(self.head, "mos"):
            out["mos"] = self.head.mos(features)
        memory = caption.memory(features)
        if tokens is not None:
            out["logits"] = caption.decoder(memory, tokens)
        if settings is not None:
            out["ids"] = decode(caption.decoder, memory, settings)
        return out


def build_decoder(cfg: Any, vocab_size: int, max_length: int) -> nn.Module:
    """The decoder ``cfg.decoder`` names (``lstm``, ``gru``, ``transformer``, or a Hugging Face
    causal LM: ``gpt2``, ``distilgpt2``, ``hf:NAME_OR_FOLDER``; ``models/lm.py``)."""
    from viewfinder.models.lm import build_lm_decoder, lm_source

    if lm_source(cfg.decoder) is not None:
        return build_lm_decoder(cfg, vocab_size, max_length)
    name = cfg.decoder.lower()
    if name in ("lstm", "gru"):
        return RNNDecoder(name, vocab_size, cfg.decoder_dim, layers=cfg.decoder_layers,
                          dropout=cfg.decoder_dropout, attention=cfg.decoder_attention)  # fmt: skip
    if name == "transformer":
        return TransformerTextDecoder(
            vocab_size, cfg.decoder_dim, layers=cfg.decoder_layers, heads=cfg.decoder_heads,
            dropout=cfg.decoder_dropout, max_length=max_length,
        )  # fmt: skip
    raise UserError(f"model.decoder={cfg.decoder!r}: choose lstm, gru, transformer, gpt2, "
                    "distilgpt2 or hf:NAME_OR_FOLDER")  # fmt: skip


class PooledRegressor(nn.Module):
    """The MOS head of ``NAME``: each channel's mean and standard deviation over the grid, then
    one linear output. The deviation keeps what quality is made of (how much local responses
    vary: noise, blocking, lost edges), which a mean pool averages away."""

    def __init__(self, in_features: int, outputs: int = 1) -> None:
        super().__init__()
        self.fc = nn.Linear(2 * in_features, outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = grid_tokens(features).float()
        std = tokens.var(dim=1, unbiased=False).add(1e-6).sqrt()
        return self.fc(torch.cat([tokens.mean(dim=1), std], dim=1))


class QualityCaptionHeads(nn.Module):
    def __init__(self, mos: nn.Module, caption: CaptionHead) -> None:
        super().__init__()
        self.mos, self.caption = mos, caption


def build_captioner(
    cfg: Any, vocab_size: int, max_length: int, *, with_mos: bool = False
) -> tuple[nn.Module, str]:
    """Backbone ``cfg.name`` (no classifier) + caption head (+ a MOS head, ``with_mos``: pooled
    linear, or attention over the grid for ``NAME+attn``, starting at zero = the mean MOS);
    ``weights=`` loads the backbone."""
    from viewfinder.models.backbones import apply_weights, create_backbone
    from viewfinder.models.classifier import parse_model_name
    from viewfinder.models.heads import AttentionHead

    spec = parse_model_name(cfg.name)
    if spec.head not in ("linear", "attn") or (spec.head == "attn" and not with_mos):
        raise UserError(f"model {cfg.name!r}: captioners attend with decoder_attention=true or "
                        f"decoder=transformer; drop '+{spec.head}'")  # fmt: skip
    if len(spec.backbones) > 1:
        raise UserError(f"model {cfg.name!r}: captioners take one backbone")
    backbone = create_backbone(spec.backbone, num_classes=0, pretrained=cfg.pretrained)
    features = backbone.num_features
    decoder = build_decoder(cfg, vocab_size, max_length)
    width = getattr(decoder, "width", cfg.decoder_dim)  # an LM's own width (models/lm.py)
    caption = CaptionHead(features, decoder, width, cfg.decoder_dropout)
    if with_mos:
        mos = (AttentionHead(features, 1, heads=cfg.attention_heads, drop_rate=cfg.drop_rate)
               if spec.head == "attn" else PooledRegressor(features))  # fmt: skip
        nn.init.zeros_(mos.fc.weight)
        nn.init.zeros_(mos.fc.bias)
        model = Captioner(backbone, QualityCaptionHeads(mos, caption))
    else:
        model = Captioner(backbone, caption)
    return model, apply_weights(model, cfg)
