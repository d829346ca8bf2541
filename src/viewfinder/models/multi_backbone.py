"""Several frozen backbones side by side: ``model=A&B`` concatenates their pooled features.

Two ImageNet backbones see different things (scale, architecture), and a head on both feature
sets often reads quality or classes better than on either; with the backbones frozen the cost is
one extra feature extraction, cached like any other. Each backbone keeps its own input
normalisation: the task normalises images once with ImageNet statistics (``data_config`` of this
module), and each branch maps that to its own mean/std with a per-channel affine (exact).

``weights=a.pth&b.pth`` gives one file per backbone (``none`` for one without a file:
``weights=none&b.pth``; not a leading ``&``, which YAML reads as an anchor). Frozen mode only: a
several-backbone network trained end to end is out of scope, and says so in one line.
"""

from __future__ import annotations

import torch
from torch import nn

from viewfinder.config import ModelConfig
from viewfinder.errors import UserError
from viewfinder.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    create_backbone,
    data_config,
    load_weights,
)


def pooled_backbone(name: str, cfg: ModelConfig) -> nn.Module:
    """``name`` whose ``forward`` gives pooled pre-logits features (B, num_features): the timm
    model with its classifier removed (timm's own pooling kept), or the ``cnn`` without ``fc``."""
    if name == "cnn":
        return create_backbone(name, num_classes=0, pretrained=cfg.pretrained)
    model = create_backbone(name, num_classes=1, pretrained=cfg.pretrained)
    model.reset_classifier(0)  # timm's contract: classifier -> Identity, the pooling stays
    return model


class ConcatBackbones(nn.Module):
    """Backbones run on the same (ImageNet-normalised) batch; pooled features concatenated."""

    def __init__(self, backbones: list[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(backbones)
        self.num_features = sum(int(b.num_features) for b in backbones)
        base_mean, base_std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        for index, backbone in enumerate(backbones):
            mean, std = (torch.tensor(v) for v in data_config(backbone))
            # (x * base_std + base_mean - mean) / std, per channel; not saved in checkpoints
            scale, shift = base_std / std, (base_mean - mean) / std
            self.register_buffer(f"scale{index}", scale.view(1, 3, 1, 1), persistent=False)
            self.register_buffer(f"shift{index}", shift.view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for index, backbone in enumerate(self.parts):
            scale, shift = getattr(self, f"scale{index}"), getattr(self, f"shift{index}")
            features.append(backbone(x * scale.to(x.dtype) + shift.to(x.dtype)).flatten(1))
        return torch.cat(features, dim=1)


def weight_files(cfg: ModelConfig, count: int) -> list[str | None]:
    """``weights=a.pth&b.pth``: one file (or ``none``) per backbone."""
    if not cfg.weights:
        return [None] * count
    files = cfg.weights.split("&")
    if len(files) != count:
        raise UserError(
            f"weights={cfg.weights!r}: {len(files)} file(s) for {count} backbones; give one per "
            "backbone joined by '&' (none for a backbone without one: weights=none&b.pth)"
        )
    return [None if f.strip().lower() in ("", "none") else f.strip() for f in files]


def build_concatenated(names: tuple[str, ...], cfg: ModelConfig) -> tuple[ConcatBackbones, str]:
    """The backbones of ``A&B...`` with their ``weights=`` files loaded; and a note on them."""
    if any(n.startswith("clip:") for n in names):
        raise UserError(f"model {cfg.name!r}: clip: towers cannot be concatenated (yet)")
    parts, notes = [], []
    for name, path in zip(names, weight_files(cfg, len(names)), strict=True):
        backbone = pooled_backbone(name, cfg)
        if path:
            loaded, skipped = load_weights(backbone, path)
            notes.append(f"{name}: {loaded} tensors from {path} ({len(skipped)} skipped)")
        else:
            notes.append(f"{name}: {'pretrained' if cfg.pretrained else 'random init'}")
        parts.append(backbone)
    return ConcatBackbones(parts), "; ".join(notes)
