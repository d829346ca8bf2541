"""Long-tail views: frequency groups, per-group accuracy, confident mistakes and their grid."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from viewfinder.errors import UserError
from viewfinder.metrics.longtail import (
    confident_mistakes,
    frequency_groups,
    group_accuracy,
    plot_confident_mistakes,
)

# --- frequency_groups ----------------------------------------------------------------------------


def test_two_classes_are_head_and_tail() -> None:
    assert frequency_groups([10, 3]) == ["head", "tail"]
    assert frequency_groups([3, 10]) == ["tail", "head"]
    assert frequency_groups([5, 5]) == ["head", "tail"]  # tie: lower index is head


def test_zero_and_one_class() -> None:
    assert frequency_groups([]) == []
    assert frequency_groups([7]) == ["head"]


def test_three_classes_one_per_group_in_any_order() -> None:
    assert frequency_groups([1, 100, 10]) == ["tail", "head", "medium"]


def test_four_classes_put_the_extra_class_in_medium() -> None:
    # round(4 / 3) = 1 class each in head and tail, the remaining 2 in medium.
    assert frequency_groups([20, 100, 1, 50]) == ["medium", "head", "tail", "medium"]


def test_ten_classes_split_three_four_three() -> None:
    counts = [500, 300, 200, 120, 80, 60, 40, 20, 10, 5]
    assert frequency_groups(counts) == ["head"] * 3 + ["medium"] * 4 + ["tail"] * 3
    shuffled = [counts[i] for i in (9, 0, 5, 2, 7, 1, 3, 8, 4, 6)]
    expected = [frequency_groups(counts)[i] for i in (9, 0, 5, 2, 7, 1, 3, 8, 4, 6)]
    assert frequency_groups(shuffled) == expected


def test_ties_stay_in_one_group() -> None:
    # Ideal cuts after positions 2 and 4 would split the 10s; the tail cut moves to the 10|1 change.
    assert frequency_groups([50, 50, 10, 10, 10, 1]) == ["head"] * 2 + ["medium"] * 3 + ["tail"]
    # Both ideal cuts (1|2 and 3|4 of [10, 8, 8, 8, 1]) are inside the 8s: both move out.
    assert frequency_groups([10, 8, 8, 8, 1]) == ["head", "medium", "medium", "medium", "tail"]
    # A long tie run at the bottom: the cuts move up to the only two count changes.
    assert frequency_groups([9, 8, 7, 7, 7, 7, 7, 7]) == ["head", "medium"] + ["tail"] * 6


def test_all_equal_counts_still_fill_every_group_by_index() -> None:
    assert frequency_groups([5] * 6) == ["head"] * 2 + ["medium"] * 2 + ["tail"] * 2


def _brute_force(counts: list[int]) -> list[str]:
    """Every cut pair, same objective as the implementation: the reference for the search."""
    n = len(counts)
    order = sorted(range(n), key=lambda i: (-counts[i], i))
    ranked = [counts[i] for i in order]
    edge = max(1, (n + 1) // 3)
    ideal = (edge, n - edge)
    best = None
    for a, b in itertools.product(range(1, n), repeat=2):
        if not (a < b or (n == 2 and a == b)):
            continue
        splits = (ranked[a - 1] == ranked[a]) + (ranked[b - 1] == ranked[b])
        key = (splits, abs(a - ideal[0]) + abs(b - ideal[1]), a, -b)
        if best is None or key < best[0]:
            best = (key, a, b)
    groups = [""] * n
    for pos, index in enumerate(order):
        groups[index] = "head" if pos < best[1] else "medium" if pos < best[2] else "tail"
    return groups


def test_matches_a_full_search_and_fills_every_group() -> None:
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(2, 12)
        counts = [rng.choice([1, 2, 3, 5, 5, 8, 8, 8, 20]) for _ in range(n)]
        groups = frequency_groups(counts)
        assert groups == _brute_force(counts), counts
        if n >= 3:
            assert set(groups) == {"head", "medium", "tail"}
        assert frequency_groups(counts) == groups  # deterministic


def test_absolute_thresholds_follow_oltr() -> None:
    counts = [150, 101, 100, 50, 20, 19, 0]
    assert frequency_groups(counts, many=100, few=20) == [
        "head",
        "head",
        "medium",
        "medium",
        "medium",
        "tail",
        "tail",
    ]
    # Absolute thresholds may leave a group empty.
    assert frequency_groups([30, 40], many=100, few=20) == ["medium", "medium"]


def test_bad_thresholds_are_user_errors() -> None:
    with pytest.raises(UserError, match="both"):
        frequency_groups([1, 2, 3], many=100)
    with pytest.raises(UserError, match="few"):
        frequency_groups([1, 2, 3], many=10, few=50)


# --- group_accuracy ------------------------------------------------------------------------------

# Rows are the true class. Recalls: 8/10, 3/4, 1/2, 0/1, and class 4 has no samples.
CONFUSION = np.array(
    [
        [8, 2, 0, 0, 0],
        [1, 3, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
)
GROUPS = ["head", "head", "medium", "tail", "tail"]


def test_group_accuracy_is_mean_recall_per_group() -> None:
    result = group_accuracy(CONFUSION, GROUPS)
    # head: (0.8 + 0.75) / 2; medium: 0.5; tail: class 3 only (class 4 has no samples).
    assert result == pytest.approx(
        {"head_accuracy": 0.775, "medium_accuracy": 0.5, "tail_accuracy": 0.0}
    )
    assert group_accuracy(torch.tensor(CONFUSION), GROUPS) == pytest.approx(result)


def test_empty_groups_are_omitted() -> None:
    assert group_accuracy(np.array([[3, 1], [1, 1]]), ["head", "tail"]) == pytest.approx(
        {"head_accuracy": 0.75, "tail_accuracy": 0.5}
    )
    # A group whose only class has no samples has no accuracy either.
    result = group_accuracy(np.array([[3, 1], [0, 0]]), ["head", "tail"])
    assert result == pytest.approx({"head_accuracy": 0.75})


def test_group_accuracy_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="groups"):
        group_accuracy(CONFUSION, GROUPS[:3])
    with pytest.raises(ValueError, match="unknown"):
        group_accuracy(np.eye(2), ["head", "few"])


# --- confident_mistakes --------------------------------------------------------------------------

PROBS = np.array(
    [
        [0.90, 0.10],  # 0: right
        [0.20, 0.80],  # 1: wrong, 0.80
        [0.95, 0.05],  # 2: wrong, 0.95
        [0.20, 0.80],  # 3: wrong, 0.80 (ties with 1: index order)
        [0.40, 0.60],  # 4: wrong, 0.60
    ]
)
TARGETS = np.array([0, 0, 1, 0, 0])


def test_mistakes_sorted_by_confidence_then_index() -> None:
    assert confident_mistakes(PROBS, TARGETS) == [2, 1, 3, 4]
    assert confident_mistakes(PROBS, TARGETS, k=2) == [2, 1]
    assert confident_mistakes(PROBS, TARGETS, k=0) == []
    assert confident_mistakes(torch.tensor(PROBS), torch.tensor(TARGETS)) == [2, 1, 3, 4]


def test_no_mistakes_gives_an_empty_list() -> None:
    assert confident_mistakes(PROBS[:1], TARGETS[:1]) == []


# --- plot_confident_mistakes ---------------------------------------------------------------------


def _write_images(folder: Path, count: int) -> list[Path]:
    paths = []
    for index in range(count):
        path = folder / f"img_{index}.png"
        Image.new("RGB", (40, 30), (40 * index, 100, 200)).save(path)
        paths.append(path)
    return paths


def _assert_png(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def test_plot_writes_a_grid_of_mistakes(tmp_path: Path) -> None:
    paths = _write_images(tmp_path, 5)
    out = plot_confident_mistakes(
        paths, PROBS, TARGETS, ["cat", "dog"], tmp_path / "nested" / "mistakes.png"
    )
    assert out == tmp_path / "nested" / "mistakes.png"
    width, height = _assert_png(out)
    one = plot_confident_mistakes(paths, PROBS, TARGETS, ["cat", "dog"], tmp_path / "one.png", k=1)
    assert one is not None
    one_width, _ = _assert_png(one)
    assert width > one_width  # four columns, not one


def test_plot_without_mistakes_writes_nothing(tmp_path: Path) -> None:
    paths = _write_images(tmp_path, 1)
    out_path = tmp_path / "mistakes.png"
    assert plot_confident_mistakes(paths, PROBS[:1], TARGETS[:1], ["cat", "dog"], out_path) is None
    assert not out_path.exists()


def test_unreadable_images_become_tiles_not_crashes(tmp_path: Path) -> None:
    paths = _write_images(tmp_path, 5)
    paths[2] = tmp_path / "moved_away.png"  # the most confident mistake
    paths[1].write_bytes(b"not an image")
    out = plot_confident_mistakes(paths, PROBS, TARGETS, ["cat", "dog"], tmp_path / "m.png")
    assert out is not None
    _assert_png(out)


def test_plot_checks_lengths(tmp_path: Path) -> None:
    paths = _write_images(tmp_path, 2)
    with pytest.raises(ValueError, match="paths"):
        plot_confident_mistakes(paths, PROBS, TARGETS, ["cat", "dog"], tmp_path / "m.png")
