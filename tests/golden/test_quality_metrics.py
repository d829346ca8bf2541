"""MOS metrics pinned to hand-computed values (the camera image-quality challenge's score)."""

from __future__ import annotations

import math

import pytest
import torch

from viewfinder.metrics.quality import QualityMetrics, mos_score, quality_scores


def _scores(predicted: list[float], target: list[float]) -> dict[str, float]:
    return quality_scores(torch.tensor(predicted), torch.tensor(target))


def test_five_images_by_hand() -> None:
    # deviations p = -2,-1,0,1,2 and t = -1,-2,1,0,2: sum p*t = 8, sum p^2 = sum t^2 = 10
    s = _scores([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert s["plcc"] == pytest.approx(0.8)
    assert s["srcc"] == pytest.approx(0.8)  # the values are their own ranks
    assert s["krcc"] == pytest.approx(0.6)  # 8 concordant, 2 discordant of 10 pairs
    assert s["rmse"] == pytest.approx(math.sqrt(4 / 5))
    assert s["mos_score"] == pytest.approx(0.8)


def test_ties_average_ranks_and_tau_b() -> None:
    s = _scores([1, 1, 2, 3], [1, 2, 3, 4])
    # ranks 1.5,1.5,3,4 vs 1..4: 4.5 / sqrt(4.5 * 5)
    assert s["srcc"] == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    # 5 concordant pairs, 1 tied in the prediction: 5 / sqrt((6 - 1) * 6)
    assert s["krcc"] == pytest.approx(5 / math.sqrt(30))


def test_negative_correlations_count_as_zero() -> None:
    s = _scores([5, 4, 3, 2, 1], [1, 2, 3, 4, 5])
    assert s["plcc"] == pytest.approx(-1) and s["srcc"] == pytest.approx(-1)
    assert s["mos_score"] == 0.0
    assert mos_score(-0.3, 0.5) == pytest.approx(0.25)
    assert mos_score(0.6, 0.8) == pytest.approx(0.7)


def test_evaluate_prints_a_negative_correlation_as_counted_zero() -> None:
    from viewfinder.cli import _challenge_scores

    line = _challenge_scores({"mos_score": mos_score(-0.3, 0.5), "plcc": -0.3, "srcc": 0.5})
    assert "MOS score 0.2500 = (max(0, PLCC -0.3000) + SRCC 0.5000) / 2" in line


def test_undefined_correlations_score_zero() -> None:
    assert _scores([3, 3, 3], [1, 2, 3])["mos_score"] == 0.0  # a constant prediction
    one = _scores([3], [4])
    assert (one["plcc"], one["rmse"]) == (0.0, pytest.approx(1.0))


def test_accumulator_over_batches_equals_the_whole_set() -> None:
    metrics = QualityMetrics()
    predicted, target = [1.0, 2, 3, 4, 5], [2.0, 1, 4, 3, 5]
    for start in (0, 2, 4):
        batch = {"target": torch.tensor(target[start : start + 2])}
        metrics.update(torch.tensor(predicted[start : start + 2]), batch)
    assert metrics.compute() == pytest.approx(_scores(predicted, target))
