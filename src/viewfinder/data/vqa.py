"""Readers for visual question answering: the competition CSV ``ID,image_id,question,answer``,
JSONL with the same fields, and the VQA-v2 JSON pair (questions + annotations, 10 answers each).

``read_vqa(path)`` takes one file (all training data) or a folder holding ``train.*`` (or
``questions.*``) and optionally ``val``/``valid``/``validation`` and ``test`` files. One record per
question. The image is an ``image_path`` column (relative to the file's folder) or ``<image_id>``
with any image extension in ``data.images``, else the file's folder, its ``images/``, then
``../images`` (VQA-v2's ``COCO_<subtype>_<12-digit id>.jpg`` names are found too). An answer cell
holds one answer, or a JSON list of several (soft targets); a JSONL/JSON answer may be a list of
``{"answer": ...}`` objects as in VQA-v2.

Bad input is a one-line error naming the row, or with ``on_bad_image=skip`` left out and counted:
a question naming an image that does not exist, an empty question, an empty answer in a labelled
file, two rows with one ``ID`` (submissions are keyed by it), VQA-v2 annotations that do not match
the questions. Rows repeating another row's image, question and answers under a new ID are kept
and counted (``duplicates``): the summary reports them. A test file with answers is kept
labelled: ``evaluate --split test`` scores it and ``predict`` ignores the answers.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from viewfinder.data.captions import ImageFinder, search_folders
from viewfinder.data.sources import VAL_NAMES, pick_column, read_csv_rows, resolve_image_path
from viewfinder.errors import UserError

ID_COLUMNS = ("ID", "id", "question_id", "qid")
IMAGE_ID_COLUMNS = ("image_id", "img_id", "image", "image_name")
IMAGE_COLUMNS = ("image_path", "img_path", "path", "file_path", "filepath", "filename")
QUESTION_COLUMNS = ("question", "questions", "query")
ANSWER_COLUMNS = ("answer", "answers", "multiple_choice_answer", "label")
SUFFIXES = (".csv", ".jsonl", ".json")
SPLIT_COLUMNS = ("split", "ID", "image_id", "path", "question", "answers")


@dataclass(frozen=True)
class QuestionRecord:
    """One question about one image; ``answers`` is empty for unlabelled (test) questions."""

    id: str
    image_id: str
    path: Path
    question: str
    answers: tuple[str, ...] = ()

    @property
    def label(self) -> str | None:  # the bad-image scan's view
        return self.answers[0] if self.answers else None


@dataclass(frozen=True)
class VQAColumns:
    """Column names (None: detected from the header)."""

    id: str | None = None
    image_id: str | None = None
    image: str | None = None
    question: str | None = None
    answer: str | None = None


@dataclass
class VQASource:
    train: list[QuestionRecord]
    val: list[QuestionRecord] = field(default_factory=list)
    test: list[QuestionRecord] = field(default_factory=list)
    skipped_rows: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    duplicates: int = 0  # rows repeating another row's image, question and answers
    id_column: str = "ID"
    answer_column: str = "answer"


@dataclass
class _Reading:
    """What one file's rows are checked against while reading."""

    origin: Path
    finder: ImageFinder
    skip_bad: bool
    subtype: str = ""  # VQA-v2: train2014 / val2014 (COCO file names)
    seen_ids: dict[str, str] = field(default_factory=dict)  # ID -> where first seen
    seen_rows: set[tuple[str, str, tuple[str, ...]]] = field(default_factory=set)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: int = 0


