"""Golden tests: ClassificationMetrics pinned to hand-computed values (arithmetic in comments).

Per-class F1 below uses F1 = 2TP / (2TP + FP + FN), the same as 2PR / (P + R).
torchmetrics computes in float32, hence the 1e-6 tolerance.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from viewfinder.metrics.classification import ClassificationMetrics, format_per_class_report

TOL = 1e-6


def logits_from_rankings(rankings: list[list[int]], num_classes: int) -> torch.Tensor:
    """Logits whose order is the given ranking (best first); unlisted classes tie far below."""
    logits = torch.full((len(rankings), num_classes), -100.0)
    for row, ranking in enumerate(rankings):
        for position, cls in enumerate(ranking):
            logits[row, cls] = float(num_classes - position)
    return logits


# --- The main case: 3 classes (cat, dog, fox), 8 samples --------------------------------------
# true cat x3 -> predicted cat, cat, cat
# true dog x3 -> predicted dog, cat, fox
# true fox x2 -> predicted fox, dog
# confusion (rows true, cols predicted):  [[3, 0, 0],
#                                          [1, 1, 1],
#                                          [0, 1, 1]]
# column sums (predicted): cat 4, dog 2, fox 2; row sums (support): 3, 3, 2.
TARGETS = [0, 0, 0, 1, 1, 1, 2, 2]
PREDS = [0, 0, 0, 1, 0, 2, 2, 1]
# Full rankings (best first) so top-k is well defined; the first entry is the prediction.
RANKINGS = [[0, 1, 2], [0, 2, 1], [0, 1, 2], [1, 0, 2], [0, 1, 2], [2, 1, 0], [2, 0, 1], [1, 2, 0]]
NAMES = ["cat", "dog", "fox"]

# accuracy = diagonal / N = (3 + 1 + 1) / 8 = 5/8
ACCURACY = 5 / 8
# precision = TP / predicted: cat 3/4, dog 1/2, fox 1/2
PRECISION = [3 / 4, 1 / 2, 1 / 2]
# recall = TP / support: cat 3/3, dog 1/3, fox 1/2
RECALL = [1.0, 1 / 3, 1 / 2]
# F1: cat 6/(6+1+0) = 6/7, dog 2/(2+1+2) = 2/5, fox 2/(2+1+1) = 1/2
F1 = [6 / 7, 2 / 5, 1 / 2]
# macro F1 = (6/7 + 2/5 + 1/2) / 3 = (60/70 + 28/70 + 35/70) / 3 = 123/210 = 41/70 ≈ 0.585714
MACRO_F1 = 41 / 70
# weighted F1 = (3*6/7 + 3*2/5 + 2*1/2) / 8 = (90/35 + 42/35 + 35/35) / 8 = 167/280 ≈ 0.596429
WEIGHTED_F1 = 167 / 280
# balanced accuracy = mean recall = (1 + 1/3 + 1/2) / 3 = (6/6 + 2/6 + 3/6) / 3 = 11/18 ≈ 0.611111
BALANCED = 11 / 18


def main_case(num_classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits_from_rankings(RANKINGS, num_classes)
    assert logits.argmax(dim=1).tolist() == PREDS
    return logits, torch.tensor(TARGETS)


def test_summary_numbers_match_hand_computation() -> None:
    metrics = ClassificationMetrics(3, NAMES)
    metrics.update(*main_case())
    result = metrics.compute()
    assert set(result) == {
        "accuracy",
        "top5_accuracy",
        "macro_f1",
        "weighted_f1",
        "balanced_accuracy",
    }
    assert all(type(value) is float for value in result.values())
    assert result["accuracy"] == pytest.approx(ACCURACY, abs=TOL)
    # top-5 is clipped to top-3 for C=3: every target is among all 3 classes -> 8/8.
    assert result["top5_accuracy"] == pytest.approx(1.0, abs=TOL)
    assert result["macro_f1"] == pytest.approx(MACRO_F1, abs=TOL)
    assert result["weighted_f1"] == pytest.approx(WEIGHTED_F1, abs=TOL)
    assert result["balanced_accuracy"] == pytest.approx(BALANCED, abs=TOL)


def test_per_class_and_confusion_matrix() -> None:
    metrics = ClassificationMetrics(3, NAMES)
    metrics.update(*main_case())
    rows = metrics.per_class()
    assert [row["class"] for row in rows] == NAMES
    assert [row["support"] for row in rows] == [3, 3, 2]
    assert [row["predicted"] for row in rows] == [4, 2, 2]
    assert all(type(row["support"]) is int and type(row["f1"]) is float for row in rows)
    for row, p, r, f in zip(rows, PRECISION, RECALL, F1, strict=True):
        assert row["precision"] == pytest.approx(p, abs=TOL)
        assert row["recall"] == pytest.approx(r, abs=TOL)
        assert row["f1"] == pytest.approx(f, abs=TOL)
    matrix = metrics.confusion_matrix()
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, [[3, 0, 0], [1, 1, 1], [0, 1, 1]])


def test_top5_with_six_classes_counts_only_the_sixth_place_as_a_miss() -> None:
    # C=6 -> top-5. Targets and full rankings (best first):
    #   t=0 ranked 1st -> top-1 hit, top-5 hit
    #   t=2 ranked 5th -> top-1 miss, top-5 hit (boundary)
    #   t=3 ranked 6th -> miss, miss
    #   t=5 ranked 6th -> miss, miss
    #   t=1 ranked 2nd -> top-1 miss, top-5 hit
    # accuracy = 1/5 = 0.2; top-5 accuracy = 3/5 = 0.6
    rankings = [
        [0, 1, 2, 3, 4, 5],
        [1, 3, 4, 5, 2, 0],
        [4, 5, 0, 1, 2, 3],
        [0, 1, 2, 3, 4, 5],
        [3, 1, 0, 2, 4, 5],
    ]
    metrics = ClassificationMetrics(6)
    metrics.update(logits_from_rankings(rankings, 6), torch.tensor([0, 2, 3, 5, 1]))
    result = metrics.compute()
    assert result["accuracy"] == pytest.approx(0.2, abs=TOL)
    assert result["top5_accuracy"] == pytest.approx(0.6, abs=TOL)


def test_top5_clipped_to_two_classes_is_always_one() -> None:
    # C=2 -> top-2 covers both classes: 2/2 even though top-1 is 0/2.
    metrics = ClassificationMetrics(2)
    metrics.update(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1]))
    result = metrics.compute()
    assert result["accuracy"] == 0.0
    assert result["top5_accuracy"] == pytest.approx(1.0, abs=TOL)


def test_class_absent_from_targets_and_predictions_is_left_out_of_macro() -> None:
    # Same 8 samples with a 4th class "owl" that is never a target and never predicted.
    # sklearn's f1_score(average="macro") only averages over unique(y_true ∪ y_pred), so macro F1
    # stays 41/70 (not (41/70 * 3 + 0) / 4); weighted F1 gives owl weight 0 -> still 167/280;
    # balanced accuracy averages recall over classes with support -> still 11/18.
    metrics = ClassificationMetrics(4, [*NAMES, "owl"])
    metrics.update(*main_case(num_classes=4))
    result = metrics.compute()
    assert result["macro_f1"] == pytest.approx(MACRO_F1, abs=TOL)
    assert result["weighted_f1"] == pytest.approx(WEIGHTED_F1, abs=TOL)
    assert result["balanced_accuracy"] == pytest.approx(BALANCED, abs=TOL)
    owl = metrics.per_class()[3]
    assert owl == {
        "class": "owl",
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
        "predicted": 0,
    }
    assert metrics.confusion_matrix()[3].sum() == 0 and metrics.confusion_matrix()[:, 3].sum() == 0


# --- A class that is predicted but never a target ----------------------------------------------
# targets [0, 0, 1, 1], predictions [0, 2, 1, 0]; confusion [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
# precision: c0 1/2, c1 1/1, c2 0/1 = 0;  recall: c0 1/2, c1 1/2, c2 0/0 -> 0
# F1: c0 2/(2+1+1) = 1/2, c1 2/(2+0+1) = 2/3, c2 0/(0+1+0) = 0
# macro F1 counts c2 (it was predicted): (1/2 + 2/3 + 0) / 3 = (7/6) / 3 = 7/18
# weighted F1 = (2*1/2 + 2*2/3 + 0*0) / 4 = (1 + 4/3) / 4 = 7/12
# balanced accuracy (sklearn: classes with support only) = (1/2 + 1/2) / 2 = 1/2
#   -- whereas macro recall over all seen classes would be (1/2 + 1/2 + 0) / 3 = 1/3.
def test_class_predicted_but_never_true() -> None:
    metrics = ClassificationMetrics(3)
    metrics.update(logits_from_rankings([[0], [2], [1], [0]], 3), torch.tensor([0, 0, 1, 1]))
    result = metrics.compute()
    assert result["accuracy"] == pytest.approx(0.5, abs=TOL)
    assert result["macro_f1"] == pytest.approx(7 / 18, abs=TOL)
    assert result["weighted_f1"] == pytest.approx(7 / 12, abs=TOL)
    assert result["balanced_accuracy"] == pytest.approx(0.5, abs=TOL)
    rows = metrics.per_class()
    assert [row["f1"] for row in rows] == pytest.approx([1 / 2, 2 / 3, 0.0], abs=TOL)
    assert (rows[2]["support"], rows[2]["predicted"]) == (0, 1)


def test_several_updates_equal_one_update() -> None:
    logits, targets = main_case()
    whole = ClassificationMetrics(3, NAMES)
    whole.update(logits, targets)
    pieces = ClassificationMetrics(3, NAMES)
    for start, stop in [(0, 3), (3, 4), (4, 8)]:
        pieces.update(logits[start:stop], targets[start:stop])
    assert pieces.compute() == whole.compute()
    assert pieces.per_class() == whole.per_class()
    np.testing.assert_array_equal(pieces.confusion_matrix(), whole.confusion_matrix())


def test_all_correct_first_batch_does_not_turn_top5_into_top1() -> None:
    # Regression: torchmetrics' automatic compute groups merge metrics whose states are equal
    # after the first update. First batch: 3 samples, all top-1 correct (top-1 == top-3 states).
    # Second batch: the other 5 samples, 2 top-1 correct. Top-3 must still be 8/8, top-1 5/8.
    logits, targets = main_case()
    metrics = ClassificationMetrics(3, NAMES)
    metrics.update(logits[:3], targets[:3])
    metrics.update(logits[3:], targets[3:])
    result = metrics.compute()
    assert result["top5_accuracy"] == pytest.approx(1.0, abs=TOL)
    assert result["accuracy"] == pytest.approx(ACCURACY, abs=TOL)


def test_compute_between_updates_gives_running_numbers() -> None:
    # Running metrics mid-epoch: after samples 0-3 (preds 0,0,0,1 vs targets 0,0,0,1) accuracy is
    # 4/4; after all 8 it is 5/8 and nothing is served from a stale cache.
    logits, targets = main_case()
    metrics = ClassificationMetrics(3, NAMES)
    metrics.update(logits[:4], targets[:4])
    assert metrics.compute()["accuracy"] == pytest.approx(1.0, abs=TOL)
    metrics.update(logits[4:], targets[4:])
    assert metrics.compute()["accuracy"] == pytest.approx(ACCURACY, abs=TOL)
    assert metrics.compute()["macro_f1"] == pytest.approx(MACRO_F1, abs=TOL)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_low_and_high_precision_logits_give_the_same_numbers(dtype: torch.dtype) -> None:
    logits, targets = main_case()  # values 3, 2, 1 are exact in every float dtype
    metrics = ClassificationMetrics(3, NAMES)
    metrics.update(logits.to(dtype), targets)
    result = metrics.compute()
    assert result["accuracy"] == pytest.approx(ACCURACY, abs=TOL)
    assert result["macro_f1"] == pytest.approx(MACRO_F1, abs=TOL)


def test_reset_forgets_earlier_batches() -> None:
    metrics = ClassificationMetrics(3, NAMES).to("cpu")
    metrics.update(torch.tensor([[0.0, 5.0, 0.0]] * 4), torch.tensor([0, 0, 0, 0]))  # all wrong
    metrics.reset()
    metrics.update(*main_case())
    assert metrics.compute()["accuracy"] == pytest.approx(ACCURACY, abs=TOL)
    assert metrics.confusion_matrix().sum() == 8


def test_bad_input_is_rejected_with_the_shape() -> None:
    metrics = ClassificationMetrics(3)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        metrics.update(torch.zeros(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        metrics.update(torch.zeros(4, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="class names"):
        ClassificationMetrics(3, ["a", "b"])
    with pytest.raises(ValueError, match="at least 2"):
        ClassificationMetrics(1)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torchmetrics warns about compute-before-update
def test_compute_without_samples_raises() -> None:
    with pytest.raises(RuntimeError, match="update"):
        ClassificationMetrics(3).compute()


def test_report_table_is_pinned() -> None:
    # Rows of the 4-class case (owl absent). macro avg over cat/dog/fox only:
    #   precision (3/4 + 1/2 + 1/2)/3 = 7/12 ≈ 0.5833, recall 11/18 ≈ 0.6111, f1 41/70 ≈ 0.5857
    # weighted avg (support 3, 3, 2, 0):
    #   precision (3*3/4 + 3*1/2 + 2*1/2)/8 = 4.75/8 = 0.59375 -> 0.5938
    #   recall = accuracy = 5/8 = 0.6250, f1 = 167/280 ≈ 0.5964
    metrics = ClassificationMetrics(4, [*NAMES, "owl"])
    metrics.update(*main_case(num_classes=4))
    expected = "\n".join(
        [
            "             precision    recall  f1-score   support",
            "",
            "         cat    0.7500    1.0000    0.8571         3",
            "         dog    0.5000    0.3333    0.4000         3",
            "         fox    0.5000    0.5000    0.5000         2",
            "         owl    0.0000    0.0000    0.0000         0",
            "",
            "    accuracy                        0.6250         8",
            "   macro avg    0.5833    0.6111    0.5857         8",
            "weighted avg    0.5938    0.6250    0.5964         8",
            "(macro avg leaves out 1 class(es) with no targets and no predictions, "
            "as sklearn does)",
        ]
    )
    assert format_per_class_report(metrics.per_class()) == expected


def test_matches_sklearn_on_random_data_with_absent_classes() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(0)
    num_classes = 9
    targets = torch.randint(0, 6, (300,), generator=generator)  # classes 6, 7, 8 never true
    logits = torch.randn(300, num_classes, generator=generator)
    logits[torch.arange(300), targets] += 1.5
    logits[:, 8] -= 100.0  # class 8 also never predicted; class 6/7 predicted now and then
    metrics = ClassificationMetrics(num_classes)
    metrics.update(logits, targets)
    result, rows = metrics.compute(), metrics.per_class()

    y, p, labels = targets.numpy(), logits.argmax(dim=1).numpy(), list(range(num_classes))
    assert set(p.tolist()) & {6, 7}, "the case must include classes predicted but never true"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about y_pred classes absent from y_true
        expected = {
            "accuracy": sklearn_metrics.accuracy_score(y, p),
            "top5_accuracy": sklearn_metrics.top_k_accuracy_score(
                y, logits.numpy(), k=5, labels=labels
            ),
            "macro_f1": sklearn_metrics.f1_score(y, p, average="macro"),
            "weighted_f1": sklearn_metrics.f1_score(y, p, average="weighted"),
            "balanced_accuracy": sklearn_metrics.balanced_accuracy_score(y, p),
        }
        per_class = sklearn_metrics.precision_recall_fscore_support(
            y, p, labels=labels, zero_division=0
        )
    assert result == pytest.approx(expected, abs=1e-6)
    for key, column in zip(["precision", "recall", "f1", "support"], per_class, strict=True):
        assert [row[key] for row in rows] == pytest.approx(column.tolist(), abs=1e-6)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(), sklearn_metrics.confusion_matrix(y, p, labels=labels)
    )
