"""Readers for image-quality data: the camera-quality challenge's CSV
``img_name,img_path,mos,comments``.

``read_quality(path)`` takes a ``.csv`` file (every row is training data) or a folder holding
``train.csv`` and optionally ``val.csv`` / ``valid.csv`` / ``validation.csv`` and ``test.csv``
(a test CSV may leave out ``mos`` and ``comments``). Columns are detected (image: ``img_path``,
``path`` ...; id: ``img_name``, ``image_name``, ``id`` ...; MOS: ``mos``, ``score`` ...; comments:
``comments``, ``comment``, ``caption`` ...) or set with ``image_column=``, ``id_column=``,
``mos_column=``, ``comments_column=``. Paths are relative to the CSV's folder.

One record per image: rows that repeat an id add their comments to it (and must give the same MOS);
a comments cell may also hold a JSON list (``["too dark", "noisy sky"]``). A row whose MOS is not
a number, is NaN or lies outside ``mos_range`` is a one-line error naming the file, row and column,
or, with ``on_bad_image=skip``, is left out and counted. Empty comments are allowed: MOS without
captions is the ``iqa`` task's usual data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from viewfinder.data.sources import VAL_NAMES, pick_column, read_csv_rows, resolve_image_path
from viewfinder.errors import UserError

IMAGE_COLUMNS = ("img_path", "image_path", "path", "filepath", "file_path", "filename", "file")
ID_COLUMNS = ("img_name", "image_name", "id", "ID", "image_id", "name")
MOS_COLUMNS = ("mos", "MOS", "score", "quality", "mean_opinion_score", "dmos")
COMMENT_COLUMNS = ("comments", "comment", "caption", "captions", "text")


@dataclass(frozen=True)
class QualityRecord:
    """One image: ``mos`` is None for unlabelled (test) data; ``comments`` may be empty."""

    id: str
    path: Path
    mos: float | None
    comments: tuple[str, ...] = ()

    @property
    def label(self) -> float | None:  # the split writer's and bad-image scan's view
        return self.mos


@dataclass
class QualitySource:
    train: list[QualityRecord]
    val: list[QualityRecord] = field(default_factory=list)
    test: list[QualityRecord] = field(default_factory=list)
    id_column: str = "img_name"
    skipped_rows: list[tuple[str, str]] = field(default_factory=list)  # (where, why)


@dataclass(frozen=True)
class QualityColumns:
    image: str | None = None
    id: str | None = None
    mos: str | None = None
    comments: str | None = None


def parse_range(text: str | None) -> tuple[float, float] | None:
    """``"0,10"`` -> (0.0, 10.0); None stays None (the range then comes from the data)."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise UserError(f"mos_range={text!r}: write two numbers LOW,HIGH (e.g. 0,10)") from None
    if not low < high:
        raise UserError(f"mos_range={text!r}: LOW must be below HIGH")
    return low, high


def comment_list(cell: str) -> list[str]:
    cell = cell.strip()
    if cell.startswith("["):
        try:
            items = json.loads(cell)
        except ValueError:
            return [cell]
        return [str(c).strip() for c in items if str(c).strip()]
    return [cell] if cell else []


def _mos(cell: str, where: str, column: str, mos_range: tuple[float, float] | None) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise UserError(f"{where}: {column}={cell!r} is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{where}: {column}={cell!r} is not a finite number")
    if mos_range is not None and not mos_range[0] <= value <= mos_range[1]:
        raise UserError(f"{where}: {column}={value:g} is outside mos_range={mos_range[0]:g},"
                        f"{mos_range[1]:g}")  # fmt: skip
    return value


def _columns(
    header: list[str], given: QualityColumns, csv_path: Path, labelled: bool
) -> QualityColumns:
    """Resolved columns; a configured MOS/comments column must exist in labelled CSVs (a test
    CSV may lack them)."""

    def pick(
        name: str | None, candidates: tuple[str, ...], what: str, required: bool
    ) -> str | None:
        return pick_column(header, name, candidates, what, csv_path, required=required)

    image = pick(given.image, IMAGE_COLUMNS, "image", True) or pick(None, ID_COLUMNS, "id", False)
    if image is None:
        raise UserError(f"{csv_path}: no image column; columns are {header}; set image_column=NAME")
    return QualityColumns(
        image=image,
        id=pick(given.id, ID_COLUMNS, "id", True),
        mos=pick(given.mos, MOS_COLUMNS, "mos", labelled and given.mos is not None),
        comments=pick(
            given.comments, COMMENT_COLUMNS, "comments", labelled and given.comments is not None
        ),
    )


