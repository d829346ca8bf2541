"""Golden tests: post-hoc re-balancing pinned to hand-computed values (arithmetic in comments)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from viewfinder.errors import UserError
from viewfinder.models.rebalance import (
    DEFAULT_TAUS,
    METRICS,
    adjust_logits,
    confusion_matrix,
    log_prior,
    metric_fn,
    tau_normalize,
    tune_class_bias,
    tune_tau,
    tune_tau_norm,
)

# --- logit adjustment ----------------------------------------------------------------------------

# counts 80 / 15 / 5 -> prior 0.8 / 0.15 / 0.05
LOG_PRIOR = [math.log(0.8), math.log(0.15), math.log(0.05)]  # -0.22314, -1.89712, -2.99573


def test_log_prior_by_hand() -> None:
    assert log_prior([80, 15, 5]).tolist() == pytest.approx(LOG_PRIOR, abs=1e-6)
    # An empty class counts as 1: 3 / 1 / 1 of 5, so it is finite, not -inf.
    assert log_prior([3, 0, 1]).tolist() == pytest.approx(
        [math.log(0.6), math.log(0.2), math.log(0.2)], abs=1e-6
    )


def test_adjust_logits_by_hand() -> None:
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, -1.0]])
    # tau = 1: logits - log prior = logits + [0.22314, 1.89712, 2.99573]
    expected = [
        [1.0 + 0.2231436, 1.8971200, 2.9957323],
        [0.2231436, 2.0 + 1.8971200, -1.0 + 2.9957323],
    ]
    assert adjust_logits(logits, [80, 15, 5], 1.0).tolist() == pytest.approx(
        [pytest.approx(row, abs=1e-6) for row in expected]
    )
    # tau = 0.5 moves half as far; tau = 0 changes nothing.
    half = adjust_logits(logits, [80, 15, 5], 0.5)
    assert half[0].tolist() == pytest.approx([1.1115718, 0.9485600, 1.4978661], abs=1e-6)
    assert torch.equal(adjust_logits(logits, [80, 15, 5], 0.0), logits)
    assert adjust_logits(logits.double(), [80, 15, 5], 1.0).dtype == torch.float64


def test_adjust_logits_rejects_mismatched_counts() -> None:
    with pytest.raises(ValueError, match="classes"):
        adjust_logits(torch.zeros(2, 3), [1, 2], 1.0)


# A head-biased model: true class y scores 1.0 on its own logit, plus the training log prior.
# counts 90 / 9 / 1; 10 validation samples per class.
COUNTS = [90, 9, 1]


def _biased_logits() -> tuple[torch.Tensor, torch.Tensor]:
    targets = torch.arange(3).repeat_interleave(10)
    logits = torch.nn.functional.one_hot(targets, 3).float() + log_prior(COUNTS)
    return logits, targets


def test_tune_tau_fixes_a_head_biased_model() -> None:
    logits, targets = _biased_logits()
    tau, history = tune_tau(logits, targets, COUNTS)
    # tau = 0: everything is predicted as class 0 -> F1 = 20 / 40 = 0.5, 0, 0 -> macro 1/6.
    assert history[0] == (0.0, pytest.approx(1 / 6))
    # Class 2 beats class 0 on its own samples once 1 - (1 - tau) * log 90 > 0, i.e.
    # tau > 1 - 1 / 4.4998 = 0.7778 (the tightest of the six pairwise conditions); the upper
    # limit is 1 + 1 / log 90 = 1.222. So 0.8 is the smallest grid tau with macro F1 = 1.
    assert tau == pytest.approx(0.8)
    assert dict(history)[tau] == pytest.approx(1.0)
    assert [t for t, _ in history] == list(DEFAULT_TAUS)


def test_ties_prefer_no_adjustment() -> None:
    logits, targets = _biased_logits()
    # Equal counts: the prior is flat, every tau predicts the same, so tau = 0 wins.
    tau, history = tune_tau(logits, targets, [5, 5, 5], metric="accuracy")
    assert tau == 0.0
    assert len({score for _, score in history}) == 1


def test_tune_tau_custom_grid_and_bad_input() -> None:
    logits, targets = _biased_logits()
    tau, history = tune_tau(logits, targets, COUNTS, taus=[1.0, 0.0, 0.5], metric="accuracy")
    assert [t for t, _ in history] == [0.0, 0.5, 1.0]
    assert tau == 1.0
    with pytest.raises(UserError, match="did you mean 'macro_f1'"):
        tune_tau(logits, targets, COUNTS, metric="macro-f1")
    with pytest.raises(UserError, match="empty"):
        tune_tau(logits, targets, COUNTS, taus=[])
    with pytest.raises(UserError, match="validation"):
        tune_tau(logits[:0], targets[:0], COUNTS)


# --- per-class bias ------------------------------------------------------------------------------

# Equal counts, so logit adjustment can change nothing; class 2's samples lose to class 0.
BIAS_LOGITS = torch.tensor(
    [[2, 0, 0], [2, 0, 1.25], [0, 2, 0], [0, 2, 0], [1, 0, 0.5], [1, 0, 0.6]]
)
BIAS_TARGETS = torch.tensor([0, 0, 1, 1, 2, 2])


def test_class_bias_moves_one_threshold_that_logit_adjustment_cannot() -> None:
    offsets, best, history = tune_class_bias(BIAS_LOGITS, BIAS_TARGETS, [5, 5, 5])
    # Start (tau = 0): predictions 0 0 1 1 0 0 -> F1 = 4/6, 1, 0 -> macro 5/9.
    assert history[0]["tau"] == 0.0 and history[0]["score"] == pytest.approx(5 / 9)
    # Class 0 first, grid ascending from -3 (an offset d on class 0). d <= -2.1 loses sample 0
    # to class 1; d = -2.0 ties it (argmax keeps class 0) and predicts 0 2 1 1 2 2 ->
    # F1 = 2/3, 1, 4/5 -> macro 37/45, the first improvement. Both class-2 samples are right when
    # 1 + d < 0.5 and sample 1 stays class 0 when 2 + d > 1.25: -0.75 < d < -0.5, first grid
    # value -0.7 -> macro F1 1.0, which nothing can beat.
    assert [(h["class"], h["offset"]) for h in history[1:]] == [(0, -2.0), (0, -0.7)]
    assert history[1]["score"] == pytest.approx(37 / 45)
    assert best == pytest.approx(1.0)
    assert offsets.tolist() == pytest.approx([-0.7, 0.0, 0.0])


def test_class_bias_starts_from_logit_adjustment_and_never_scores_below_it() -> None:
    logits, targets = _biased_logits()
    offsets, best, history = tune_class_bias(logits, targets, COUNTS)
    # Already perfect after logit adjustment (tau 0.8): no change is accepted.
    assert history[0]["tau"] == pytest.approx(0.8) and len(history) == 1
    assert offsets.tolist() == pytest.approx((-0.8 * log_prior(COUNTS)).tolist())
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        noisy = torch.randn(60, 4, generator=generator)
        labels = torch.randint(0, 4, (60,), generator=generator)
        counts = [40, 10, 5, 1]
        tau, table = tune_tau(noisy, labels, counts)
        _, best, _ = tune_class_bias(noisy, labels, counts)
        assert best >= dict(table)[tau]


# --- metrics against scikit-learn ----------------------------------------------------------------


def test_metrics_by_hand() -> None:
    # targets 0 0 0 1 1 1 2 2, predictions 0 0 0 1 0 2 2 1 (the classification golden case)
    targets = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    predictions = torch.tensor([0, 0, 0, 1, 0, 2, 2, 1])
    matrix = confusion_matrix(predictions, targets, 4)  # class 3 absent from both sides
    assert matrix[:3, :3].tolist() == [[3, 0, 0], [1, 1, 1], [0, 1, 1]]
    # F1: 6/7, 2/5, 1/2 (class 3 left out); weighted by support 3, 3, 2.
    assert metric_fn("macro_f1")(matrix) == pytest.approx((6 / 7 + 2 / 5 + 1 / 2) / 3)
    assert metric_fn("weighted_f1")(matrix) == pytest.approx((3 * 6 / 7 + 3 * 2 / 5 + 1) / 8)
    assert metric_fn("accuracy")(matrix) == pytest.approx(5 / 8)
    assert metric_fn("balanced_accuracy")(matrix) == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)


def test_metrics_equal_sklearn_on_random_cases() -> None:
    sk_metrics = pytest.importorskip("sklearn.metrics")
    reference = {
        "macro_f1": lambda y, p: sk_metrics.f1_score(y, p, average="macro", zero_division=0),
        "weighted_f1": lambda y, p: sk_metrics.f1_score(y, p, average="weighted", zero_division=0),
        "accuracy": sk_metrics.accuracy_score,
        "balanced_accuracy": sk_metrics.balanced_accuracy_score,
    }
    rng = np.random.default_rng(0)
    for case in range(25):
        num_classes = int(rng.integers(2, 8))
        size = int(rng.integers(1, 40))
        # Some cases draw from a subset so classes go missing from one or both sides.
        high = num_classes if case % 2 else max(1, num_classes - 2)
        y = rng.integers(0, high, size)
        p = rng.integers(0, num_classes, size)
        matrix = confusion_matrix(torch.from_numpy(p), torch.from_numpy(y), num_classes)
        for name in METRICS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # sklearn warns about classes only predicted
                expected = reference[name](y, p)
            assert metric_fn(name)(matrix) == pytest.approx(expected, abs=1e-12), (name, y, p)


# --- tau-normalised classifier -------------------------------------------------------------------

WEIGHT = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])  # row norms 5, 0, 1


def test_tau_normalize_by_hand() -> None:
    assert torch.equal(tau_normalize(WEIGHT, 0.0), WEIGHT)
    unit = tau_normalize(WEIGHT, 1.0)
    assert unit[0].tolist() == pytest.approx([0.6, 0.8], abs=1e-7)  # float32 of 3/5, 4/5
    assert unit[1:].tolist() == [[0.0, 0.0], [1.0, 0.0]]
    # tau = 0.5: divide by sqrt(5) = 2.2360680
    half = tau_normalize(WEIGHT, 0.5)
    assert half[0].tolist() == pytest.approx([1.3416408, 1.7888544], abs=1e-6)
    assert half[1:].tolist() == [[0.0, 0.0], [1.0, 0.0]]
    with pytest.raises(ValueError, match=r"\(C, D\)"):
        tau_normalize(torch.ones(3), 1.0)


def test_tune_tau_norm_shrinks_the_head_weight() -> None:
    # Head class 0 has weight norm 4, tail class 1 norm 1. Class 1 samples [0.5, 1.0] score
    # 0.5 * 4 ** (1 - tau) vs 1.0 -> correct once 4 ** (1 - tau) < 2, i.e. tau > 0.5 (at 0.5 they
    # tie and arg-max takes class 0). Class 0 samples [1.0, 0.5] stay right for every tau <= 2.
    layer = torch.nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[4.0, 0.0], [0.0, 1.0]]))
        layer.bias.zero_()
    features = torch.tensor([[1.0, 0.5], [1.0, 0.5], [0.5, 1.0], [0.5, 1.0]])
    targets = torch.tensor([0, 0, 1, 1])
    tau, history = tune_tau_norm(features, layer.weight, layer.bias, targets)
    # tau = 0: all predicted 0 -> F1 = 4 / 6 = 2/3 and 0 -> macro 1/3.
    assert history[0] == (0.0, pytest.approx(1 / 3))
    assert tau == pytest.approx(0.6)
    assert dict(history)[tau] == pytest.approx(1.0)
    assert tune_tau_norm(features, layer.weight, None, targets)[0] == pytest.approx(0.6)


def test_tune_tau_norm_keeps_the_bias_so_tau_zero_is_the_model() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(5, 4)
    features = torch.randn(30, 5)
    targets = torch.randint(0, 4, (30,))
    _, history = tune_tau_norm(features, layer.weight, layer.bias, targets, metric="accuracy")
    with torch.no_grad():
        model_accuracy = (layer(features).argmax(dim=1) == targets).float().mean().item()
    assert history[0] == (0.0, pytest.approx(model_accuracy))
    with pytest.raises(ValueError, match="bias"):
        tune_tau_norm(features, layer.weight, torch.zeros(3), targets)
