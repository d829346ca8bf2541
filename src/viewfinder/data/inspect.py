"""Data inspection before training (``viewfinder inspect DATA``): what a Kaggle or Dacon user
checks by hand in a notebook, for every task, as one JSON-able summary.

For every task, the image files (``inspect_images``: sizes, unreadable files, duplicates); then the
task's own view: class counts and imbalance (classify), the MOS distribution (iqa), caption
lengths, vocabulary and captions per image (caption), question types and lengths, answer types,
frequent answers and the top-K answer coverage (vqa). The task is given or guessed from the
layout and column names, and the summary says which and why.

Data is read by the readers training uses, so a one-line ``UserError`` here (missing path,
unreadable CSV, no such column) is the one training would give; rows those readers can skip (a
MOS that is not a number, a caption naming a missing image) are skipped and listed instead.
``inspect_report`` draws the plots and writes ``inspect.md`` and ``inspect.json``.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from viewfinder.data.inspect_images import (
    LISTED,
    Item,
    distribution,
    histogram,
    image_stats,
    number_stats,
)
from viewfinder.errors import UserError, did_you_mean

TASKS = ("classify", "iqa", "caption", "iqa+caption", "vqa")
SPLITS = ("train", "val", "test")
DEFAULT_SAMPLE = 2000
TOP = 20  # most frequent words, answers and question types listed
GIVEN = "given with --task"
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_STOP_WORDS = frozenset(
    "a an the of on in at to and or is are was were be been it its this that these there with "
    "for by from as into onto some very".split()
)
# Column names that tell the task, matched case-insensitively (first match wins, in this order).
_QUESTION_COLUMNS = ("question", "questions", "query")
_ANSWER_COLUMNS = ("answer", "answers", "multiple_choice_answer")
_MOS_COLUMNS = ("mos", "score", "quality", "mean_opinion_score", "dmos")
_TEXT_COLUMNS = ("comments", "comment", "caption", "captions", "text")
_LABEL_COLUMNS = ("label", "labels", "class", "class_name", "target", "category", "y")


@dataclass
class _Read:
    """What a task's reader found: images, records per split, the task's own statistics."""

    items: list[Item]
    records: dict[str, int]
    details: dict[str, Any]
    skipped: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------- the task guess


def _split_file(folder: Path) -> Path | None:
    """The file whose columns tell a folder's task: its train (or VQA questions) file."""
    for name in ("train", "questions"):
        for suffix in (".csv", ".jsonl", ".json"):
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    return None


def _header(table: Path) -> list[str]:
    """Column names of a CSV (first row) or JSONL file (keys of the first object)."""
    try:
        with table.open(encoding="utf-8-sig", newline="") as handle:
            if table.suffix.lower() == ".csv":
                return [h.strip() for h in next(csv.reader(handle), [])]
            first = next((line for line in handle if line.strip()), "{}")
            row = json.loads(first)
    except UnicodeDecodeError as error:
        raise UserError(f"{table}: not UTF-8 text ({error.reason}); save it as UTF-8") from None
    except (csv.Error, ValueError) as error:
        raise UserError(f"{table}: not readable ({error!s:.80})") from None
    return list(row) if isinstance(row, dict) else []


def _column(header: Sequence[str], names: tuple[str, ...]) -> str | None:
    lowered = {h.lower(): h for h in header}
    return next((lowered[n] for n in names if n in lowered), None)


def _guess_from_columns(table: Path) -> tuple[str, str]:
    header = _header(table)
    found = {
        what: _column(header, names)
        for what, names in (("question", _QUESTION_COLUMNS), ("answer", _ANSWER_COLUMNS),
                            ("mos", _MOS_COLUMNS), ("text", _TEXT_COLUMNS),
                            ("label", _LABEL_COLUMNS))
    }  # fmt: skip
    named = {what: repr(column) for what, column in found.items() if column}
    if found["question"]:
        answer = f" and an {named['answer']}" if found["answer"] else ""
        return "vqa", f"{table.name} has a {named['question']}{answer} column"
    if found["mos"] and found["text"]:
        return "iqa+caption", f"{table.name} has {named['mos']} and {named['text']} columns"
    if found["mos"]:
        return "iqa", f"{table.name} has a {named['mos']} column"
    if found["text"]:
        return "caption", f"{table.name} has a {named['text']} column"
    if found["label"]:
        return "classify", f"{table.name} has a {named['label']} column"
    raise UserError(f"{table}: cannot tell the task from the columns {header}; pass --task "
                    f"{', '.join(TASKS)}")  # fmt: skip


