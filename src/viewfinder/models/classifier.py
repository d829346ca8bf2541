"""Build an image classifier from a model name: ``resnet50``, ``cnn``, ``resnet50+attn`` ...

Heads (the suffix): none = the backbone's own linear classifier, ``+attn`` attention over the
feature map, ``+mlp`` an MLP on the pooled features, ``+ridge`` the plain linear head fitted in
closed form on frozen features (regression tasks; ``models/ridge.py``). ``A&B`` concatenates the
pooled features of several frozen backbones (``models/multi_backbone.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from viewfinder.config import ModelConfig
from viewfinder.errors import UserError
from viewfinder.models.backbones import create_backbone, load_weights
from viewfinder.models.heads import AttentionHead, ImageClassifier, MLPHead, PooledClassifier

HEAD_SUFFIXES = ("attn", "mlp", "ridge")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model name: the backbone(s) and the head on top."""

    backbone: str  # one name, or several joined by '&' (features concatenated)
    head: str  # "linear" (the backbone's own classifier), "attn", "mlp" or "ridge"

    @property
    def backbones(self) -> tuple[str, ...]:
        return tuple(self.backbone.split("&"))


def parse_model_name(name: str) -> ModelSpec:
    backbone, plus, suffix = name.strip().partition("+")
    if (plus and suffix not in HEAD_SUFFIXES) or not all(backbone.split("&")):
        bad_head = plus and suffix not in HEAD_SUFFIXES
        problem = f"unknown head {suffix!r}" if bad_head else "empty backbone name"
        raise UserError(
            f"model {name!r}: {problem}; write NAME, NAME+attn, NAME+mlp or NAME+ridge "
            "(e.g. resnet50+attn), several frozen backbones as A&B"
        )
    return ModelSpec(backbone, suffix if plus else "linear")


def check_model_spec(spec: ModelSpec, cfg: ModelConfig, *, regression: bool) -> None:
    """One-line errors for heads and backbone sets this model config cannot train."""
    name = cfg.name
    if spec.head == "ridge" and not regression:
        raise UserError(f"model {name!r}: +ridge fits regression heads (task iqa); try +mlp")
    if spec.head == "ridge" and not cfg.freeze_backbone:
        raise UserError(
            f"model {name!r}: +ridge fits the head in closed form on frozen features; "
            "add freeze_backbone=true"
        )
    if len(spec.backbones) > 1 and not cfg.freeze_backbone:
        raise UserError(
            f"model {name!r}: concatenated backbones train only a head on frozen features; "
            "add freeze_backbone=true"
        )
    if len(spec.backbones) > 1 and spec.head == "attn":
        raise UserError(
            f"model {name!r}: concatenated backbones give pooled features; "
            "use A&B, A&B+mlp or A&B+ridge"
        )


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
    check_model_spec(spec, cfg, regression=regression)
    note = "pretrained (model hub)" if cfg.pretrained else "random init"
    if len(spec.backbones) > 1:
        from viewfinder.models.multi_backbone import build_concatenated

        backbone, note = build_concatenated(spec.backbones, cfg)
        model = PooledClassifier(backbone, _pooled_head(backbone, spec, cfg, num_classes))
    else:
        model = _single_backbone(spec, cfg, num_classes)
    if regression:
        zero_head(model)
    if cfg.weights and len(spec.backbones) == 1:
        loaded, skipped = load_weights(model, cfg.weights)
        note = f"{loaded} tensors from {cfg.weights}" + (
            f" ({len(skipped)} skipped: {', '.join(skipped[:3])})" if skipped else ""
        )
    return model, note


def _single_backbone(spec: ModelSpec, cfg: ModelConfig, num_classes: int) -> nn.Module:
    if spec.backbone.startswith("clip:"):
        return _clip_classifier(spec, cfg, num_classes)
    if spec.head in ("linear", "ridge"):  # ridge: the same linear layer, fitted in closed form
        return create_backbone(
            spec.backbone,
            num_classes=num_classes,
            pretrained=cfg.pretrained,
            drop_rate=cfg.drop_rate,
        )
    if spec.head == "mlp":
        from viewfinder.models.multi_backbone import pooled_backbone

        backbone = pooled_backbone(spec.backbone, cfg)
        return PooledClassifier(backbone, _pooled_head(backbone, spec, cfg, num_classes))
    backbone = create_backbone(spec.backbone, num_classes=0, pretrained=cfg.pretrained)
    head = AttentionHead(
        backbone.num_features, num_classes, heads=cfg.attention_heads, drop_rate=cfg.drop_rate
    )
    return ImageClassifier(backbone, head)


def _pooled_head(backbone: nn.Module, spec: ModelSpec, cfg: ModelConfig, outputs: int) -> nn.Module:
    """The head on pooled features: an MLP (``+mlp``), else one ``nn.Linear`` (what ``+ridge``
    and post-hoc re-balancing write into)."""
    features = int(backbone.num_features)
    if spec.head == "mlp":
        return MLPHead(features, outputs, hidden=cfg.mlp_hidden, drop_rate=cfg.drop_rate)
    return nn.Linear(features, outputs)


def _clip_classifier(spec: ModelSpec, cfg: ModelConfig, num_classes: int) -> nn.Module:
    """CLIP's image tower + a linear head: the linear probe (with ``freeze_backbone=true``)."""
    from viewfinder.models.clip import create_clip_backbone

    if spec.head not in ("linear", "ridge"):
        raise UserError(
            f"model {cfg.name!r}: CLIP gives one embedding per image; drop '+{spec.head}'"
        )
    encoder = create_clip_backbone(spec.backbone, pretrained=cfg.pretrained)
    return ImageClassifier(encoder, nn.Linear(encoder.num_features, num_classes))


def backbone_of(model: nn.Module) -> nn.Module:
    return getattr(model, "backbone", model)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
