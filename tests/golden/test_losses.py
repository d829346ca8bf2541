"""Golden tests: every loss and class-weight scheme pinned to values worked out in plain Python.

The expected values use math.log / math.exp on lists, never the torch code under test; one test
cross-checks weighted cross-entropy against ``F.cross_entropy``. Losses run in float32, hence the
1e-5 tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from viewfinder.errors import UserError
from viewfinder.training.losses import (
    BalancedSoftmaxLoss,
    CrossEntropy,
    FocalLoss,
    LogitAdjustedLoss,
    class_weights,
    log_prior,
)

TOL = 1e-5

# 3 samples, 3 classes.
LOGITS = [[2.0, 1.0, 0.0], [0.5, 0.5, 1.5], [-1.0, 0.0, 3.0]]
TARGETS = [0, 1, 2]
# Soft targets (as mixup would make): each row sums to 1.
SOFT = [[0.7, 0.3, 0.0], [0.0, 0.5, 0.5], [0.2, 0.2, 0.6]]
WEIGHT = [0.5, 2.0, 1.0]
COUNTS = [6, 3, 1]


def log_softmax(row: list[float]) -> list[float]:
    log_sum = math.log(sum(math.exp(v) for v in row))
    return [v - log_sum for v in row]


def smooth(dist: list[float], eps: float) -> list[float]:
    return [(1 - eps) * t + eps / len(dist) for t in dist]


def one_hot(index: int, size: int = 3) -> list[float]:
    return [1.0 if c == index else 0.0 for c in range(size)]


def run(loss: torch.nn.Module, logits: list[list[float]], target: list) -> float:
    return float(loss(torch.tensor(logits), torch.tensor(target)))


# --- cross-entropy -----------------------------------------------------------------------------


def test_ce_of_equal_logits_is_log_num_classes() -> None:
    assert run(CrossEntropy(), [[0.0, 0.0, 0.0]], [1]) == pytest.approx(math.log(3), abs=TOL)
    # [2, 1, 0] with target 0: -log(e^2 / (e^2 + e + 1)) = log(1 + e^-1 + e^-2) = 0.4076059644
    assert run(CrossEntropy(), [[2.0, 1.0, 0.0]], [0]) == pytest.approx(0.4076059644, abs=TOL)


def test_ce_hard_targets_is_mean_nll() -> None:
    nll = [-log_softmax(row)[y] for row, y in zip(LOGITS, TARGETS, strict=True)]
    assert run(CrossEntropy(), LOGITS, TARGETS) == pytest.approx(sum(nll) / 3, abs=TOL)


def test_weighted_ce_divides_by_the_sum_of_target_weights() -> None:
    nll = [-log_softmax(row)[y] for row, y in zip(LOGITS, TARGETS, strict=True)]
    w_y = [WEIGHT[y] for y in TARGETS]  # 0.5, 2.0, 1.0
    expected = sum(w * n for w, n in zip(w_y, nll, strict=True)) / sum(w_y)
    assert run(CrossEntropy(weight=torch.tensor(WEIGHT)), LOGITS, TARGETS) == pytest.approx(
        expected, abs=TOL
    )


def test_weighted_smoothed_ce_matches_torch() -> None:
    """The one cross-check against torch: same semantics as F.cross_entropy(weight=...)."""
    logits, targets, weight = torch.tensor(LOGITS), torch.tensor(TARGETS), torch.tensor(WEIGHT)
    for eps in (0.0, 0.2):
        ours = CrossEntropy(weight=weight, label_smoothing=eps)(logits, targets)
        reference = F.cross_entropy(logits, targets, weight=weight, label_smoothing=eps)
        assert float(ours) == pytest.approx(float(reference), abs=TOL)


def test_ce_label_smoothing_hard_targets_by_hand() -> None:
    # per sample: (1 - eps) w_y (-log p_y) + eps/C sum_c w_c (-log p_c); divided by sum w_y
    eps = 0.2
    numerator = 0.0
    for row, y in zip(LOGITS, TARGETS, strict=True):
        lp = log_softmax(row)
        numerator += (1 - eps) * WEIGHT[y] * -lp[y]
        numerator += eps / 3 * sum(w * -p for w, p in zip(WEIGHT, lp, strict=True))
    expected = numerator / (0.5 + 2.0 + 1.0)
    loss = CrossEntropy(weight=torch.tensor(WEIGHT), label_smoothing=eps)
    assert run(loss, LOGITS, TARGETS) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_ce_soft_targets_are_weighted_sums_averaged_over_the_batch(eps: float) -> None:
    total = 0.0
    for row, dist in zip(LOGITS, SOFT, strict=True):
        lp = log_softmax(row)
        total += sum(w * t * -p for w, t, p in zip(WEIGHT, smooth(dist, eps), lp, strict=True))
    loss = CrossEntropy(weight=torch.tensor(WEIGHT), label_smoothing=eps)
    assert run(loss, LOGITS, SOFT) == pytest.approx(total / 3, abs=TOL)


def test_ce_one_hot_soft_targets_equal_hard_targets_when_unweighted() -> None:
    soft = [one_hot(y) for y in TARGETS]
    loss = CrossEntropy(label_smoothing=0.1)
    assert run(loss, LOGITS, soft) == pytest.approx(run(loss, LOGITS, TARGETS), abs=TOL)


def test_ce_batch_of_only_zero_weight_classes_is_finite() -> None:
    # class 1 had no training images (weight 0); a batch of only class 1 must not give 0 / 0
    weight = class_weights([4, 0, 2], "inverse")
    lp = log_softmax(LOGITS[0])
    # nll terms have weight 0; smoothing term eps/C sum_c w_c (-log p_c), divided by batch size 1
    expected = 0.1 / 3 * sum(float(w) * -p for w, p in zip(weight, lp, strict=True))
    loss = CrossEntropy(weight=weight, label_smoothing=0.1)
    assert run(loss, [LOGITS[0]], [1]) == pytest.approx(expected, abs=TOL)


# --- focal -------------------------------------------------------------------------------------


def focal_by_hand(dist_rows: list[list[float]], gamma: float, weight: list[float]) -> float:
    total = 0.0
    for row, dist in zip(LOGITS, dist_rows, strict=True):
        lp = log_softmax(row)
        for c in range(3):
            p = math.exp(lp[c])
            total += weight[c] * dist[c] * (1 - p) ** gamma * -lp[c]
    return total / len(dist_rows)


def test_focal_hard_targets_by_hand() -> None:
    # -(1 - p_y)^2 log p_y, averaged; first sample: p_0 = e^2/(e^2+e+1) = 0.6652409558
    first = (1 - 0.6652409558) ** 2 * 0.4076059644
    assert run(FocalLoss(gamma=2.0), [LOGITS[0]], [0]) == pytest.approx(first, abs=TOL)
    expected = focal_by_hand([one_hot(y) for y in TARGETS], 2.0, [1.0, 1.0, 1.0])
    assert run(FocalLoss(gamma=2.0), LOGITS, TARGETS) == pytest.approx(expected, abs=TOL)


def test_weighted_focal_averages_over_samples() -> None:
    expected = focal_by_hand([one_hot(y) for y in TARGETS], 2.0, WEIGHT)
    loss = FocalLoss(gamma=2.0, weight=torch.tensor(WEIGHT))
    assert run(loss, LOGITS, TARGETS) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_focal_soft_targets_and_smoothing(eps: float) -> None:
    expected = focal_by_hand([smooth(d, eps) for d in SOFT], 1.5, WEIGHT)
    loss = FocalLoss(gamma=1.5, weight=torch.tensor(WEIGHT), label_smoothing=eps)
    assert run(loss, LOGITS, SOFT) == pytest.approx(expected, abs=TOL)
    smoothed_hard = focal_by_hand([smooth(one_hot(y), eps) for y in TARGETS], 1.5, WEIGHT)
    assert run(loss, LOGITS, TARGETS) == pytest.approx(smoothed_hard, abs=TOL)


def test_focal_with_gamma_zero_is_cross_entropy() -> None:
    assert run(FocalLoss(gamma=0.0), LOGITS, TARGETS) == pytest.approx(
        run(CrossEntropy(), LOGITS, TARGETS), abs=TOL
    )


# --- balanced softmax and logit adjustment ------------------------------------------------------


def prior_adjusted_nll(row: list[float], y: int, counts: list[float], tau: float) -> float:
    """-log(pi_y^tau e^z_y / sum_c pi_c^tau e^z_c), the form written in the papers."""
    total = sum(counts)
    scaled = [(n / total) ** tau * math.exp(z) for n, z in zip(counts, row, strict=True)]
    return -math.log(scaled[y] / sum(scaled))


def mean_prior_adjusted_nll(counts: list[float], tau: float) -> float:
    pairs = zip(LOGITS, TARGETS, strict=True)
    return sum(prior_adjusted_nll(row, y, counts, tau) for row, y in pairs) / len(TARGETS)


def test_balanced_softmax_by_hand() -> None:
    expected = mean_prior_adjusted_nll(COUNTS, 1.0)
    assert run(BalancedSoftmaxLoss(COUNTS), LOGITS, TARGETS) == pytest.approx(expected, abs=TOL)
    # one pinned number: logits 0, counts 6:3:1, target 2 -> -log(0.1) = 2.302585093
    assert run(BalancedSoftmaxLoss(COUNTS), [[0.0, 0.0, 0.0]], [2]) == pytest.approx(
        2.302585093, abs=TOL
    )


def test_logit_adjusted_by_hand_and_tau_one_is_balanced_softmax() -> None:
    expected = mean_prior_adjusted_nll(COUNTS, 2.0)
    assert run(LogitAdjustedLoss(COUNTS, tau=2.0), LOGITS, TARGETS) == pytest.approx(
        expected, abs=TOL
    )
    assert run(LogitAdjustedLoss(COUNTS, tau=1.0), LOGITS, TARGETS) == pytest.approx(
        run(BalancedSoftmaxLoss(COUNTS), LOGITS, TARGETS), abs=TOL
    )
    assert run(LogitAdjustedLoss(COUNTS, tau=0.0), LOGITS, TARGETS) == pytest.approx(
        run(CrossEntropy(), LOGITS, TARGETS), abs=TOL
    )


def test_prior_adjusted_soft_targets_with_smoothing() -> None:
    eps, total = 0.1, 0.0
    log_pi = [math.log(n / 10) for n in COUNTS]
    for row, dist in zip(LOGITS, SOFT, strict=True):
        lp = log_softmax([z + 0.5 * lpi for z, lpi in zip(row, log_pi, strict=True)])
        total += sum(t * -p for t, p in zip(smooth(dist, eps), lp, strict=True))
    loss = LogitAdjustedLoss(COUNTS, tau=0.5, label_smoothing=eps)
    assert run(loss, LOGITS, SOFT) == pytest.approx(total / 3, abs=TOL)


def test_zero_counts_are_treated_as_one() -> None:
    assert log_prior([5, 0, 2]).tolist() == pytest.approx(
        [math.log(5 / 8), math.log(1 / 8), math.log(2 / 8)], abs=TOL
    )
    expected = mean_prior_adjusted_nll([5, 1, 2], 1.0)
    loss = BalancedSoftmaxLoss([5, 0, 2])
    assert run(loss, LOGITS, TARGETS) == pytest.approx(expected, abs=TOL)
    smoothed = BalancedSoftmaxLoss([5, 0, 2], label_smoothing=0.3)
    assert math.isfinite(run(smoothed, LOGITS, SOFT))


# --- class weights -----------------------------------------------------------------------------

# counts 4, 1, 0 -> sum n = 5; raw weights are scaled by 5 / sum(raw * n).
CLASS_WEIGHT_CASES = {
    "none": [1.0, 1.0, 0.0],  # raw 1, 1: sum raw*n = 5, scale 1
    "inverse": [0.625, 2.5, 0.0],  # raw 1/4, 1: sum raw*n = 2, scale 5/2
    "sqrt": [5 / 6, 5 / 3, 0.0],  # raw 1/2, 1: sum raw*n = 3, scale 5/3
    # beta = 0.5: raw (1-b)/(1-b^n) = 0.5/(15/16) = 8/15 and 0.5/0.5 = 1;
    # sum raw*n = 32/15 + 1 = 47/15, scale 75/47
    "effective": [40 / 47, 75 / 47, 0.0],
}


@pytest.mark.parametrize("scheme", sorted(CLASS_WEIGHT_CASES))
def test_class_weights_by_hand(scheme: str) -> None:
    weights = class_weights([4, 1, 0], scheme, beta=0.5)
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx(CLASS_WEIGHT_CASES[scheme], abs=1e-6)
    # the sample-weighted mean is 1: 4 w_0 + 1 w_1 + 0 w_2 == 5
    assert float(weights @ torch.tensor([4.0, 1.0, 0.0])) == pytest.approx(5.0, abs=1e-5)


def test_effective_number_spans_none_to_inverse() -> None:
    counts = [100, 10, 1, 0]
    assert class_weights(counts, "effective", beta=0.0).tolist() == pytest.approx(
        class_weights(counts, "none").tolist(), abs=1e-6
    )
    assert class_weights(counts, "effective", beta=0.999999).tolist() == pytest.approx(
        class_weights(counts, "inverse").tolist(), rel=1e-3
    )
    weights = class_weights(counts, "effective")
    assert torch.isfinite(weights).all() and weights[3] == 0
    assert weights[0] < weights[1] < weights[2]


def test_unknown_scheme_names_it_and_the_choices() -> None:
    with pytest.raises(UserError, match=r"'inverted'.*did you mean 'inverse'.*none, inverse"):
        class_weights([3, 1], "inverted")
