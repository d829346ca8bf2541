"""Regression heads start at zero: a one-output EfficientNet would otherwise start far off."""

from __future__ import annotations

import pytest
import torch

from viewfinder.config import ModelConfig
from viewfinder.models.classifier import build_classifier


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "cnn", "resnet18+attn"])
def test_regression_head_predicts_zero_at_start(name: str) -> None:
    model, _ = build_classifier(ModelConfig(name=name), 1, regression=True)
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 1) and torch.equal(out, torch.zeros(2, 1))
    classifier, _ = build_classifier(ModelConfig(name=name), 1)
    assert any(p.abs().sum() > 0 for p in classifier.parameters())
