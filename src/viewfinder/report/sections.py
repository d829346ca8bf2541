"""Task sections: what each task's ``evaluate`` wrote into ``eval/<split>/``, shown on the page.

**Adding a task's section** (the one place to touch): write a function

    def my_task_section(run: ReportRun, eval_dir: Path) -> str

and add it to ``SECTIONS`` under the task's name (``summary.json``'s ``task``). It is called once
per ``eval/<split>/`` folder of every run of that task and returns an HTML fragment: inline the
task's images with ``image(eval_dir / "x.png", alt)``, tables with ``table(headers, rows)`` (cells
are escaped for you; ``bar(value)`` draws a bar), and pass any other text from the folder through
``esc`` - captions, questions and class names are user text. The report itself adds the split's
``metrics.json`` numbers before the section, and, for runs without ``eval/``, the command that
makes the views, so a section only shows views. A task without an entry gets
``generic_section`` (every image of the folder), so a new task is never left blank.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from viewfinder.report.page import Raw, bar, esc, fmt, image, table
from viewfinder.report.runs import ReportRun, read_json

Section = Callable[[ReportRun, Path], str]
SAMPLE_ROWS = 12  # captions / answers shown as text per split (the CSV has them all)
GROUPS = ("head", "medium", "tail")


def read_csv(path: Path, limit: int | None = None) -> list[dict[str, str]]:
    """Rows of a CSV the task wrote (``[]`` when the file is absent)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = []
        for row in csv.DictReader(f):
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
        return rows


def number(text: Any) -> Any:
    """A CSV cell as int or float when it is one, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except (TypeError, ValueError):
            continue
    return text


def _views(*figures: str, pair: bool = False) -> str:
    shown = "".join(f for f in figures if f)
    return f'<div class="views{" pair" if pair else ""}">{shown}</div>' if shown else ""


# --- classify ------------------------------------------------------------------------------------


def _train_counts(run: ReportRun) -> Counter[str]:
    """Training images per class, from the run's ``split.csv`` (empty for fold sets)."""
    return Counter(r.get("label", "") for r in read_csv(run.path / "split.csv")
                   if r.get("split") == "train")  # fmt: skip


def _long_tail(run: ReportRun, metrics: dict[str, Any], classes: list[str]) -> tuple[str, list]:
    """Head/medium/tail bars and each class's group, when the run scored frequency groups."""
    values = {g: metrics.get(f"{g}_accuracy") for g in GROUPS}
    if all(v is None for v in values.values()):
        return "", []
    counts = _train_counts(run)
    groups: list[str] = []
    if counts and classes:
        from viewfinder.metrics.longtail import frequency_groups  # the grouping training used

        groups = frequency_groups([counts.get(c, 0) for c in classes])
    members = Counter(groups)
    rows = [[g, members.get(g) or None, bar(values[g])] for g in GROUPS if values[g] is not None]
    html = (
        "<h4>Long tail: accuracy by training frequency</h4><p class='meta'>mean per-class recall "
        "of the head, medium and tail thirds of the classes, ranked by training images</p>"
    )
    return html + table(["group", "classes", "accuracy"], rows, cls="longtail"), groups


def classify_section(run: ReportRun, eval_dir: Path) -> str:
    """Confusion matrices, per-class table, long-tail bars, most confident mistakes."""
    metrics = read_json(eval_dir / "metrics.json")
    rows = read_csv(eval_dir / "per_class.csv")
    classes = [r["class"] for r in rows]
    longtail, groups = _long_tail(run, metrics, classes)
    counts = _train_counts(run)
    headers = ["class", "precision", "recall", "f1", "support", "predicted"]
    headers += ["train images"] if counts else []
    headers += ["group"] if groups else []
    body = []
    for i, r in enumerate(rows):
        line = [r["class"], number(r["precision"]), bar(number(r["recall"])),
                bar(number(r["f1"])), number(r["support"]), number(r["predicted"])]  # fmt: skip
        line += [counts.get(r["class"], 0)] if counts else []
        line += [groups[i]] if groups else []
        body.append(line)
    matrices = _views(
        image(eval_dir / "confusion_matrix_normalized.png", "normalised confusion matrix",
              "confusion matrix, % of each true class"),
        image(eval_dir / "confusion_matrix.png", "confusion matrix", "confusion matrix, counts"),
        pair=True,
    )  # fmt: skip
    per_class = "<h4>Per class</h4>" + table(headers, body, sortable=True) if rows else ""
    mistakes = image(eval_dir / "confident_mistakes.png", "most confident mistakes",
                     "the mistakes the model was most sure of")  # fmt: skip
    if mistakes:
        mistakes = "<h4>Most confident mistakes</h4>" + mistakes
    return matrices + per_class + longtail + mistakes


# --- iqa -----------------------------------------------------------------------------------------


def _short(text: str) -> str:
    value = number(text)
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def iqa_section(run: ReportRun, eval_dir: Path) -> str:
    """Predicted vs true MOS (scatter) and the error per MOS range."""
    ranges = read_csv(eval_dir / "error_by_range.csv")
    worst = max((number(r["mean_abs_error"]) for r in ranges), default=1.0) or 1.0
    rows = [
        [f"{_short(r['mos_from'])} – {_short(r['mos_to'])}", number(r["images"]),
         number(r["mean_error"]), bar(number(r["mean_abs_error"]), worst)]
        for r in ranges
    ]  # fmt: skip
    scatter = image(eval_dir / "quality.png", "predicted against true MOS",
                    "predicted vs true MOS, and the error by range")  # fmt: skip
    html = "<h4>Quality scores (MOS)</h4>" + _views(scatter)
    if rows:
        headers = ["true MOS", "images", "mean error (pred - true)", "mean |error|"]
        html += "<h4>Error by MOS range</h4>" + table(headers, rows)
    return html