def read_quality_csv(
    csv_path: Path,
    columns: QualityColumns = QualityColumns(),
    *,
    require_mos: bool,
    mos_range: tuple[float, float] | None = None,
    skip_bad: bool = False,
) -> tuple[list[QualityRecord], list[tuple[str, str]], QualityColumns]:
    """Records of one CSV (file order of first appearance), bad rows skipped, resolved columns."""
    header, rows = read_csv_rows(csv_path)
    cols = _columns(header, columns, csv_path, require_mos)
    if require_mos and cols.mos is None:
        raise UserError(f"{csv_path}: no MOS column; columns are {header}; set mos_column=NAME")
    found: dict[str, tuple[int, Path, float | None, list[str]]] = {}
    skipped: list[tuple[str, str]] = []
    for number, row in rows:
        where = f"{csv_path}: row {number}"
        try:
            cell = row.get(cols.image, "")
            if not cell:
                raise UserError(f"{where}: empty {cols.image!r} (image path)")
            path = resolve_image_path(cell, csv_path.parent)
            ident = row.get(cols.id, "") if cols.id else path.stem
            mos_cell = row.get(cols.mos, "") if cols.mos else ""
            if require_mos and not mos_cell:
                raise UserError(f"{where}: empty {cols.mos!r} (MOS)")
            mos = _mos(mos_cell, where, cols.mos, mos_range) if mos_cell else None
            if ident in found and found[ident][2] != mos:
                raise UserError(f"{where}: {ident!r} has MOS {mos} here but {found[ident][2]} in "
                                f"row {found[ident][0]}; one image has one MOS")  # fmt: skip
        except UserError as error:
            if not skip_bad:
                raise
            skipped.append((where, str(error).removeprefix(f"{where}: ")))
            continue
        comments = comment_list(row.get(cols.comments, "")) if cols.comments else []
        found.setdefault(ident, (number, path, mos, []))[3].extend(comments)
    records = [QualityRecord(i, p, m, tuple(c)) for i, (_, p, m, c) in found.items()]
    return records, skipped, cols


def read_quality(
    path: str | Path,
    columns: QualityColumns = QualityColumns(),
    *,
    mos_range: tuple[float, float] | None = None,
    skip_bad: bool = False,
) -> QualitySource:
    """A quality data set: one CSV (all training data) or a folder of train/val/test CSVs."""
    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"{root}: data path not found (check the path)")
    options = {"mos_range": mos_range, "skip_bad": skip_bad}
    if root.is_file() and root.suffix.lower() == ".csv":
        train, skipped, cols = read_quality_csv(root, columns, require_mos=True, **options)
        return QualitySource(train=train, id_column=cols.id or "img_name", skipped_rows=skipped)
    if not (root.is_dir() and (root / "train.csv").is_file()):
        raise UserError(f"{root}: expected a quality CSV (img_name,img_path,mos,comments) or a "
                        "folder holding train.csv")  # fmt: skip
    train, skipped, cols = read_quality_csv(
        root / "train.csv", columns, require_mos=True, **options
    )
    source = QualitySource(train=train, id_column=cols.id or "img_name", skipped_rows=skipped)
    val_csv = next((root / f"{n}.csv" for n in VAL_NAMES if (root / f"{n}.csv").is_file()), None)
    if val_csv is not None:
        source.val, more, _ = read_quality_csv(val_csv, columns, require_mos=True, **options)
        source.skipped_rows += more
    if (root / "test.csv").is_file():
        source.test, more, _ = read_quality_csv(
            root / "test.csv", columns, require_mos=False, **options
        )
        source.skipped_rows += more
    return source


SPLIT_COLUMNS = ("split", "id", "path", "mos", "comments")


def write_quality_split(path: Path, splits: dict[str, list[QualityRecord]]) -> None:
    """The run's split: ``split,id,path,mos,comments`` (comments as a JSON list)."""
    import csv

    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SPLIT_COLUMNS)
        for split, records in splits.items():
            for r in records:
                mos = "" if r.mos is None else repr(r.mos)
                writer.writerow([split, r.id, r.path.as_posix(), mos, json.dumps(list(r.comments))])


def read_quality_split(path: Path) -> dict[str, list[QualityRecord]]:
    """Read what ``write_quality_split`` wrote (train, val and test always present)."""
    import csv

    splits: dict[str, list[QualityRecord]] = {"train": [], "val": [], "test": []}
    with Path(path).open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            mos = float(row["mos"]) if row["mos"] else None
            record = QualityRecord(
                row["id"], Path(row["path"]), mos, tuple(json.loads(row["comments"]))
            )
            splits.setdefault(row["split"], []).append(record)
    return splits
