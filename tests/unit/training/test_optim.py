from __future__ import annotations

import pytest
import torch
from torch import nn

from viewfinder.config import TrainConfig
from viewfinder.training.optim import build_optimizer, build_scheduler, lr_factor


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8, bias=False), nn.LayerNorm(8), nn.Linear(8, 3))


def _train(model: nn.Module, optimizer, scheduler, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        model(torch.randn(2, 6)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    return lrs


# --- lr_factor -----------------------------------------------------------------------------------


def test_warmup_is_linear() -> None:
    factors = [lr_factor(s, total=100, warmup=4, kind="cosine") for s in range(4)]
    assert factors == pytest.approx([0.25, 0.5, 0.75, 1.0])
    constant = [lr_factor(s, total=100, warmup=4, kind="constant") for s in range(4)]
    assert constant == pytest.approx(factors)


def test_cosine_starts_at_peak_and_ends_at_one_percent() -> None:
    assert lr_factor(0, total=10, warmup=0, kind="cosine") == pytest.approx(1.0)
    assert lr_factor(5, total=10, warmup=0, kind="cosine") == pytest.approx(0.505)
    assert lr_factor(10, total=10, warmup=0, kind="cosine") == pytest.approx(0.01)
    assert lr_factor(50, total=10, warmup=0, kind="cosine") == pytest.approx(0.01)  # clamped


def test_cosine_after_warmup() -> None:
    assert lr_factor(2, total=12, warmup=2, kind="cosine") == pytest.approx(1.0)
    assert lr_factor(12, total=12, warmup=2, kind="cosine") == pytest.approx(0.01)
    factors = [lr_factor(s, total=12, warmup=2, kind="cosine") for s in range(2, 13)]
    assert all(a > b for a, b in zip(factors, factors[1:], strict=False))


def test_constant_after_warmup() -> None:
    assert [lr_factor(s, total=10, warmup=0, kind="constant") for s in range(12)] == [1.0] * 12


# --- optimizer -----------------------------------------------------------------------------------


def test_no_weight_decay_on_biases_and_norms() -> None:
    model = _model()
    optimizer = build_optimizer(model, TrainConfig(weight_decay=0.1))
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1
    assert no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"])
    assert all(p.ndim <= 1 for p in no_decay["params"])
    ids = {id(p) for group in (decay, no_decay) for p in group["params"]}
    assert ids == {id(p) for p in model.parameters()}
    assert len(decay["params"]) == 2  # the two linear weights
    assert len(no_decay["params"]) == 3  # norm weight and bias, last linear bias


def test_frozen_parameters_are_left_out() -> None:
    model = _model()
    model[0].weight.requires_grad_(False)
    optimizer = build_optimizer(model, TrainConfig())
    ids = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model[0].weight) not in ids


def test_adamw_is_the_default() -> None:
    optimizer = build_optimizer(_model(), TrainConfig(learning_rate=0.02))
    assert type(optimizer) is torch.optim.AdamW
    assert all(group["lr"] == 0.02 for group in optimizer.param_groups)


def test_sgd_uses_nesterov_momentum() -> None:
    cfg = TrainConfig(optimizer="sgd", learning_rate=0.1, momentum=0.8)
    optimizer = build_optimizer(_model(), cfg)
    assert type(optimizer) is torch.optim.SGD
    for group in optimizer.param_groups:
        assert (group["lr"], group["momentum"], group["nesterov"]) == (0.1, 0.8, True)


# --- schedulers ----------------------------------------------------------------------------------


def test_cosine_scheduler_with_warmup_follows_lr_factor() -> None:
    model = _model()
    cfg = TrainConfig(learning_rate=0.1, epochs=2, warmup_epochs=0.5)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=4)
    lrs = _train(model, optimizer, scheduler, 8)
    expected = [0.1 * lr_factor(s, total=8, warmup=2, kind="cosine") for s in range(8)]
    assert lrs == pytest.approx(expected)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.01)  # after the last step
    assert lrs[0] == pytest.approx(0.05)  # warmup starts at 1/warmup of the peak


def test_constant_scheduler() -> None:
    model = _model()
    cfg = TrainConfig(learning_rate=0.1, epochs=1, scheduler="constant")
    optimizer = build_optimizer(model, cfg)
    lrs = _train(model, optimizer, build_scheduler(optimizer, cfg, steps_per_epoch=5), 5)
    assert lrs == pytest.approx([0.1] * 5)


@pytest.mark.parametrize("optimizer_name", ["adamw", "sgd"])
def test_onecycle_steps_through_every_step(optimizer_name: str) -> None:
    model = _model()
    cfg = TrainConfig(learning_rate=0.1, epochs=3, scheduler="onecycle", optimizer=optimizer_name)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=4)
    lrs = _train(model, optimizer, scheduler, 12)  # every optimizer step of the run
    assert max(lrs) <= 0.1 + 1e-9
    assert max(lrs) > 0.09  # reaches (close to) the peak
    assert lrs[0] < 0.01 and lrs[-1] < 0.01  # starts and ends low
