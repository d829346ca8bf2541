"""Image-quality (MOS) metrics, scored as the camera image-quality challenge scores them.

- ``plcc``: Pearson's linear correlation of predicted and true MOS;
- ``srcc``: Spearman's rank correlation (tied values get their average rank);
- ``krcc``: Kendall's tau-b (ties counted as in scipy's default);
- ``rmse``: root mean squared error, in MOS units;
- ``mos_score`` = (max(PLCC, 0) + max(SRCC, 0)) / 2: the challenge's score, where a negative
  correlation counts as 0.

torchmetrics keeps the states, so the numbers sync across processes in multi-GPU runs; this
module picks the definitions and turns tensors into floats. Over fewer than two images, or with a
constant prediction, a correlation is undefined and reported as 0 (what a scorer awards).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchmetrics import CatMetric

METRIC_NAMES = ("mos_score", "plcc", "srcc", "krcc", "rmse")


def mos_score(plcc: float, srcc: float) -> float:
    """The challenge's MOS score: the mean of the two correlations, each clamped at 0."""
    return (max(plcc, 0.0) + max(srcc, 0.0)) / 2


def _finite(value: torch.Tensor) -> float:
    number = float(value)
    return number if math.isfinite(number) else 0.0


def quality_scores(predicted: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Every metric of ``METRIC_NAMES`` over whole 1-D tensors of predicted and true MOS."""
    from torchmetrics.functional import (
        kendall_rank_corrcoef,
        pearson_corrcoef,
        spearman_corrcoef,
    )

    predicted, target = predicted.double().flatten(), target.double().flatten()
    if predicted.numel() < 2 or bool(predicted.std() == 0) or bool(target.std() == 0):
        plcc = srcc = krcc = 0.0
    else:
        plcc = _finite(pearson_corrcoef(predicted, target))
        srcc = _finite(spearman_corrcoef(predicted, target))
        krcc = _finite(kendall_rank_corrcoef(predicted, target))
    rmse = float(((predicted - target) ** 2).mean().sqrt()) if predicted.numel() else 0.0
    return {"mos_score": mos_score(plcc, srcc), "plcc": plcc, "srcc": srcc, "krcc": krcc,
            "rmse": rmse}  # fmt: skip


class QualityMetrics:
    """Accumulates predicted and true MOS over an epoch (``outputs`` and ``batch["target"]``)."""

    def __init__(self) -> None:
        self.predicted = CatMetric()
        self.target = CatMetric()

    def to(self, device: torch.device) -> QualityMetrics:
        self.predicted, self.target = self.predicted.to(device), self.target.to(device)
        return self

    def update(self, outputs: torch.Tensor, batch: dict[str, Any]) -> None:
        self.predicted.update(outputs.detach().float().flatten())
        self.target.update(batch["target"].float().flatten())

    def values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All predicted and true MOS seen (synchronised across processes)."""
        predicted, target = self.predicted.compute(), self.target.compute()
        return torch.atleast_1d(predicted).cpu(), torch.atleast_1d(target).cpu()

    def compute(self) -> dict[str, float]:
        return quality_scores(*self.values())


def error_by_range(
    predicted: torch.Tensor, target: torch.Tensor, low: float, high: float, bins: int = 5
) -> list[dict[str, float]]:
    """Images, mean error (bias) and mean absolute error per equal-width range of true MOS."""
    edges = torch.linspace(low, high, bins + 1)
    rows = []
    for i in range(bins):
        upper = target <= edges[i + 1] if i == bins - 1 else target < edges[i + 1]
        inside = (target >= edges[i]) & upper
        error = (predicted - target)[inside]
        rows.append({
            "mos_from": round(float(edges[i]), 3), "mos_to": round(float(edges[i + 1]), 3),
            "images": int(inside.sum()),
            "mean_error": float(error.mean()) if error.numel() else float("nan"),
            "mean_abs_error": float(error.abs().mean()) if error.numel() else float("nan"),
        })  # fmt: skip
    return rows


def plot_quality(
    predicted: torch.Tensor, target: torch.Tensor, ranges: list[dict[str, float]], path: Any
) -> None:
    """Predicted vs true MOS (scatter, with the identity line) beside the error per MOS range."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    scatter, bars = fig.subplots(1, 2)
    scatter.scatter(target.numpy(), predicted.numpy(), s=8, alpha=0.6)
    low = float(min(target.min(), predicted.min())) if target.numel() else 0.0
    high = float(max(target.max(), predicted.max())) if target.numel() else 1.0
    scatter.plot([low, high], [low, high], color="grey", linewidth=1)
    scatter.set(xlabel="true MOS", ylabel="predicted MOS", title="predicted vs true MOS")
    labels = [f"{r['mos_from']:g}-{r['mos_to']:g}\n({r['images']})" for r in ranges]
    bars.bar(labels, [r["mean_abs_error"] for r in ranges], label="mean |error|")
    bars.bar(labels, [r["mean_error"] for r in ranges], width=0.4, label="mean error (bias)")
    bars.axhline(0, color="grey", linewidth=1)
    bars.set(xlabel="true MOS range (images)", ylabel="MOS", title="error by MOS range")
    bars.legend()
    fig.savefig(path, dpi=100)
