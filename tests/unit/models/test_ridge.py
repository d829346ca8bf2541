"""Closed-form ridge (``models/ridge.py``) against the textbook normal equations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from viewfinder.errors import UserError
from viewfinder.models.ridge import alpha_grid, fit_ridge, ridge_path, write_linear


def _toy(rows: int = 40, dims: int = 6, noise: float = 0.1, seed: int = 0):
    rng = np.random.default_rng(seed)
    # features on very different scales and offsets: standardisation must undo them
    x = rng.normal(size=(rows, dims)) * np.logspace(-2, 2, dims) + np.arange(dims)
    coef = rng.normal(size=dims) / np.logspace(-2, 2, dims)
    y = x @ coef + 0.5 + noise * rng.normal(size=rows)
    return x, y


def _reference(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """(X'X + alpha I) w = X'(y - mean y) on standardised X; folded back to raw features."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / scale
    w = np.linalg.solve(z.T @ z + alpha * np.eye(x.shape[1]), z.T @ (y - y.mean()))
    return w / scale, float(y.mean() - mean @ (w / scale))


@pytest.mark.parametrize("alpha", [1e-3, 1.0, 30.0, 1e4])
def test_matches_normal_equations(alpha: float) -> None:
    x, y = _toy()
    fit = fit_ridge(x, y, x[:5], y[:5], alphas=[alpha])
    weight, bias = _reference(x, y, alpha)
    np.testing.assert_allclose(fit.weight, weight, rtol=1e-7, atol=1e-10)
    assert fit.bias == pytest.approx(bias, rel=1e-7, abs=1e-10)
    assert fit.alpha == alpha


def test_more_features_than_rows() -> None:
    x, y = _toy(rows=8, dims=20)
    weights, intercept, mean, scale = ridge_path(x, y, np.array([0.5, 5.0]))
    for row, alpha in zip(weights, (0.5, 5.0), strict=True):
        weight, bias = _reference(x, y, alpha)
        np.testing.assert_allclose(row / scale, weight, rtol=1e-6, atol=1e-10)


def test_alpha_chosen_on_validation() -> None:
    x, y = _toy(rows=200, noise=0.01)
    clean = fit_ridge(x[:150], y[:150], x[150:], y[150:])
    assert clean.alpha == alpha_grid(150)[0]  # no noise: least shrinkage wins
    noise = np.random.default_rng(1).normal(size=200)  # targets unrelated to the features
    pure = fit_ridge(x[:150], noise[:150], x[150:], noise[150:])
    assert pure.alpha > 100 * clean.alpha
    best = min(pure.table, key=lambda row: row["val_mse"])
    assert best["alpha"] == pure.alpha and pure.val_mse == best["val_mse"]


def test_write_linear_predicts_like_the_fit() -> None:
    x, y = _toy()
    fit = fit_ridge(x, y, x, y, alphas=[1.0])
    linear = nn.Linear(x.shape[1], 1)
    write_linear(linear, fit)
    with torch.no_grad():
        out = linear(torch.tensor(x, dtype=torch.float32)).squeeze(1).numpy()
    np.testing.assert_allclose(out, x @ fit.weight + fit.bias, rtol=1e-4, atol=1e-4)
    with pytest.raises(UserError, match="one-output linear head"):
        write_linear(nn.Linear(x.shape[1], 3), fit)


def test_bad_inputs_are_one_line() -> None:
    x, y = _toy()
    with pytest.raises(UserError, match="ridge_alpha must be > 0"):
        fit_ridge(x, y, x, y, alphas=[0.0])
    with pytest.raises(UserError, match="at least 2 training images"):
        fit_ridge(x[:1], y[:1], x, y)