def answer_cell(value: Any) -> tuple[str, ...]:
    """Answers of one cell: a string (a JSON list when it starts with ``[``), a list of strings,
    or a list of VQA-v2 ``{"answer": ...}`` objects; blanks dropped."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                return (text,)
        else:
            return (text,) if text else ()
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        found = [str(v.get("answer", "")) if isinstance(v, dict) else str(v) for v in value]
        return tuple(a.strip() for a in found if a.strip())
    return () if value is None else (str(value).strip(),)


def _find_image(reading: _Reading, image_id: str) -> Path | None:
    found = reading.finder.find(image_id)
    if found is None and image_id.isdigit():
        for name in (f"COCO_{reading.subtype}_{int(image_id):012d}", f"{int(image_id):012d}"):
            found = found or reading.finder.find(name)
    return found


def _image(
    row: dict[str, Any], cols: VQAColumns, reading: _Reading, where: str
) -> tuple[str, Path]:
    """(image id, existing image file) of one row."""
    if cols.image is not None and str(row.get(cols.image, "")).strip():
        cell = str(row[cols.image]).strip()
        path = resolve_image_path(cell, reading.origin.parent)
        if not path.is_file():
            raise UserError(f"{where}: {cols.image}={cell!r}: image not found ({path})")
        ident = str(row.get(cols.image_id, "")).strip() if cols.image_id else ""
        return ident or path.stem, path
    ident = str(row.get(cols.image_id, "")).strip() if cols.image_id else ""
    if not ident:
        raise UserError(f"{where}: empty {cols.image_id or 'image_id'!r} (the image the question "
                        "is about)")  # fmt: skip
    path = _find_image(reading, ident)
    if path is None:
        raise UserError(f"{where}: {cols.image_id}={ident!r}: no image of that name in "
                        f"{reading.finder.where()}; set images=DIR")  # fmt: skip
    return ident, path


def _record(
    row: dict[str, Any], cols: VQAColumns, reading: _Reading, where: str, labelled: bool
) -> QuestionRecord:
    """One checked record (a ``UserError`` naming ``where`` otherwise)."""
    question = " ".join(str(row.get(cols.question, "") or "").split())
    if not question:
        raise UserError(f"{where}: empty {cols.question!r} (question)")
    answers = answer_cell(row.get(cols.answer)) if cols.answer else ()
    if labelled and not answers:
        raise UserError(f"{where}: empty {cols.answer!r} (answer) in a file with answers")
    ident = str(row.get(cols.id, "")).strip() if cols.id else ""
    if not ident:
        raise UserError(f"{where}: empty {cols.id or 'ID'!r} (question id)")
    if ident in reading.seen_ids:
        raise UserError(f"{where}: {cols.id}={ident!r} repeats {reading.seen_ids[ident]}; "
                        "IDs key the submission, so each must be unique")  # fmt: skip
    image_id, path = _image(row, cols, reading, where)
    reading.seen_ids[ident] = where  # the file too: IDs are unique across train, val and test
    key = (image_id, question.lower(), answers)
    if key in reading.seen_rows:
        reading.duplicates += 1
    reading.seen_rows.add(key)
    return QuestionRecord(ident, image_id, path, question, answers)


def _read_rows(
    rows: Iterable[tuple[str, dict[str, Any]]], cols: VQAColumns, reading: _Reading
) -> list[QuestionRecord]:
    rows = list(rows)
    labelled = cols.answer is not None and any(answer_cell(r.get(cols.answer)) for _, r in rows)
    records = []
    for where, row in rows:
        try:
            records.append(_record(row, cols, reading, where, labelled))
        except UserError as error:
            if not reading.skip_bad:
                raise
            reading.skipped.append((where, str(error).removeprefix(f"{where}: ")))
    return records


def _columns(header: Sequence[str], given: VQAColumns, path: Path) -> VQAColumns:
    def pick(name: str | None, candidates: tuple[str, ...], what: str) -> str | None:
        return pick_column(list(header), name, candidates, what, path, required=name is not None)

    cols = VQAColumns(
        id=pick(given.id, ID_COLUMNS, "id"),
        image_id=pick(given.image_id, IMAGE_ID_COLUMNS, "image_id"),
        image=pick(given.image, IMAGE_COLUMNS, "image"),
        question=pick(given.question, QUESTION_COLUMNS, "question"),
        answer=pick(given.answer, ANSWER_COLUMNS, "answer"),
    )
    if cols.question is None:
        raise UserError(f"{path}: no question column; columns are {list(header)}; "
                        "set question_column=NAME")  # fmt: skip
    if cols.image is None and cols.image_id is None:
        raise UserError(f"{path}: no image_id or image_path column; columns are {list(header)}; "
                        "set image_column=NAME (a path) or id columns")  # fmt: skip
    if cols.id is None:
        raise UserError(f"{path}: no question ID column (ID, question_id); columns are "
                        f"{list(header)}; set id_column=NAME")  # fmt: skip
    return cols


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as error:
                    raise UserError(f"{path}: line {number}: not JSON ({error.msg})") from None
                if not isinstance(row, dict):
                    raise UserError(f"{path}: line {number}: expected a JSON object")
                yield f"{path}: line {number}", row
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except ValueError as error:
        raise UserError(f"{path}: not JSON ({error})") from None


def _annotations_file(questions: Path, subtype: str) -> Path | None:
    """VQA-v2's annotation file beside the questions file (same subtype, e.g. train2014)."""
    named = sorted(p for p in questions.parent.glob("*.json") if "annotation" in p.name.lower())
    return next((p for p in named if subtype and subtype in p.name), named[0] if named else None)


