"""Regression losses for quality (MOS) scores, combinable with ``+`` (``loss=mse+plcc``).

Every loss takes predictions and targets on the standardised scale the ``iqa`` task trains on
((MOS - train mean) / train std), so the parts of a sum weigh alike:

- ``mse``, ``l1``, ``smooth_l1`` (Huber, beta 1): pointwise errors;
- ``plcc``: 1 - Pearson's correlation over the batch (Li et al. 2020, "Norm-in-norm loss"
  family): trains what the challenge's PLCC scores, indifferent to a shift or scale of the output;
- ``rank``: pairwise margin ranking over every pair in the batch whose targets differ, hinge
  ``max(0, margin - sign(t_i - t_j) * (p_i - p_j))`` with margin 0.1: trains the order that SRCC
  scores (RankIQA-style).
Correlation and ranking need two images with different targets; a batch without them adds 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RANK_MARGIN = 0.1


def plcc_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p, t = predicted - predicted.mean(), target - target.mean()
    denominator = (p.square().sum() * t.square().sum()).sqrt()
    if predicted.numel() < 2 or float(denominator.detach()) == 0.0:
        return predicted.sum() * 0.0
    return 1.0 - (p * t).sum() / denominator


def rank_loss(
    predicted: torch.Tensor, target: torch.Tensor, margin: float = RANK_MARGIN
) -> torch.Tensor:
    order = torch.sign(target[:, None] - target[None, :])
    pairs = order != 0
    if not bool(pairs.any()):
        return predicted.sum() * 0.0
    hinge = (margin - order * (predicted[:, None] - predicted[None, :])).clamp_min(0)
    return hinge[pairs].mean()


_PARTS = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "smooth_l1": F.smooth_l1_loss,
    "plcc": plcc_loss,
    "rank": rank_loss,
}


class QualityLoss(nn.Module):
    """The sum of the named parts, e.g. ``QualityLoss("mse+plcc")``."""

    def __init__(self, spec: str) -> None:
        super().__init__()
        self.names = spec.split("+")
        unknown = [n for n in self.names if n not in _PARTS]
        if unknown:
            raise ValueError(f"unknown quality loss {unknown[0]!r}; choose from {list(_PARTS)}")

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        predicted, target = predicted.float().flatten(), target.float().flatten()
        return sum(_PARTS[name](predicted, target) for name in self.names)