# --- caption -------------------------------------------------------------------------------------


def _references(text: str) -> str:
    try:
        refs = json.loads(text)
    except json.JSONDecodeError:
        return esc(text)  # written by hand or another tool: show it as it is
    if isinstance(refs, list):
        return "<br>".join(esc(r) for r in refs)
    return esc(refs)


def caption_section(run: ReportRun, eval_dir: Path) -> str:
    """The caption grid, and generated vs reference captions of the first images."""
    grid = image(eval_dir / "captions.png", "sample images with their captions",
                 "sample images: generated caption vs the references")  # fmt: skip
    rows = [
        [r.get("id", ""), r.get("generated", ""), Raw(_references(r.get("references", "")))]
        for r in read_csv(eval_dir / "captions.csv", limit=SAMPLE_ROWS)
    ]
    html = "<h4>Captions</h4>" + _views(grid)
    if rows:
        html += f"<p class='meta'>first {len(rows)} images of captions.csv</p>"
        html += table(["id", "generated", "references"], rows, cls="captions")
    return html


def iqa_caption_section(run: ReportRun, eval_dir: Path) -> str:
    """A MOS head and a caption head on one backbone: both tasks' views."""
    return iqa_section(run, eval_dir) + caption_section(run, eval_dir)


# --- vqa -----------------------------------------------------------------------------------------


def _accuracy_table(path: Path, key: str, extra: tuple[str, ...] = ()) -> str:
    rows = read_csv(path)
    if not rows:
        return ""
    body = [[r[key], number(r["questions"]), bar(number(r["accuracy"]))]
             + [bar(number(r[e])) for e in extra if e in r] for r in rows]  # fmt: skip
    headers = [key.replace("_", " "), "questions", "accuracy"]
    headers += [e.replace("_", " ") for e in extra if e in rows[0]]
    return table(headers, body, sortable=True)


def _answers(eval_dir: Path) -> str:
    rows = [
        [number(r.get("index")), r.get("question", ""), r.get("prediction", ""),
         Raw(_references(r.get("references", ""))),
         Raw("✓" if r.get("correct") == "1" else "✗", r.get("correct"))]
        for r in read_csv(eval_dir / "answers.csv", limit=SAMPLE_ROWS)
    ]  # fmt: skip
    if not rows:
        return ""
    headers = ["#", "question", "answer", "references", "right"]
    return f"<h4>First {len(rows)} questions</h4>" + table(headers, rows, cls="answers")


def vqa_section(run: ReportRun, eval_dir: Path) -> str:
    """Accuracy per answer type (with the majority baseline) and question type, yes/no, samples."""
    html = "<h4>Accuracy per answer type</h4>" + _views(
        image(
            eval_dir / "per_answer_type.png",
            "accuracy per answer type",
            "the model vs answering from the question alone (majority answer per type)",
        )
    )
    html += _accuracy_table(eval_dir / "per_answer_type.csv", "answer_type",
                            ("vqa_accuracy", "baseline_accuracy"))  # fmt: skip
    by_question = _accuracy_table(eval_dir / "per_question_type.csv", "question_type")
    if by_question:
        html += "<h4>Accuracy per question type</h4>" + by_question
    confusion = read_csv(eval_dir / "yes_no_confusion.csv")
    if confusion:
        headers = list(confusion[0])
        rows = [[number(r[h]) for h in headers] for r in confusion]
        html += "<h4>Yes/no answers (rows: reference)</h4>" + table(
            [h.replace("_", " ") for h in headers], rows
        )
    return html + _answers(eval_dir)


# --- any task ------------------------------------------------------------------------------------


def generic_section(run: ReportRun, eval_dir: Path) -> str:
    """Every image ``evaluate`` wrote, for a task without its own section yet."""
    return _views(*(image(p, p.stem) for p in sorted(eval_dir.glob("*.png"))))


def fold_section(run: ReportRun) -> str:
    """A fold set: each fold's best validation metrics, their mean ± std, out-of-fold metrics."""
    info = run.fold_info()
    per_fold = info.get("per_fold", [])
    keys = [k for k in info.get("mean", {}) if k != "loss"] + ["loss"]
    rows = [[f"fold {f['fold']}", f.get("best_epoch")] + [f["metrics"].get(k) for k in keys]
            for f in per_fold]  # fmt: skip
    mean, std = info.get("mean", {}), info.get("std", {})
    rows.append(
        [Raw("<b>mean ± std</b>", "mean"), None]
        + [Raw(f"{fmt(mean.get(k))} ± {fmt(std.get(k))}", mean.get(k)) for k in keys]
    )
    oof = info.get("oof", {})
    rows.append([Raw("<b>out of fold</b>", "oof"), None] + [oof.get(k) for k in keys])
    note = (
        f"<p class='meta'>{info.get('folds')} folds; out-of-fold: every pooled image once, "
        f"predicted by the fold that held it out ({fmt(oof.get('samples'))} images, "
        f"TTA {esc(oof.get('tta', 'none'))})</p>"
    )
    return "<h4>Folds</h4>" + note + table(["fold", "best epoch", *keys], rows, cls="folds")


SECTIONS: dict[str, Section] = {
    "classify": classify_section,
    "iqa": iqa_section,
    "caption": caption_section,
    "iqa+caption": iqa_caption_section,
    "vqa": vqa_section,
}
