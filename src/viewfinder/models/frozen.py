"""Frozen-backbone training: a classifier split into (feature extractor, head).

When the backbone is frozen (a linear probe, "pretrained features + attention head", cRT) its
output for an image never changes, so it is computed once (``training/features.py``), cached, and
only the head is trained, on the cached features: epochs cost milliseconds instead of minutes.

The split keeps ``model(x) == head(features(x))`` in eval mode:
- ``NAME+attn`` (``ImageClassifier``): features = the backbone's feature map, head = the attention
  head;
- ``NAME+mlp`` and ``A&B`` (``PooledClassifier``): features = the backbone's pooled features (for
  ``A&B`` every backbone's, concatenated), head = the MLP or linear head;
- a timm model: features = ``forward_head(forward_features(x), pre_logits=True)`` (pooled, after
  timm's own pre-logits layers such as MobileNetV3's ``conv_head``), head = ``get_classifier()``;
- ``cnn``: the same contract (``PlainCNN`` implements it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from viewfinder.models.heads import ImageClassifier, PooledClassifier


def frozen_parts(model: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module]:
    """``(features, head)`` of ``model`` such that ``model(x) == head(features(x))``; a model
    whose head reads more than its backbone's output says so with ``features_for_head``."""
    if hasattr(model, "features_for_head"):
        return model.features_for_head, model.head
    if isinstance(model, ImageClassifier):
        return model.backbone.forward_features, model.head
    if isinstance(model, PooledClassifier):
        return model.backbone, model.head

    def features(x: torch.Tensor) -> torch.Tensor:
        return model.forward_head(model.forward_features(x), pre_logits=True)

    return features, model.get_classifier()


def freeze_backbone(model: nn.Module) -> int:
    """Stop gradients everywhere but the head; returns the number of trainable parameters.
    Head parameters frozen already stay frozen (a VQA head's frozen pretrained text encoder)."""
    _, head = frozen_parts(model)
    head_params = {id(p) for p in head.parameters() if p.requires_grad}
    for param in model.parameters():
        param.requires_grad_(id(param) in head_params)
    return sum(p.numel() for p in head.parameters() if p.requires_grad)


def reset_head(model: nn.Module) -> None:
    """Re-initialise the head's parameters (classifier re-training, Kang et al. ICLR 2020)."""
    _, head = frozen_parts(model)
    for module in head.modules():
        reset = getattr(module, "reset_parameters", None) or getattr(
            module, "_reset_parameters", None
        )  # nn.MultiheadAttention names it _reset_parameters
        if reset is not None:
            reset()


class FeatureClassifier(nn.Module):
    """The module the trainer optimises in frozen mode: ``forward(features) -> logits``.

    ``features`` is (B, V, ...) with V views of each image (V = 2 with flip variants); logits are
    averaged over views. Its ``state_dict`` *is* the full model's, so checkpoints load into the
    image model for ``evaluate`` and ``predict`` unchanged.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        _, self.head_fn = frozen_parts(model)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, views = features.shape[:2]
        logits = self.head_fn(features.flatten(0, 1))
        return logits.view(batch, views, -1).mean(dim=1)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)
