"""Visual question answering metrics, as the official VQA evaluation scores them, plus the views
that tell a user where a model answers well: per question type, per answer type, yes/no
confusion, and a question-only majority baseline (how much the image adds).

- ``vqa_accuracy`` (the official soft accuracy, GT-Vision-Lab/VQA ``vqaEval.py``): an answer is
  fully right when at least three humans gave it. With n >= 4 references it is averaged over the
  n leave-one-out subsets: each scores min(matches among the other n - 1 / 3, 1). For VQA's ten
  answers, 1 match -> 0.3, 2 -> 0.6, 3 -> 0.9, 4 or more -> 1.0. With n <= 3 references a subset
  could never hold three matches, so the score is the share of references that match,
  matches / n: one reference is exact match, and three agreeing references score 1.0 (the same
  rule as ``AnswerVocab.soft_target``).
- ``accuracy``: exact match with the most common reference (ties: the first listed).
- ``accuracy_yes_no`` / ``_number`` / ``_other``: exact match per answer type of that most common
  reference; NaN when no question has the type, so the keys (the columns of a metrics table) stay
  the same for every data set.

Predictions and references arrive normalised (``viewfinder.data.answers.normalize_answer``) and
are compared as they are; the official script normalises predictions the same way, and its
references are already normalised in the VQA annotations.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from viewfinder.data.answers import (
    ANSWER_TYPES,
    answer_type,
    most_common_answer,
    normalize_answer,
    question_type,
)
from viewfinder.errors import UserError
from viewfinder.metrics.captions import _gather

METRIC_NAMES = ("accuracy", "vqa_accuracy", "accuracy_yes_no", "accuracy_number",
                "accuracy_other", "questions")  # fmt: skip
TYPE_KEYS = {"yes/no": "accuracy_yes_no", "number": "accuracy_number", "other": "accuracy_other"}

Item = tuple[int, str, str, list[str]]  # (question index, question, prediction, references)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The official soft accuracy of one prediction (the rule is in the module doc)."""
    if not answers:
        raise ValueError("no reference answers to score against")
    matches = sum(a == prediction for a in answers)
    n = len(answers)
    if n <= 3:
        return matches / n
    # leaving out a matching answer leaves matches - 1 among the others, any other leaves all
    return sum(min((matches - (a == prediction)) / 3, 1.0) for a in answers) / n


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the prediction is the most common reference (ties: the first listed), else 0.0."""
    return 1.0 if answers and prediction == most_common_answer(answers) else 0.0


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def score_answers(pairs: Sequence[tuple[str, Sequence[str]]]) -> dict[str, float]:
    """Every metric of ``METRIC_NAMES`` over (prediction, references) pairs; with no pairs the two
    overall accuracies are 0.0 (as other tasks report an empty set) and the per-type ones NaN."""
    exact, soft = [], []
    by_type: dict[str, list[float]] = {t: [] for t in ANSWER_TYPES}
    for prediction, references in pairs:
        correct = exact_match(prediction, references)
        exact.append(correct)
        soft.append(vqa_accuracy(prediction, references))
        by_type[answer_type(most_common_answer(references))].append(correct)
    scores = {"accuracy": _mean(exact) if exact else 0.0,
              "vqa_accuracy": _mean(soft) if soft else 0.0}  # fmt: skip
    scores.update({TYPE_KEYS[t]: _mean(v) for t, v in by_type.items()})
    scores["questions"] = float(len(pairs))
    return {name: scores[name] for name in METRIC_NAMES}


def _group_rows(items: Iterable[Item], key: Callable[[Item], str], name: str) -> dict[str, dict]:
    """{group: {name: group, questions, accuracy, vqa_accuracy}} over the items."""
    groups: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    rows = {}
    for group, members in groups.items():
        rows[group] = {
            name: group,
            "questions": len(members),
            "accuracy": _mean([exact_match(p, r) for _, _, p, r in members]),
            "vqa_accuracy": _mean([vqa_accuracy(p, r) for _, _, p, r in members]),
        }
    return rows


def question_type_rows(items: Iterable[Item], words: int = 2) -> list[dict[str, Any]]:
    """One row per question type (its first ``words`` words), most questions first."""
    rows = _group_rows(items, lambda item: question_type(item[1], words), "question_type")
    return sorted(rows.values(), key=lambda r: (-r["questions"], r["question_type"]))


def answer_type_rows(items: Iterable[Item]) -> list[dict[str, Any]]:
    """One row per answer type of the most common reference, all three always (NaN when empty)."""
    rows = _group_rows(items, lambda item: answer_type(most_common_answer(item[3])), "answer_type")
    empty = {"questions": 0, "accuracy": float("nan"), "vqa_accuracy": float("nan")}
    return [rows.get(t, {"answer_type": t, **empty}) for t in ANSWER_TYPES]


@dataclass(frozen=True)
class YesNoConfusion:
    """Yes/no questions by reference (rows: yes, no) and prediction (columns: yes, no); ``other``
    counts, per row, the predictions that were neither (a model that has not learnt the format)."""

    counts: list[list[int]]
    other: list[int]

    @property
    def answered_other(self) -> int:
        return sum(self.other)


def yes_no_confusion_of(items: Iterable[Item]) -> YesNoConfusion:
    """The ``YesNoConfusion`` of the questions whose most common reference is yes or no."""
    counts, other = [[0, 0], [0, 0]], [0, 0]
    for _, _, prediction, references in items:
        reference = most_common_answer(references)
        if reference not in ("yes", "no"):
            continue
        row = 0 if reference == "yes" else 1
        if prediction in ("yes", "no"):
            counts[row][0 if prediction == "yes" else 1] += 1
        else:
            other[row] += 1
    return YesNoConfusion(counts, other)


class VQAMetrics:
    """Collects (index, question, prediction, references) per labelled question over a whole
    evaluated set; the task's ``to_answers`` turns a batch's model outputs into normalised
    answers. ``batch`` carries ``answers`` (references per question; empty = unlabelled, skipped),
    ``questions`` and ``index`` (question positions).

    In multi-GPU runs every read (``items``, ``compute`` and the tables) gathers all processes'
    questions, so every process must make the same calls; a question seen twice (a distributed
    sampler pads its last batch with repeats) counts once.
    """

    def __init__(self, to_answers: Callable[[Any], list[str]]) -> None:
        self.to_answers = to_answers
        self._items: list[Item] = []

    def to(self, device: object) -> VQAMetrics:
        return self

    def update(self, outputs: Any, batch: Mapping[str, Any]) -> None:
        predictions = self.to_answers(outputs)
        indices = [int(i) for i in batch["index"]]
        for index, question, prediction, references in zip(
            indices, batch["questions"], predictions, batch["answers"], strict=True
        ):
            if references:
                self._items.append((index, question, prediction, list(references)))

    def items(self) -> list[Item]:
        """(index, question, prediction, references) of every labelled question, all processes,
        by index."""
        unique = {item[0]: item for item in reversed(_gather(self._items))}
        return [unique[i] for i in sorted(unique)]

    def compute(self) -> dict[str, float]:
        """Every metric of ``METRIC_NAMES`` (see the module doc)."""
        return score_answers([(p, r) for _, _, p, r in self.items()])

    def per_question_type(self, words: int = 2) -> list[dict[str, Any]]:
        """{question_type, questions, accuracy, vqa_accuracy} rows, most questions first."""
        return question_type_rows(self.items(), words)

    def per_answer_type(self) -> list[dict[str, Any]]:
        """{answer_type, questions, accuracy, vqa_accuracy} rows for yes/no, number, other."""
        return answer_type_rows(self.items())

    def yes_no_confusion(self) -> YesNoConfusion:
        """Counts [[yes->yes, yes->no], [no->yes, no->no]] plus yes/no questions answered else."""
        return yes_no_confusion_of(self.items())


def _most_common(counts: Counter[str]) -> str:
    """The most frequent answer; ties alphabetical (as the answer vocabulary ranks them)."""
    return min(counts, key=lambda a: (-counts[a], a))


def majority_baseline(
    train: Sequence[tuple[str, str]],
    evaluated: Sequence[tuple[str, Sequence[str]]],
    words: int = 2,
) -> dict[str, float]:
    """Scores (``METRIC_NAMES``) of a blind guesser that answers each question with the most
    common training answer of its question type ("how many" -> "2"), or of all training answers
    for a type never seen in training. A model that barely beats it reads the question, not the
    image. ``train``: (question, answer) pairs, one per training answer; ``evaluated``:
    (question, references) pairs (unlabelled ones are skipped). Answers are normalised here."""
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    overall: Counter[str] = Counter()
    for question, answer in train:
        answer = normalize_answer(answer)
        if answer:
            by_type[question_type(question, words)][answer] += 1
            overall[answer] += 1
    if not overall:
        raise UserError("no training answers to build the majority (question-only) baseline from")
    fallback = _most_common(overall)
    guesses = {kind: _most_common(counts) for kind, counts in by_type.items()}
    pairs = [
        (guesses.get(question_type(q, words), fallback), [normalize_answer(a) for a in refs])
        for q, refs in evaluated
        if refs
    ]
    return score_answers(pairs)


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def _answer_rows(items: Sequence[Item]) -> list[dict[str, Any]]:
    return [
        {"index": i, "question": q, "prediction": p, "references": json.dumps(r),
         "correct": int(exact_match(p, r)), "vqa_accuracy": round(vqa_accuracy(p, r), 4)}
        for i, q, p, r in items
    ]  # fmt: skip


def _confusion_rows(confusion: YesNoConfusion) -> list[dict[str, Any]]:
    pairs = zip(("yes", "no"), confusion.counts, confusion.other, strict=True)
    return [{"reference": ref, "predicted_yes": row[0], "predicted_no": row[1],
             "predicted_other": other} for ref, row, other in pairs]  # fmt: skip


def write_vqa_report(
    metrics: VQAMetrics, out_dir: Path, baseline: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The files a person reads after ``evaluate``: ``answers.csv`` (every question),
    ``per_question_type.csv``, ``per_answer_type.csv`` (with the majority baseline's accuracy
    when given), ``yes_no_confusion.csv`` and ``per_answer_type.png``. Returns ``compute()``
    plus the baseline's scores as ``baseline_<metric>``. Reads the questions once (one gather)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = metrics.items()
    answer_columns = ["index", "question", "prediction", "references", "correct", "vqa_accuracy"]
    _write_csv(out_dir / "answers.csv", _answer_rows(items), answer_columns)
    columns = ["questions", "accuracy", "vqa_accuracy"]
    question_rows = question_type_rows(items)
    _write_csv(out_dir / "per_question_type.csv", question_rows,
               ["question_type", *columns])  # fmt: skip
    answer_rows = answer_type_rows(items)
    if baseline is not None:
        answer_rows = [{**r, "baseline_accuracy": baseline[TYPE_KEYS[r["answer_type"]]]}
                       for r in answer_rows]  # fmt: skip
        columns.append("baseline_accuracy")
    _write_csv(out_dir / "per_answer_type.csv", answer_rows, ["answer_type", *columns])
    confusion = yes_no_confusion_of(items)
    _write_csv(out_dir / "yes_no_confusion.csv", _confusion_rows(confusion),
               ["reference", "predicted_yes", "predicted_no", "predicted_other"])  # fmt: skip
    plot_answer_types(answer_rows, out_dir / "per_answer_type.png", baseline)
    scores = score_answers([(p, r) for _, _, p, r in items])
    if baseline is not None:
        scores.update({f"baseline_{k}": float(v) for k, v in baseline.items() if k != "questions"})
    text = text_report(answer_rows, question_rows, confusion, scores)
    (out_dir / "report.txt").write_text(text, encoding="utf-8")
    return scores


def text_report(
    answer_rows: Sequence[Mapping[str, Any]],
    question_rows: Sequence[Mapping[str, Any]],
    confusion: YesNoConfusion,
    scores: Mapping[str, float],
    top: int = 12,
) -> str:
    """``report.txt``, what ``viewfinder evaluate`` prints: accuracy per answer type beside the
    majority-answer-per-question-type baseline, the largest question types, yes/no confusion."""
    base = "baseline_accuracy" in scores
    head = f"{'answer type':<14}{'questions':>10}{'accuracy':>10}{'VQA acc':>9}"
    lines = [head + (f"{'majority baseline':>19}" if base else "")]
    for r in [*answer_rows, {"answer_type": "all", "questions": scores.get("questions", 0),
                             "accuracy": scores["accuracy"],
                             "vqa_accuracy": scores["vqa_accuracy"],
                             "baseline_accuracy": scores.get("baseline_accuracy")}]:  # fmt: skip
        if not r["questions"]:
            continue
        line = (f"{r['answer_type']:<14}{int(r['questions']):>10}{r['accuracy']:>10.3f}"
                f"{r['vqa_accuracy']:>9.3f}")  # fmt: skip
        lines.append(line + (f"{r['baseline_accuracy']:>19.3f}" if base else ""))
    lines += ["", f"{'question type':<22}{'questions':>10}{'accuracy':>10}"]
    lines += [f"{r['question_type'][:21]:<22}{r['questions']:>10}{r['accuracy']:>10.3f}"
              for r in question_rows[:top]]  # fmt: skip
    if len(question_rows) > top:
        lines.append(f"... {len(question_rows) - top} more in per_question_type.csv")
    (yy, yn), (ny, nn) = confusion.counts
    if yy + yn + ny + nn + confusion.answered_other:
        lines += [
            "",
            f"yes/no confusion (reference -> predicted): yes->yes {yy}, yes->no {yn}, "
            f"no->yes {ny}, no->no {nn}, other answer {confusion.answered_other}",
        ]
    return "\n".join(lines) + "\n"


def plot_answer_types(
    rows: Sequence[Mapping[str, Any]], path: Path, baseline: Mapping[str, float] | None = None
) -> None:
    """Accuracy per answer type (types with questions only), the model's bars beside the majority
    baseline's: the gap is what looking at the image is worth. A bare Agg ``Figure``, as the
    other metric plots: headless, and the process-wide backend is left alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [r for r in rows if r["questions"]]
    fig = Figure(figsize=(6, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    positions = range(len(shown))
    width = 0.4 if baseline is not None else 0.6
    offset = width / 2 if baseline is not None else 0.0
    ax.bar([x - offset for x in positions], [r["accuracy"] for r in shown], width, label="model")
    if baseline is not None:
        values = [baseline[TYPE_KEYS[r["answer_type"]]] for r in shown]
        ax.bar([x + offset for x in positions], [0.0 if math.isnan(v) else v for v in values],
               width, label="question-only baseline", color="grey")  # fmt: skip
        ax.legend()
    ax.set_xticks(list(positions), [f"{r['answer_type']}\n({r['questions']})" for r in shown])
    ax.set(ylim=(0, 1), ylabel="accuracy (exact match)", xlabel="answer type (questions)",
           title="accuracy by answer type")  # fmt: skip
    fig.savefig(path, dpi=100)
