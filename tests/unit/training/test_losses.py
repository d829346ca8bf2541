from __future__ import annotations

import pytest
import torch

from viewfinder.errors import UserError
from viewfinder.training.losses import (
    LOSSES,
    BalancedSoftmaxLoss,
    CrossEntropy,
    FocalLoss,
    LogitAdjustedLoss,
    build_loss,
    class_weights,
)

COUNTS = [100, 10, 1, 0]
NAMES = ["balanced_softmax", "ce", "focal", "logit_adjusted"]


def test_registry_lists_every_loss() -> None:
    assert LOSSES.names() == NAMES


def test_build_loss_passes_the_options() -> None:
    ce = build_loss("ce", COUNTS, weights="inverse", label_smoothing=0.1)
    assert isinstance(ce, CrossEntropy) and ce.label_smoothing == 0.1
    assert torch.equal(ce.weight, class_weights(COUNTS, "inverse"))
    focal = build_loss("focal", COUNTS, weights="effective", beta=0.99, focal_gamma=1.0)
    assert isinstance(focal, FocalLoss) and focal.gamma == 1.0
    assert torch.equal(focal.weight, class_weights(COUNTS, "effective", beta=0.99))
    assert build_loss("ce", COUNTS).weight is None  # weights="none": no weight at all
    adjusted = build_loss("logit_adjusted", COUNTS, tau=2.0)
    assert isinstance(adjusted, LogitAdjustedLoss) and adjusted.tau == 2.0
    assert isinstance(build_loss("balanced_softmax", COUNTS), BalancedSoftmaxLoss)


def test_unknown_loss_suggests_the_nearest_name() -> None:
    with pytest.raises(UserError, match=r"unknown loss 'focall' \(did you mean 'focal'\?\)"):
        build_loss("focall", COUNTS)


@pytest.mark.parametrize("name", ["balanced_softmax", "logit_adjusted"])
def test_prior_adjusted_losses_refuse_class_weights(name: str) -> None:
    with pytest.raises(UserError, match="already re-balances"):
        build_loss(name, COUNTS, weights="inverse")


def test_unknown_weight_scheme_lists_the_choices() -> None:
    with pytest.raises(UserError, match="choose from: none, inverse, sqrt, effective"):
        build_loss("ce", COUNTS, weights="balanced")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"label_smoothing": -0.1}, "label_smoothing"),
        ({"focal_gamma": -1.0}, "focal_gamma"),
        ({"tau": -1.0}, "tau"),
        ({"weights": "effective", "beta": 1.0}, "beta"),
    ],
)
def test_bad_options_are_user_errors(kwargs: dict, message: str) -> None:
    name = "logit_adjusted" if "tau" in kwargs else "focal"
    with pytest.raises(UserError, match=message):
        build_loss(name, COUNTS, **kwargs)


def test_bad_counts_are_user_errors() -> None:
    with pytest.raises(UserError, match="class counts"):
        build_loss("balanced_softmax", [3, -1])
    with pytest.raises(UserError, match="every class count is 0"):
        class_weights([0, 0], "inverse")


@pytest.mark.parametrize("name", NAMES)
def test_to_moves_the_buffers_and_keeps_them_out_of_state_dict(name: str) -> None:
    weights = "sqrt" if name in ("ce", "focal") else "none"
    loss = build_loss(name, COUNTS, weights=weights).to(torch.device("meta"))
    buffers = dict(loss.named_buffers())
    assert buffers and all(b.device.type == "meta" for b in buffers.values())
    assert loss.state_dict() == {}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("soft", [False, True])
def test_gradients_are_finite_even_for_extreme_logits(name: str, soft: bool) -> None:
    weights = "inverse" if name in ("ce", "focal") else "none"
    loss = build_loss(name, COUNTS, weights=weights, focal_gamma=0.5, label_smoothing=0.1)
    logits = torch.tensor(
        [[100.0, -100.0, 0.0, 0.0], [0.0, 0.0, 60.0, -60.0], [1.0, 2.0, 3.0, 4.0]],
        requires_grad=True,
    )
    target = torch.tensor([0, 2, 3])  # class 3 has count 0
    if soft:
        target = torch.tensor([[1.0, 0, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0, 1.0]])
    value = loss(logits, target)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_half_precision_logits_give_a_float32_loss(name: str) -> None:
    loss = build_loss(name, [5, 3, 1])
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    value = loss(logits, torch.tensor([0, 1, 2, 0], dtype=torch.int32))
    assert value.dtype == torch.float32 and torch.isfinite(value)


def test_shape_mismatches_are_clear() -> None:
    loss = build_loss("balanced_softmax", [5, 3, 1])
    with pytest.raises(ValueError, match="built for 3"):
        loss(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="target shape"):
        loss(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="logits must be"):
        CrossEntropy()(torch.zeros(3), torch.tensor([0, 1, 2]))
