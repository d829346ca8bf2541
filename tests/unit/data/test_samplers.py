from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from torch.utils.data import DataLoader

from viewfinder.data.sampling import (
    SAMPLERS,
    RepeatFactorSampler,
    WeightedEpochSampler,
    build_sampler,
    sample_weights,
    stratified_kfold,
)
from viewfinder.errors import UserError

# A 100:10:1 long tail.
LONG_TAIL = [0] * 100 + [1] * 10 + [2]


def class_fractions(indices: list[int], labels: list) -> dict:
    counts = Counter(labels[i] for i in indices)
    return {c: counts[c] / len(indices) for c in sorted(set(labels))}


# --- sample_weights ---------------------------------------------------------------------------


def test_inverse_sample_weights_give_every_class_the_same_total() -> None:
    weights = sample_weights(LONG_TAIL, "inverse")
    assert weights.mean() == pytest.approx(1.0)
    totals = [weights[np.asarray(LONG_TAIL) == c].sum() for c in (0, 1, 2)]
    assert totals == pytest.approx([37.0, 37.0, 37.0])


def test_sample_weights_accept_names_and_order_sqrt_between() -> None:
    weights = sample_weights(["cat", "cat", "cat", "cat", "dog"], "sqrt")
    assert weights.tolist() == pytest.approx([5 / 6] * 4 + [5 / 3])
    with pytest.raises(UserError, match="no training labels"):
        sample_weights([], "inverse")


# --- WeightedEpochSampler ---------------------------------------------------------------------


