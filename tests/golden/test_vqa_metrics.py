"""VQA metrics pinned to hand-computed values: the official soft accuracy, exact match, the
per-type views and the question-only majority baseline."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from viewfinder.errors import UserError
from viewfinder.metrics.vqa import (
    METRIC_NAMES,
    VQAMetrics,
    exact_match,
    majority_baseline,
    vqa_accuracy,
    write_vqa_report,
)


def _ten(matches: int) -> list[str]:
    return ["red"] * matches + ["blue"] * (10 - matches)


@pytest.mark.parametrize(
    ("matches", "expected"),
    [
        (0, 0.0),
        # 1 subset drops the match (0 left: 0); 9 keep it (1/3): 9 * 1/3 / 10
        (1, 0.3),
        # 2 subsets drop a match (1 left: 1/3); 8 keep both (2/3): (2/3 + 16/3) / 10
        (2, 0.6),
        # 3 subsets drop a match (2 left: 2/3); 7 keep all three (1): (2 + 7) / 10
        (3, 0.9),
        # every subset keeps 3 or 4 matches: 1 each
        (4, 1.0),
        (10, 1.0),
    ],
)
def test_official_soft_accuracy_on_ten_answers(matches: int, expected: float) -> None:
    assert vqa_accuracy("red", _ten(matches)) == pytest.approx(expected)


def test_soft_accuracy_with_few_answers() -> None:
    assert vqa_accuracy("red", ["red"]) == 1.0  # one reference: exact match
    assert vqa_accuracy("blue", ["red"]) == 0.0
    assert vqa_accuracy("red", ["red", "blue"]) == 0.5  # n <= 3: matches / n
    assert vqa_accuracy("red", ["red"] * 3) == 1.0
    assert vqa_accuracy("red", ["red", "red", "blue"]) == pytest.approx(2 / 3)
    # four answers, three match: 3 subsets keep 2 (2/3), 1 keeps 3 (1): (2 + 1) / 4
    assert vqa_accuracy("red", ["red", "red", "red", "blue"]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no reference"):
        vqa_accuracy("red", [])


def test_exact_match_uses_the_most_common_reference() -> None:
    assert exact_match("red", ["red", "blue", "red"]) == 1.0
    assert exact_match("blue", ["red", "blue", "red"]) == 0.0
    assert exact_match("blue", ["blue", "red", "red", "blue"]) == 1.0  # tie: first listed
    assert exact_match("red", ["blue", "red", "red", "blue"]) == 0.0
    assert exact_match("red", []) == 0.0


def _batches() -> list[dict]:
    first = {
        "index": torch.tensor([0, 1, 2, 3, 4]),
        "questions": ["Is there a circle?", "Is the star red?", "How many shapes are there?",
                      "What color is the star?", "What shape is it?"],
        "answers": [["yes"] * 10, ["no"] * 7 + ["yes"] * 3, ["2"] * 2 + ["3"] * 8, ["red"], []],
        "outputs": ["yes", "yes", "2", "red", "blue"],
    }  # fmt: skip
    second = {  # question 2 again: a distributed sampler's padding, counted once
        "index": torch.tensor([5, 2, 6]),
        "questions": ["What color is the circle?", "How many shapes are there?",
                      "Is there a square?"],
        "answers": [["blue"], ["2"] * 2 + ["3"] * 8, ["no"]],
        "outputs": ["green", "2", "maybe"],
    }  # fmt: skip
    return [first, second]


def _metrics() -> VQAMetrics:
    metrics = VQAMetrics(to_answers=list).to("cpu")
    for batch in _batches():
        metrics.update(batch["outputs"], batch)
    return metrics


def test_vqa_metrics_end_to_end() -> None:
    metrics = _metrics()
    assert [i for i, *_ in metrics.items()] == [0, 1, 2, 3, 5, 6]  # 4 unlabelled, 2 once
    scores = metrics.compute()
    assert tuple(scores) == METRIC_NAMES
    # per question (exact, soft): 0 (1, 1); 1 (0, 0.9: 3 of 10 said yes); 2 (0, 0.6);
    # 3 (1, 1); 5 (0, 0); 6 (0, 0)
    assert scores["accuracy"] == pytest.approx(2 / 6)
    assert scores["vqa_accuracy"] == pytest.approx((1 + 0.9 + 0.6 + 1) / 6)
    assert scores["accuracy_yes_no"] == pytest.approx(1 / 3)  # questions 0, 1, 6
    assert scores["accuracy_number"] == 0.0  # question 2
    assert scores["accuracy_other"] == 0.5  # questions 3, 5
    assert scores["questions"] == 6


def test_absent_answer_types_are_nan_and_empty_sets_score_zero() -> None:
    metrics = VQAMetrics(to_answers=list)
    batch = {"index": torch.tensor([0]), "questions": ["Is it?"], "answers": [["yes"]]}
    metrics.update(["yes"], batch)
    scores = metrics.compute()
    assert tuple(scores) == METRIC_NAMES and scores["accuracy_yes_no"] == 1.0
    assert math.isnan(scores["accuracy_number"]) and math.isnan(scores["accuracy_other"])
    empty = VQAMetrics(to_answers=list).compute()
    assert empty["accuracy"] == 0.0 and empty["questions"] == 0.0


def test_per_type_tables_and_yes_no_confusion() -> None:
    metrics = _metrics()
    rows = metrics.per_question_type()
    assert [(r["question_type"], r["questions"]) for r in rows] == [
        ("is there", 2), ("what color", 2), ("how many", 1), ("is the", 1)
    ]  # fmt: skip
    assert rows[0]["accuracy"] == 0.5 and rows[3]["vqa_accuracy"] == pytest.approx(0.9)
    by_answer = {r["answer_type"]: r for r in metrics.per_answer_type()}
    assert list(by_answer) == ["yes/no", "number", "other"]
    assert by_answer["number"]["vqa_accuracy"] == pytest.approx(0.6)
    assert by_answer["yes/no"]["questions"] == 3
    confusion = metrics.yes_no_confusion()
    # reference yes: 0 answered yes; reference no: 1 answered yes, 6 answered "maybe"
    assert confusion.counts == [[1, 0], [1, 0]] and confusion.other == [0, 1]
    assert confusion.answered_other == 1


TRAIN = [
    ("Is there a circle?", "yes"), ("Is there a square?", "Yes"), ("Is there a star?", "no"),
    ("How many shapes?", "2"), ("How many stars?", "Three"), ("How many circles?", "3"),
    ("What color is the star?", "red"), ("What color is it?", "blue"),
]  # fmt: skip


def test_majority_baseline_by_hand() -> None:
    # guesses: "is there" -> yes (2 of 3); "how many" -> 3 ("three" normalised: 2 of 3);
    # "what color" -> blue (tied with red: alphabetical); unseen types -> 3 (tied with yes
    # overall at 2: alphabetical)
    evaluated = [
        ("Is there a dog?", ["yes"]),  # yes: right
        ("How many dogs?", ["3", "three", "2"]),  # 3: exact 1, soft 2/3 (n = 3: matches / n)
        ("What color is the dog?", ["brown"]),  # blue: wrong
        ("Where is the dog?", ["park"]),  # unseen type, 3: wrong
        ("Is it red?", []),  # unlabelled: skipped
    ]
    scores = majority_baseline(TRAIN, evaluated)
    assert tuple(scores) == METRIC_NAMES
    assert scores["accuracy"] == 0.5 and scores["questions"] == 4
    assert scores["vqa_accuracy"] == pytest.approx((1 + 2 / 3) / 4)
    assert scores["accuracy_yes_no"] == 1.0 and scores["accuracy_number"] == 1.0
    assert scores["accuracy_other"] == 0.0
    with pytest.raises(UserError, match="no training answers"):
        majority_baseline([("Why?", "the")], evaluated)


def test_report_files(tmp_path: Path) -> None:
    baseline = majority_baseline(TRAIN, [(q, r) for _, q, _, r in _metrics().items()])
    scores = write_vqa_report(_metrics(), tmp_path / "report", baseline)
    assert scores["accuracy"] == pytest.approx(2 / 6)
    assert scores["baseline_accuracy"] == baseline["accuracy"]
    assert "baseline_questions" not in scores
    with open(tmp_path / "report" / "answers.csv") as f:
        answers = list(csv.DictReader(f))
    assert [a["index"] for a in answers] == ["0", "1", "2", "3", "5", "6"]
    assert json.loads(answers[1]["references"])[0] == "no" and answers[0]["correct"] == "1"
    with open(tmp_path / "report" / "per_answer_type.csv") as f:
        header = next(csv.reader(f))
    assert header == ["answer_type", "questions", "accuracy", "vqa_accuracy", "baseline_accuracy"]
    with open(tmp_path / "report" / "yes_no_confusion.csv") as f:
        confusion = list(csv.DictReader(f))
    assert confusion[1] == {"reference": "no", "predicted_yes": "1", "predicted_no": "0",
                           "predicted_other": "1"}  # fmt: skip
    assert (tmp_path / "report" / "per_question_type.csv").is_file()
    assert (tmp_path / "report" / "per_answer_type.png").read_bytes()[:4] == b"\x89PNG"
