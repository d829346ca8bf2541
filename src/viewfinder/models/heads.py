"""Heads that sit on a backbone: the attention head of ``NAME+attn`` models (over the feature
map), the MLP head of ``NAME+mlp`` models (over the pooled features).

The linear head is the backbone's own (timm's ``num_classes=N`` classifier, or the ``cnn``'s), so
plain models stay plain timm models whose checkpoints load anywhere.
"""

from __future__ import annotations

import torch
from torch import nn


def _divisor_at_most(dim: int, wanted: int) -> int:
    return max(h for h in range(1, wanted + 1) if dim % h == 0)


class AttentionHead(nn.Module):
    """Multi-head self-attention over the feature map's positions, then mean pool and classify.

    This is the "CNN + attention" of the fruit/vegetable study: every spatial position attends to
    every other before pooling, so the classifier can weigh the parts of the image that matter.
    Wide maps (ResNet-50's 2048 channels) are first projected to ``max_dim`` to keep it cheap.
    Accepts a (B, C, H, W) map or (B, N, C) tokens (ViT-style backbones).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        heads: int = 4,
        drop_rate: float = 0.0,
        max_dim: int = 512,
    ) -> None:
        super().__init__()
        dim = min(in_features, max_dim)
        self.proj = nn.Linear(in_features, dim) if dim != in_features else nn.Identity()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, _divisor_at_most(dim, heads), batch_first=True)
        self.out_norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 4:
            features = features.flatten(2).transpose(1, 2)
        tokens = self.proj(features)
        normed = self.norm(tokens)
        attended, _ = self.attn(normed, normed, normed, need_weights=False)
        tokens = tokens + attended
        return self.fc(self.drop(self.out_norm(tokens.mean(dim=1))))


class ImageClassifier(nn.Module):
    """A backbone's feature map followed by a head (used for ``NAME+attn``)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(x))


class MLPHead(nn.Module):
    """Pooled features -> one hidden layer (GELU, dropout) -> outputs: the "frozen features + MLP
    head" baseline, a non-linear read-out that still trains in milliseconds per epoch on cached
    features. The last layer is ``fc``, like the attention head's (post-hoc re-balancing and
    ``zero_head`` find it)."""

    def __init__(
        self, in_features: int, num_classes: int, *, hidden: int = 512, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_features, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.act(self.hidden(features))))


class PooledClassifier(nn.Module):
    """A backbone whose ``forward`` gives pooled features (B, D), followed by a head (``NAME+mlp``,
    concatenated backbones ``A&B``). ``backbone`` keeps timm's pre-logits layers (e.g.
    MobileNetV3's ``conv_head``): it is the timm model with its classifier removed."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
