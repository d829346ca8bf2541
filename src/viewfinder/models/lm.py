"""A Hugging Face causal LM (GPT-2 family and others) as a caption / answer decoder.

The image memory (B, N, D), already projected to the LM's width by ``CaptionHead``, is fed as N
prefix embeddings (``inputs_embeds``; ClipCap, Mokady et al. 2021, with the LM trained too),
followed by the caption's token embeddings; the LM adds its own positions to both. The prefix
starts at the scale of the LM's token embeddings (a learned scalar), so a pretrained LM is not
met with inputs ten times larger than any it has seen.

``forward(memory, tokens) -> logits`` is teacher forcing over the token positions, as for the
other decoders (``models/text.py``); ``start``/``step`` decode with the key/value cache, kept in
the state as batch-first ``key<i>``/``value<i>`` tensors so beam search reorders it like any other
state (``models/decoding.py``). Token ids come from the LM's tokenizer plus ``<pad>``/``<bos>``
(``data/bpe.py``): the embedding grows by those rows, started at the mean embedding.

``model.decoder``: ``gpt2``, ``distilgpt2`` (hub names, downloaded by ``transformers`` on first
use), or ``hf:NAME_OR_FOLDER`` (any hub causal LM, or a local folder with ``config.json`` and
weights: offline machines, and the tests' tiny random GPT-2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from viewfinder.errors import UserError

HUB_NAMES = {"gpt2": "openai-community/gpt2", "distilgpt2": "distilbert/distilgpt2"}


def lm_source(decoder: str) -> str | None:
    """The hub name or folder ``model.decoder`` names, or None for the built-in decoders."""
    if decoder.lower() in HUB_NAMES:
        return HUB_NAMES[decoder.lower()]
    if decoder.startswith("hf:"):
        return decoder[3:]
    return None


class CausalLMDecoder(nn.Module):
    """Image prefix + tokens through a causal LM; see the module doc."""

    def __init__(self, lm: nn.Module, vocab_size: int) -> None:
        super().__init__()
        self.lm, self.vocab_size = lm, vocab_size
        config = lm.config
        self.width = int(config.hidden_size)
        self.max_positions = getattr(config, "n_positions", None) or getattr(
            config, "max_position_embeddings", None
        )
        embed = lm.get_input_embeddings()
        old = embed.weight.shape[0]
        if vocab_size > old:  # <pad>, <bos> (and tokens the LM lacks): rows at the mean
            lm.resize_token_embeddings(vocab_size, mean_resizing=False)
            with torch.no_grad():
                weight = lm.get_input_embeddings().weight
                weight[old:] = weight[:old].mean(dim=0)
        scale = lm.get_input_embeddings().weight.detach().float().std()
        self.prefix_scale = nn.Parameter(scale.reshape(()))

    def _check_length(self, length: int) -> None:
        if self.max_positions and length > self.max_positions:
            raise UserError(f"{length} prefix + caption tokens: more than the LM's "
                            f"{self.max_positions} positions; lower image_size or "
                            "text.max_length")  # fmt: skip

    def _inputs(self, memory: torch.Tensor | None, tokens: torch.Tensor | None) -> torch.Tensor:
        embed = self.lm.get_input_embeddings()
        parts = [] if memory is None else [memory.to(embed.weight.dtype) * self.prefix_scale]
        if tokens is not None:
            parts.append(embed(tokens))
        return torch.cat(parts, dim=1)

    def forward(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, V) logits at the token positions (teacher forcing)."""
        self._check_length(memory.shape[1] + tokens.shape[1])
        out = self.lm(inputs_embeds=self._inputs(memory, tokens), use_cache=False,
                      logits_to_keep=tokens.shape[1])  # fmt: skip
        return out.logits[..., : self.vocab_size]

    def start(self, memory: torch.Tensor) -> dict[str, torch.Tensor]:
        """Runs the prefix once; the state is its key/value cache."""
        out = self.lm(inputs_embeds=self._inputs(memory, None), use_cache=True, logits_to_keep=1)
        state = _pack(out.cache)
        state["prefix_length"] = torch.full((memory.shape[0],), memory.shape[1],
                                            dtype=torch.long, device=memory.device)  # fmt: skip
        return state

    def step(
        self, state: dict[str, torch.Tensor], prefix: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits after ``prefix``: only its tokens not in the cache yet go through the LM."""
        cache, cached = _unpack(state)
        seen = cached - int(state["prefix_length"][0])
        self._check_length(cached + prefix.shape[1] - seen)
        out = self.lm(inputs_embeds=self._inputs(None, prefix[:, seen:]), cache=cache,
                      use_cache=True, logits_to_keep=1)  # fmt: skip
        new = _pack(out.cache)
        new["prefix_length"] = state["prefix_length"]
        return out.logits[:, -1, : self.vocab_size], new


def _pack(cache: Any) -> dict[str, torch.Tensor]:
    """A ``transformers`` cache as batch-first tensors: (B, heads, length, head_dim) each."""
    state = {}
    for i, layer in enumerate(cache.layers):
        state[f"key{i}"], state[f"value{i}"] = layer.keys, layer.values
    return state


def _unpack(state: dict[str, torch.Tensor]) -> tuple[Any, int]:
    """The cache back from ``_pack``'s tensors, and how many positions it holds."""
    from transformers import DynamicCache

    layers = sum(k.startswith("key") for k in state)
    pairs = [(state[f"key{i}"], state[f"value{i}"]) for i in range(layers)]
    return DynamicCache(ddp_cache_data=pairs), pairs[0][0].shape[-2]


RUN_LM_FOLDER = "decoder"  # a run folder's copy of the LM's config.json (no weights)
_WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.msgpack", "*.h5")


def save_lm_config(source: str, run_dir: Path) -> None:
    """The LM's ``config.json`` into ``RUN/decoder/``: evaluate, predict and serve rebuild the
    architecture from it (the run's checkpoint holds every weight), offline and without the
    original folder."""
    from transformers import AutoConfig

    folder = Path(source).expanduser()
    try:
        config = AutoConfig.from_pretrained(str(folder) if folder.is_dir() else source)
    except (OSError, ValueError):
        return  # load_lm says why, in one line, when the decoder is built
    config.save_pretrained(str(run_dir / RUN_LM_FOLDER))


def run_lm_decoder(run_dir: Path) -> str | None:
    """``hf:RUN/decoder`` when the run saved its LM's config (``save_lm_config``), else None."""
    folder = run_dir / RUN_LM_FOLDER
    return f"hf:{folder}" if (folder / "config.json").is_file() else None


def loaded_model_config(model_cfg: Any, run_dir: Path) -> Any:
    """``model_cfg`` as a finished run rebuilds it: an LM decoder from the run's own copy of its
    config (``save_lm_config``), so evaluate, predict and serve need neither the hub nor the
    original folder; any other decoder unchanged."""
    local = run_lm_decoder(run_dir)
    if local is None or lm_source(model_cfg.decoder) is None:
        return model_cfg
    return model_cfg.model_copy(update={"decoder": local})


def load_lm(source: str) -> nn.Module:
    """``AutoModelForCausalLM`` from a folder or the hub; failures are one line. A folder with a
    ``config.json`` and no weights (a run folder's copy) gives the architecture alone."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(source).expanduser()
    if not folder.is_dir() and source.startswith((".", "/", "~")):
        raise UserError(f"model.decoder=hf:{source}: folder not found")
    try:
        if folder.is_dir() and not any(next(folder.glob(p), None) for p in _WEIGHT_FILES):
            return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(folder)))
        return AutoModelForCausalLM.from_pretrained(str(folder) if folder.is_dir() else source)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"causal LM {source!r} could not be loaded ({first}); pass "
                        "decoder=hf:FOLDER with config.json and weights") from None  # fmt: skip


def build_lm_decoder(cfg: Any, vocab_size: int, max_length: int) -> CausalLMDecoder:
    """The LM ``cfg.decoder`` names, its embedding grown to ``vocab_size`` (``data/bpe.py``).
    ``decoder_dim``/``decoder_layers``/``decoder_heads`` are the LM's own: ignored here."""
    decoder = CausalLMDecoder(load_lm(lm_source(cfg.decoder)), vocab_size)
    decoder._check_length(1 + max_length)
    return decoder