def draw(sampler: WeightedEpochSampler | RepeatFactorSampler, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_weighted_sampler_is_a_function_of_seed_and_epoch() -> None:
    weights = sample_weights(LONG_TAIL, "inverse")
    first = WeightedEpochSampler(weights, seed=3)
    again = WeightedEpochSampler(weights, seed=3)
    assert len(first) == len(LONG_TAIL)
    assert draw(first, 5) == draw(again, 5) == draw(first, 5)
    assert draw(first, 5) != draw(first, 6)
    assert draw(first, 5) != draw(WeightedEpochSampler(weights, seed=4), 5)


def test_resuming_mid_epoch_replays_the_same_batches() -> None:
    weights = sample_weights(LONG_TAIL, "sqrt")
    original = WeightedEpochSampler(weights, seed=0)
    original.set_epoch(2)
    batches = [b.tolist() for b in DataLoader(range(len(LONG_TAIL)), 8, sampler=original)]
    resumed = WeightedEpochSampler(weights, seed=0)  # a fresh process after an interruption
    resumed.set_epoch(2)
    replay = [b.tolist() for b in DataLoader(range(len(LONG_TAIL)), 8, sampler=resumed)]
    assert replay[3:] == batches[3:]


def test_inverse_sampling_balances_a_long_tail() -> None:
    sampler = WeightedEpochSampler(sample_weights(LONG_TAIL, "inverse"), 3000, seed=0)
    fractions = class_fractions(draw(sampler, 0), LONG_TAIL)
    # expected 1/3 each; one standard deviation is ~0.009, the bound is ~5
    assert all(abs(f - 1 / 3) < 0.05 for f in fractions.values()), fractions


def test_sqrt_and_effective_sit_between_uniform_and_balanced() -> None:
    sqrt = WeightedEpochSampler(sample_weights(LONG_TAIL, "sqrt"), 3000, seed=0)
    fractions = class_fractions(draw(sqrt, 0), LONG_TAIL)
    # class mass proportional to sqrt(n): 10 : 3.16 : 1 -> 0.702, 0.222, 0.070
    assert fractions[0] == pytest.approx(0.702, abs=0.05)
    assert fractions[2] == pytest.approx(0.070, abs=0.03)
    effective = WeightedEpochSampler(sample_weights(LONG_TAIL, "effective"), 3000, seed=0)
    assert class_fractions(draw(effective, 0), LONG_TAIL)[2] > 0.2  # near-balanced at 0.999


def test_zero_weight_is_never_drawn_and_bad_weights_fail() -> None:
    sampler = WeightedEpochSampler([1.0, 0.0, 1.0], 200, seed=1)
    assert 1 not in draw(sampler, 0)
    for bad in ([], [0.0, 0.0], [1.0, -1.0], [1.0, float("nan")]):
        with pytest.raises(UserError, match="sampling weights"):
            WeightedEpochSampler(bad)


# --- RepeatFactorSampler ----------------------------------------------------------------------


def test_repeat_factors_follow_the_lvis_rule() -> None:
    # default threshold 1/3 classes; f = 100/111, 10/111, 1/111 -> r = 1, sqrt(111/30), sqrt(37)
    sampler = RepeatFactorSampler(LONG_TAIL, seed=0)
    assert sampler.threshold == pytest.approx(1 / 3)
    factors = sampler.repeat_factors.tolist()
    assert factors[0] == 1.0 and factors[100] == pytest.approx(math.sqrt(111 / 30))
    assert factors[110] == pytest.approx(math.sqrt(37))
    assert sampler.expected_length == pytest.approx(100 + 10 * math.sqrt(111 / 30) + math.sqrt(37))


def test_repeat_factor_repeats_the_tail_and_keeps_every_head_image() -> None:
    sampler = RepeatFactorSampler(LONG_TAIL, seed=0)
    tail_copies = []
    for epoch in range(100):
        order = draw(sampler, epoch)
        assert len(order) == len(sampler)
        copies = Counter(order)
        assert all(copies[i] == 1 for i in range(100))  # head: exactly once, every epoch
        assert all(copies[i] in (1, 2) for i in range(100, 110))
        assert copies[110] in (6, 7)
        tail_copies.append(copies[110])
    assert np.mean(tail_copies) == pytest.approx(math.sqrt(37), abs=0.15)


def test_repeat_factor_is_deterministic_and_shuffled_per_epoch() -> None:
    first, again = RepeatFactorSampler(LONG_TAIL, seed=5), RepeatFactorSampler(LONG_TAIL, seed=5)
    assert draw(first, 1) == draw(again, 1)
    assert draw(first, 1) != draw(first, 2)
    assert draw(first, 1) != sorted(draw(first, 1))


def test_repeat_factor_leaves_balanced_data_alone_and_takes_a_threshold() -> None:
    balanced = RepeatFactorSampler(["a"] * 10 + ["b"] * 10 + ["c"] * 10, seed=0)
    assert sorted(draw(balanced, 0)) == list(range(30))
    fixed = RepeatFactorSampler(LONG_TAIL, threshold=0.1, seed=0)
    assert fixed.repeat_factors[110] == pytest.approx(math.sqrt(11.1))
    for bad in (0.0, 1.5):
        with pytest.raises(UserError, match="repeat_threshold"):
            RepeatFactorSampler(LONG_TAIL, threshold=bad)


# --- build_sampler ----------------------------------------------------------------------------


def test_build_sampler_names() -> None:
    assert SAMPLERS.names() == ["effective", "inverse", "repeat_factor", "sqrt", "uniform"]
    assert build_sampler("uniform", LONG_TAIL, seed=0) is None
    inverse = build_sampler("inverse", LONG_TAIL, seed=7)
    assert isinstance(inverse, WeightedEpochSampler) and inverse.seed == 7
    assert len(inverse) == len(LONG_TAIL)
    repeat = build_sampler("repeat_factor", LONG_TAIL, seed=0, repeat_threshold=0.2)
    assert isinstance(repeat, RepeatFactorSampler) and repeat.threshold == 0.2


def test_unknown_sampler_lists_the_choices() -> None:
    with pytest.raises(UserError, match=r"unknown sampler 'repeat'.*choose from: effective"):
        build_sampler("repeat", LONG_TAIL, seed=0)


# --- stratified_kfold -------------------------------------------------------------------------

LABELS = ["a"] * 23 + ["b"] * 11 + ["c"] * 7 + ["d"] * 3 + ["e"] * 2 + ["f"]


@pytest.mark.parametrize("folds", [2, 5])
def test_every_sample_is_out_of_fold_exactly_once(folds: int) -> None:
    result = stratified_kfold(LABELS, folds, seed=0)
    assert len(result) == folds
    held_out = [i for _, val in result for i in val]
    assert sorted(held_out) == list(range(len(LABELS)))
    for train, val in result:
        assert not set(train) & set(val)
        assert sorted(train + val) == list(range(len(LABELS)))
        assert train == sorted(train) and val == sorted(val)


def test_classes_and_folds_are_spread_evenly() -> None:
    result = stratified_kfold(LABELS, 5, seed=1)
    for label in set(LABELS):
        per_fold = [sum(LABELS[i] == label for i in val) for _, val in result]
        assert max(per_fold) - min(per_fold) <= 1, (label, per_fold)
    sizes = [len(val) for _, val in result]
    assert max(sizes) - min(sizes) <= 1


def test_small_classes_do_not_all_land_in_fold_zero() -> None:
    result = stratified_kfold(["a", "b", "c", "d", "e", "f"], 3, seed=0)
    assert [len(val) for _, val in result] == [2, 2, 2]


def test_kfold_is_deterministic_and_seed_dependent() -> None:
    assert stratified_kfold(LABELS, 4, seed=2) == stratified_kfold(LABELS, 4, seed=2)
    assert stratified_kfold(LABELS, 4, seed=2) != stratified_kfold(LABELS, 4, seed=3)


@pytest.mark.parametrize("folds", [1, 0, len(LABELS) + 1, 2.5, True])
def test_bad_fold_counts_are_user_errors(folds: object) -> None:
    with pytest.raises(UserError, match="folds="):
        stratified_kfold(LABELS, folds, seed=0)  # type: ignore[arg-type]