def _vqa_v2_rows(path: Path, data: dict, reading: _Reading) -> list[tuple[str, dict[str, Any]]]:
    """Questions joined with their annotations by question_id; a question or annotation without
    its partner is a bad row."""
    reading.subtype = str(data.get("data_subtype", ""))
    notes_file = _annotations_file(path, reading.subtype)
    notes: dict[str, dict] = {}
    if notes_file is not None:
        for note in _load_json(notes_file).get("annotations", []):
            notes[str(note.get("question_id"))] = note
    rows, asked = [], set()
    for number, q in enumerate(data["questions"]):
        where, qid = f"{path}: questions[{number}]", str(q.get("question_id", ""))
        asked.add(qid)
        note = notes.get(qid)
        if notes and note is None:
            _bad(reading, where, f"question_id={qid} has no annotation in {notes_file}")
            continue
        if note is not None and str(note.get("image_id")) != str(q.get("image_id")):
            _bad(reading, where, f"question_id={qid}: image_id {q.get('image_id')} here, "
                                 f"{note.get('image_id')} in {notes_file}")  # fmt: skip
            continue
        answers = note.get("answers") or note.get("multiple_choice_answer") if note else None
        rows.append((where, {**q, "answers": answers}))
    for qid in notes.keys() - asked:
        _bad(reading, f"{notes_file}", f"annotation question_id={qid} is not in {path}")
    return rows


def _bad(reading: _Reading, where: str, why: str) -> None:
    if not reading.skip_bad:
        raise UserError(f"{where}: {why}")
    reading.skipped.append((where, why))


VQA_V2_COLUMNS = VQAColumns(id="question_id", image_id="image_id", question="question",
                            answer="answers")  # fmt: skip


def _read_file(
    path: Path, given: VQAColumns, images: str | None, skip_bad: bool, ids: dict[str, str]
) -> tuple[list[QuestionRecord], _Reading, VQAColumns]:
    reading = _Reading(path, ImageFinder(search_folders(path.parent, images)), skip_bad,
                       seen_ids=ids)  # fmt: skip
    suffix = path.suffix.lower()
    if suffix == ".csv":
        header, csv_rows = read_csv_rows(path)
        cols = _columns(header, given, path)
        rows: list[tuple[str, dict[str, Any]]] = [(f"{path}: row {n}", r) for n, r in csv_rows]
    elif suffix == ".jsonl":
        rows = list(_jsonl_rows(path))
        if not rows:
            raise UserError(f"{path}: no questions (empty JSONL)")
        cols = _columns(list(dict.fromkeys(k for _, r in rows for k in r)), given, path)
    else:
        data = _load_json(path)
        if isinstance(data, dict) and isinstance(data.get("questions"), list):
            rows, cols = _vqa_v2_rows(path, data, reading), VQA_V2_COLUMNS
        elif isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
            rows = [(f"{path}: [{n}]", r) for n, r in enumerate(data)]
            cols = _columns(list(dict.fromkeys(k for _, r in rows for k in r)), given, path)
        else:
            raise UserError(
                f"{path}: expected VQA-v2 questions JSON ({{'questions': [...]}} with "
                "its annotations file beside it) or a JSON list of question objects"
            )
    return _read_rows(rows, cols, reading), reading, cols