def guess_task(path: str | Path) -> tuple[str, str]:
    """(task, why) from the data's layout and column names; a ``UserError`` when unsure."""
    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"{root}: data path not found (check the path)")
    table = root if root.is_file() else _split_file(root)
    if table is None:
        return "classify", f"{root.name or root}/ has no train file: class-per-folder images"
    suffix = table.suffix.lower()
    if suffix == ".json":
        with table.open("rb") as handle:
            head = handle.read(65536)
        if b'"question' in head:
            return "vqa", f"{table.name} holds questions (VQA-v2 JSON)"
        return "caption", f"{table.name} is a JSON file without questions (COCO captions)"
    if suffix not in (".csv", ".jsonl"):
        raise UserError(f"{root}: expected a data folder or a .csv, .jsonl or .json file")
    return _guess_from_columns(table)


def check_task(task: str) -> str:
    if task not in TASKS:
        raise UserError(f"--task {task!r}: choose {', '.join(TASKS)}{did_you_mean(task, TASKS)}")
    return task


# ---------------------------------------------------------------------------- text


def words(text: str) -> list[str]:
    """Lower-case words (letters and digits, inner apostrophes kept)."""
    return _WORD.findall(text.lower())


def caption_stats(per_image: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Caption count, length in words, vocabulary and captions per image."""
    tokens = [words(c) for captions in per_image for c in captions]
    lengths = [len(t) for t in tokens]
    vocabulary = Counter(w for t in tokens for w in t)
    frequent = [[w, n] for w, n in vocabulary.most_common() if w not in _STOP_WORDS][:TOP]
    counts = [len(captions) for captions in per_image]
    return {
        "images": len(per_image),
        "captions": len(tokens),
        "images_without_captions": counts.count(0),
        "per_image": {**number_stats(counts), "distribution": distribution(counts)},
        "length_words": {**number_stats(lengths), "distribution": distribution(lengths)},
        "vocabulary": len(vocabulary),
        "words_seen_once": sum(n == 1 for n in vocabulary.values()),
        "top_words": frequent,
    }


# ---------------------------------------------------------------------------- tasks


def _classify(root: Path, images: str | None) -> _Read:
    from viewfinder.data.sources import read_classification

    source = read_classification(root)
    items = [Item(s, r.path, r.label) for s in SPLITS for r in getattr(source, s)]
    counts = {s: Counter(r.label for r in getattr(source, s) if r.label) for s in SPLITS}
    train = counts["train"]
    classes = sorted({c for found in counts.values() for c in found}, key=lambda c: (-train[c], c))
    rows = [{"class": c, **{s: counts[s][c] for s in SPLITS},
             "total": sum(counts[s][c] for s in SPLITS)} for c in classes]  # fmt: skip
    ratio = max(train.values()) / min(train.values()) if train else None
    details = {
        "layout": source.layout,
        "classes": len(classes),
        "imbalance_ratio": None if ratio is None else round(ratio, 3),
        "largest": rows[0]["class"] if rows else None,
        "smallest": min(train, key=lambda c: (train[c], c)) if train else None,
        "counts": rows,
    }
    records = {s: len(getattr(source, s)) for s in SPLITS}
    return _Read(items, records, {"classify": details})


def mos_stats(scores: Sequence[float]) -> dict[str, Any]:
    """MOS summary: count, spread, quartiles, distinct values and a histogram."""
    quartiles = statistics.quantiles(scores, n=4) if len(scores) > 1 else [None] * 3
    return {
        "count": len(scores),
        **number_stats(scores),
        "std": round(statistics.pstdev(scores), 4) if scores else None,
        "q1": None if quartiles[0] is None else round(quartiles[0], 4),
        "q3": None if quartiles[2] is None else round(quartiles[2], 4),
        "distinct": len(set(scores)),
        "histogram": histogram(scores, bins=20),
    }


def _labelled_captions(source: Any) -> list[tuple[str, ...]]:
    """Captions per image of the splits that have captions (an unlabelled test split has none)."""
    splits = [getattr(source, s) for s in SPLITS]
    return [r.comments for records in splits if any(r.comments for r in records) for r in records]


def _quality(root: Path, images: str | None, *, captions: bool) -> _Read:
    from viewfinder.data.quality import read_quality

    source = read_quality(root, skip_bad=True)
    items = [Item(s, r.path) for s in SPLITS for r in getattr(source, s)]
    scores = [r.mos for s in SPLITS for r in getattr(source, s) if r.mos is not None]
    details: dict[str, Any] = {
        "iqa": {**mos_stats(scores), "without_mos": len(items) - len(scores)}
    }
    if captions:
        details["caption"] = caption_stats(_labelled_captions(source))
    records = {s: len(getattr(source, s)) for s in SPLITS}
    return _Read(items, records, details, source.skipped_rows)


def _captions(root: Path, images: str | None) -> _Read:
    from viewfinder.data.captions import read_captions

    source, column = read_captions(root, images=images, skip_bad=True)
    items = [Item(s, r.path) for s in SPLITS for r in getattr(source, s)]
    details = {"caption": {"column": column, **caption_stats(_labelled_captions(source))}}
    records = {s: len(getattr(source, s)) for s in SPLITS}
    return _Read(items, records, details, source.skipped_rows)


def k_grid(total: int) -> list[int]:
    """1, 2, 5, 10, 20, 50 ... below ``total``, then ``total`` itself."""
    grid = {m * 10**e for e in range(12) for m in (1, 2, 5) if m * 10**e < total}
    return sorted(grid | {total}) if total > 0 else []


def answer_stats(answer_lists: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Answer types and frequent answers (of each question's most common answer), and the top-K
    coverage curve: the share of questions a K-answer classifier head could answer at best."""
    from viewfinder.data.answers import answer_type, normalize_answer, top_k_coverage
    from viewfinder.data.vqa import main_answer

    main = [main_answer(answers) for answers in answer_lists]
    types = Counter(answer_type(a) for a in main)
    distinct = {normalize_answer(a) for answers in answer_lists for a in answers} - {""}
    coverage = top_k_coverage(answer_lists, k_grid(len(distinct)))
    return {
        "questions": len(main),
        "answers_per_question": number_stats([len(a) for a in answer_lists]),
        "distinct_answers": len(distinct),
        "answer_types": {t: types[t] for t in ("yes/no", "number", "other")},
        "top_answers": [[a, n] for a, n in Counter(main).most_common(TOP)],
        "coverage": [[k, round(share, 4)] for k, share in coverage],
    }


def _vqa(root: Path, images: str | None) -> _Read:
    from viewfinder.data.answers import question_type
    from viewfinder.data.vqa import read_vqa

    source = read_vqa(root, images=images, skip_bad=True)
    records = [r for s in SPLITS for r in getattr(source, s)]
    items = list(dict.fromkeys(Item(s, r.path) for s in SPLITS for r in getattr(source, s)))
    lengths = [len(words(r.question)) for r in records]
    per_image = list(Counter(r.path for r in records).values())
    types = Counter(question_type(r.question) for r in records)
    details = {
        "questions": len(records),
        "images": len({r.path for r in records}),
        "repeated_rows": source.duplicates,
        "questions_per_image": {**number_stats(per_image), "distribution": distribution(per_image)},
        "question_types": [[t, n] for t, n in types.most_common(TOP)],
        "question_length_words": {**number_stats(lengths), "distribution": distribution(lengths)},
        "unanswered": sum(not r.answers for r in records),
        **answer_stats([r.answers for r in records if r.answers]),
    }
    counts = {s: len(getattr(source, s)) for s in SPLITS}
    return _Read(items, counts, {"vqa": details}, source.skipped_rows)


READERS: dict[str, Callable[[Path, str | None], _Read]] = {
    "classify": _classify,
    "iqa": lambda root, images: _quality(root, images, captions=False),
    "iqa+caption": lambda root, images: _quality(root, images, captions=True),
    "caption": _captions,
    "vqa": _vqa,
}


def inspect_data(
    path: str | Path,
    *,
    task: str | None = None,
    images: str | None = None,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
) -> dict[str, Any]:
    """The whole inspection of a data set as one JSON-able dict (see the module doc)."""
    root = Path(path).expanduser()
    if sample < 0:
        raise UserError(f"--sample {sample}: give 0 (every image) or a positive count")
    if not root.exists():
        raise UserError(f"{root}: data path not found (check the path)")
    task, reason = (check_task(task), GIVEN) if task else guess_task(root)
    found = READERS[task](root, images)
    if reason != GIVEN and task == "iqa+caption":
        if not found.details["caption"]["captions"]:  # a comments column left empty
            task, reason = "iqa", reason + ", but every comment is empty"
            found.details.pop("caption")
    base = root if root.is_dir() else root.parent
    return {
        "data": str(root),
        "task": task,
        "task_guessed": reason != GIVEN,
        "task_reason": reason,
        "records": found.records,
        "images": image_stats(found.items, base, sample=sample, seed=seed),
        **found.details,
        "skipped_rows": {"count": len(found.skipped),
                         "listed": [{"where": w, "why": y} for w, y in found.skipped[:LISTED]]},
    }  # fmt: skip


def default_out_dir(path: str | Path) -> Path:
    """``./inspect-<data name>``: the folder's name, or the file's (``vqa/train.csv`` ->
    ``inspect-vqa-train``, as a bare ``train`` would not say which data)."""
    root = Path(path).expanduser().absolute().resolve()
    name = root.name if root.is_dir() else root.stem
    if root.is_file() and root.stem.lower() in (*SPLITS, "valid", "validation", "questions"):
        name = f"{root.parent.name}-{root.stem}"
    return Path(f"inspect-{name or 'data'}")
