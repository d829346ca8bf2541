"""Ridge regression in closed form: the linear head of a frozen-feature regressor (``NAME+ridge``).

Pooled features -> one linear layer is exactly a linear head, so on cached frozen features the
best head under squared error is one solve, not epochs of AdamW: seconds, and no learning rate,
schedule or epoch count to tune.

Recipe: each feature is standardised (train mean and std; so features of concatenated backbones
are penalised alike, whatever their scale), targets are the task's (already standardised) ones,
the intercept is unpenalised. One SVD of the standardised features gives the solution for every
alpha at once; alpha is picked from a log grid (``alpha_grid``) by validation MSE, the same
number the run reports as validation loss. Validation, not leave-one-out: images made from one
source photo (KADID-style data) are near duplicates, and leave-one-out would keep the others of a
held-out image in training and choose too little shrinkage. The solution is folded back into the
raw-feature weights and bias of the model's ``nn.Linear``, so the checkpoint is a normal one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from viewfinder.errors import UserError


@dataclass
class RidgeFit:
    """A fitted ridge head on the raw features: ``prediction = features @ weight + bias``."""

    weight: np.ndarray  # (D,)
    bias: float
    alpha: float
    train_mse: float
    val_mse: float
    table: list[dict[str, float]] = field(default_factory=list)  # per alpha: validation MSE


def alpha_grid(rows: int) -> np.ndarray:
    """17 alphas from 1e-4 to 1e4 times the row count (the scale of X'X on standardised
    features): from almost least squares to almost the mean."""
    return rows * np.logspace(-4, 4, 17)


def ridge_path(
    x: np.ndarray, y: np.ndarray, alphas: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Standardised-feature solutions for every alpha: (weights (A, D), intercept, mean, scale).

    With ``Z = (x - mean) / scale = U S V'``: ``w(alpha) = V diag(s / (s^2 + alpha)) U' (y - ȳ)``.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0  # a constant feature: centred to zero, weight zero
    z = (x - mean) / scale
    intercept = float(y.mean())
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    projected = u.T @ (y - intercept)  # (R,)
    shrink = s[None, :] / (s[None, :] ** 2 + np.asarray(alphas, dtype=np.float64)[:, None])
    return (shrink * projected[None, :]) @ vt, intercept, mean, scale


def fit_ridge(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    alphas: list[float] | np.ndarray | None = None,
) -> RidgeFit:
    """Ridge on ``train``, alpha chosen by MSE on ``val`` (ties: the larger alpha)."""
    if len(train_x) < 2:
        raise UserError("ridge needs at least 2 training images with a target")
    alphas = alpha_grid(len(train_x)) if alphas is None else np.asarray(alphas, dtype=np.float64)
    if (alphas <= 0).any():
        raise UserError(f"ridge_alpha must be > 0, got {float(alphas.min())}")
    weights, intercept, mean, scale = ridge_path(train_x, train_y, alphas)
    val_z = (np.asarray(val_x, dtype=np.float64) - mean) / scale
    if len(val_y) == 0:  # nothing to choose on: the middle of the grid
        errors = np.abs(np.log(alphas) - np.median(np.log(alphas)))
    else:
        errors = ((val_z @ weights.T + intercept - np.asarray(val_y)[:, None]) ** 2).mean(axis=0)
    best = max(range(len(alphas)), key=lambda i: (-errors[i], alphas[i]))
    raw_weight = weights[best] / scale
    bias = intercept - float(mean @ raw_weight)
    train_mse = float(((np.asarray(train_x) @ raw_weight + bias - train_y) ** 2).mean())
    table = [{"alpha": float(a), "val_mse": float(e)} for a, e in zip(alphas, errors, strict=True)]
    return RidgeFit(
        weight=raw_weight, bias=bias, alpha=float(alphas[best]), train_mse=train_mse,
        val_mse=float(errors[best]), table=table,
    )  # fmt: skip


@torch.no_grad()
def write_linear(linear: nn.Module, fit: RidgeFit) -> None:
    """Put the ridge solution into a one-output ``nn.Linear`` (the model's head)."""
    if not isinstance(linear, nn.Linear) or linear.out_features != 1 or linear.bias is None:
        raise UserError(f"ridge fits a one-output linear head with a bias, not {linear}")
    if linear.in_features != len(fit.weight):
        raise RuntimeError(f"ridge: {len(fit.weight)} features for {linear.in_features} inputs")
    linear.weight.copy_(torch.as_tensor(fit.weight, dtype=linear.weight.dtype).view(1, -1))
    if linear.bias is not None:
        linear.bias.fill_(fit.bias)
