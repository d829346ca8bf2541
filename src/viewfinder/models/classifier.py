"""Build an image classifier from a model name: ``resnet50``, ``cnn``, ``resnet50+attn`` ..."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from viewfinder.config import ModelConfig
from viewfinder.errors import UserError
from viewfinder.models.backbones import create_backbone, load_weights
from viewfinder.models.heads import AttentionHead, ImageClassifier

HEAD_SUFFIXES = ("attn",)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model name: the backbone and the head on top of it."""

    backbone: str
    head: str  # "linear" (the backbone's own classifier) or "attn"


def parse_model_name(name: str) -> ModelSpec:
    backbone, plus, suffix = name.strip().partition("+")
    if not plus:
        return ModelSpec(backbone, "linear")
    if suffix not in HEAD_SUFFIXES or not backbone:
        raise UserError(
            f"model {name!r}: unknown head {suffix!r}; write NAME or NAME+attn (e.g. resnet50+attn)"
        )
    return ModelSpec(backbone, suffix)


def zero_head(model: nn.Module) -> None:
    """Zero the head's last linear layer, so a regressor starts by predicting the mean.

    Regression heads need it: timm's EfficientNet ("goog") init draws a classifier's weights from
    U(-1/sqrt(outputs), +1/sqrt(outputs)), which for one output is U(-1, 1) over ~1,280 features
    (outputs of several standard deviations, measured: a frozen-feature head stuck at SRCC 0.03)."""
    from viewfinder.models.frozen import frozen_parts

    _, head = frozen_parts(model)
    linear = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if linear:
        nn.init.zeros_(linear[-1].weight)
        if linear[-1].bias is not None:
            nn.init.zeros_(linear[-1].bias)


def build_classifier(
    cfg: ModelConfig, num_classes: int, *, regression: bool = False
) -> tuple[nn.Module, str]:
    """The network for ``cfg.name`` with ``num_classes`` outputs, and a note on loaded weights.

    ``regression``: the head starts at zero (``zero_head``), before any ``weights=`` load."""
    spec = parse_model_name(cfg.name)
    note = "pretrained (model hub)" if cfg.pretrained else "random init"
    if spec.backbone.startswith("clip:"):
        model = _clip_classifier(spec, cfg, num_classes)
    elif spec.head == "linear":
        model = create_backbone(
            spec.backbone,
            num_classes=num_classes,
            pretrained=cfg.pretrained,
            drop_rate=cfg.drop_rate,
        )
    else:
        backbone = create_backbone(spec.backbone, num_classes=0, pretrained=cfg.pretrained)
        head = AttentionHead(
            backbone.num_features, num_classes, heads=cfg.attention_heads, drop_rate=cfg.drop_rate
        )
        model = ImageClassifier(backbone, head)
    if regression:
        zero_head(model)
    if cfg.weights:
        loaded, skipped = load_weights(model, cfg.weights)
        note = f"{loaded} tensors from {cfg.weights}" + (
            f" ({len(skipped)} skipped: {', '.join(skipped[:3])})" if skipped else ""
        )
    return model, note


def _clip_classifier(spec: ModelSpec, cfg: ModelConfig, num_classes: int) -> nn.Module:
    """CLIP's image tower + a linear head: the linear probe (with ``freeze_backbone=true``)."""
    from viewfinder.models.clip import create_clip_backbone

    if spec.head != "linear":
        raise UserError(f"model {cfg.name!r}: CLIP gives one embedding per image; drop '+attn'")
    encoder = create_clip_backbone(spec.backbone, pretrained=cfg.pretrained)
    return ImageClassifier(encoder, nn.Linear(encoder.num_features, num_classes))


def backbone_of(model: nn.Module) -> nn.Module:
    return getattr(model, "backbone", model)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