def _split_file(root: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        for suffix in SUFFIXES:
            if (root / f"{name}{suffix}").is_file():
                return root / f"{name}{suffix}"
    return None


def read_vqa(
    path: str | Path,
    *,
    images: str | None = None,
    skip_bad: bool = False,
    columns: VQAColumns = VQAColumns(),
) -> VQASource:
    """A question data set, split as the files split it (see the module doc)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"{root}: data path not found (check the path)")
    files: dict[str, Path | None] = {"train": root}
    if root.is_dir():
        train = _split_file(root, ("train", "questions"))
        if train is None:
            raise UserError(f"{root}: expected a question CSV/JSONL/JSON, or a folder holding "
                            "train.csv (or .jsonl/.json)")  # fmt: skip
        files = {"train": train, "val": _split_file(root, VAL_NAMES),
                 "test": _split_file(root, ("test",))}  # fmt: skip
    elif root.suffix.lower() not in SUFFIXES:
        raise UserError(f"{root}: expected a .csv, .jsonl or .json question file")
    source = VQASource(train=[])
    ids: dict[str, str] = {}  # IDs are unique across every file (one submission)
    for split, file in files.items():
        if file is None:
            continue
        records, reading, cols = _read_file(file, columns, images, skip_bad, ids)
        setattr(source, split, records)
        source.skipped_rows += reading.skipped
        source.duplicates += reading.duplicates
        if split == "train":
            source.id_column, source.answer_column = cols.id or "ID", cols.answer or "answer"
    if not source.train:
        raise UserError(f"{root}: no usable training questions")
    return source


def filter_questions(
    records: Sequence[QuestionRecord],
    *,
    answer_type: str | None = None,
    question_type: str | None = None,
    max_questions: int | None = None,
) -> list[QuestionRecord]:
    """The questions a run trains on: of one answer type (of the most common answer: ``yes/no``,
    ``number``, ``other``), starting with ``question_type`` words, the first ``max_questions``."""
    from viewfinder.data.answers import answer_type as type_of
    from viewfinder.data.text import words

    kept = list(records)
    if answer_type:
        kept = [r for r in kept if r.answers and type_of(main_answer(r.answers)) == answer_type]
    if question_type:
        prefix = words(question_type)
        kept = [r for r in kept if words(r.question)[: len(prefix)] == prefix]
    return kept[:max_questions] if max_questions else kept


def main_answer(answers: Sequence[str]) -> str:
    """The most common normalised answer; ties go to the first listed."""
    from viewfinder.data.answers import most_common_answer, normalize_answer

    return most_common_answer([normalize_answer(a) for a in answers])


def split_by_image(
    records: Sequence[QuestionRecord], val_fraction: float, seed: int
) -> tuple[list[QuestionRecord], list[QuestionRecord]]:
    """Hold out a ``val_fraction`` of the images with all their questions: no image is in both
    parts, so validation measures questions about unseen images."""
    from viewfinder.data.sampling import holdout_split  # imports torch: only when splitting

    images = list(dict.fromkeys(r.image_id for r in records))
    if len(images) < 2:
        raise UserError(f"{len(images)} image(s) with questions: need at least 2 to hold some out")
    _, held = holdout_split(images, val_fraction, seed)
    held_set = set(held)
    return ([r for r in records if r.image_id not in held_set],
            [r for r in records if r.image_id in held_set])  # fmt: skip


def write_vqa_split(path: Path, splits: dict[str, list[QuestionRecord]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(SPLIT_COLUMNS)
        for split, records in splits.items():
            for r in records:
                # absolute, as the other tasks' split files: evaluate/predict/serve may run
                # from another folder than training did
                writer.writerow([split, r.id, r.image_id, os.path.abspath(r.path), r.question,
                                 json.dumps(list(r.answers))])  # fmt: skip


def read_vqa_split(path: Path) -> dict[str, list[QuestionRecord]]:
    splits: dict[str, list[QuestionRecord]] = {"train": [], "val": [], "test": []}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            splits.setdefault(row["split"], []).append(QuestionRecord(
                row["ID"], row["image_id"], Path(row["path"]), row["question"],
                tuple(json.loads(row["answers"])),
            ))  # fmt: skip
    return splits
