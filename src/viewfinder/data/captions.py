"""Readers for captioned images: ``image_id,caption`` CSVs, the camera-quality challenge's
``img_name,img_path,mos,comments`` CSV (the comments are the captions), and COCO-captions JSON
(``images`` + ``annotations``).

``read_captions(path)`` takes one file (all training data) or a folder holding ``train.csv`` (or
``train.json``) and optionally a validation file (``val``/``valid``/``validation``) and ``test``.
One record per image, with every caption of it (rows repeating an image add captions; a cell may
hold a JSON list). Images are found from a path column (relative to the CSV's folder) or from an
id column: ``<id>`` with any image extension in ``data.images``, else the CSV's folder, its
``images/`` folder, then ``../images``. A row naming an image that does not exist, or a training
image with no caption, is a one-line error naming the row and column; with ``on_bad_image=skip``
it is left out and counted. A labelled test file is kept as it is: its captions score the test
split (``evaluate --split test``), and ``predict`` ignores them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from viewfinder.data.images import IMAGE_EXTENSIONS
from viewfinder.data.quality import (
    COMMENT_COLUMNS,
    ID_COLUMNS,
    IMAGE_COLUMNS,
    QualityColumns,
    QualityRecord,
    QualitySource,
    comment_list,
)
from viewfinder.data.sources import VAL_NAMES, pick_column, read_csv_rows, resolve_image_path
from viewfinder.errors import UserError


class ImageFinder:
    """``<id>`` -> the image file of that name (any image extension) in the first folder that
    has it; each folder is listed once (fast on 100,000 files)."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self.folders = [f for f in folders if f.is_dir()]
        self._index: list[dict[str, Path]] | None = None

    def _build(self) -> list[dict[str, Path]]:
        index = []
        for folder in self.folders:
            names: dict[str, Path] = {}
            for entry in sorted(folder.iterdir()):
                if entry.suffix.lower() in IMAGE_EXTENSIONS:
                    names.setdefault(entry.stem, entry)
                    names[entry.name] = entry
            index.append(names)
        return index

    def find(self, ident: str) -> Path | None:
        if self._index is None:
            self._index = self._build()
        return next((names[ident] for names in self._index if ident in names), None)

    def where(self) -> str:
        return ", ".join(str(f) for f in self.folders) or "no existing image folder"


def search_folders(base: Path, images: str | None) -> list[Path]:
    """Where images named by id are looked for (see the module doc)."""
    if images:
        folder = Path(images).expanduser()
        if not folder.is_dir():
            raise UserError(f"images={images}: folder not found")
        return [folder]
    return [base, base / "images", base.parent / "images"]


def _caption_columns(header: list[str], given: QualityColumns, csv_path: Path) -> QualityColumns:
    def pick(name: str | None, candidates: tuple[str, ...], what: str) -> str | None:
        return pick_column(header, name, candidates, what, csv_path, required=name is not None)

    image = pick(given.image, IMAGE_COLUMNS, "image")
    ident = pick(given.id, ID_COLUMNS, "id")
    if image is None and ident is None:
        raise UserError(f"{csv_path}: no image or image id column; columns are {header}; "
                        "set image_column=NAME or id_column=NAME")  # fmt: skip
    return QualityColumns(image=image, id=ident, comments=pick(given.comments, COMMENT_COLUMNS,
                                                               "comments"))  # fmt: skip


def read_caption_csv(
    csv_path: Path,
    columns: QualityColumns = QualityColumns(),
    *,
    images: str | None = None,
    skip_bad: bool = False,
) -> tuple[list[QualityRecord], list[tuple[str, str]], QualityColumns]:
    """Records of one CSV (order of first appearance), skipped rows, resolved columns."""
    header, rows = read_csv_rows(csv_path)
    cols = _caption_columns(header, columns, csv_path)
    finder = ImageFinder(search_folders(csv_path.parent, images))
    found: dict[str, tuple[Path, list[str]]] = {}
    skipped: list[tuple[str, str]] = []
    for number, row in rows:
        where = f"{csv_path}: row {number}"
        try:
            ident, path = _row_image(row, cols, csv_path, finder, where)
        except UserError as error:
            if not skip_bad:
                raise
            skipped.append((where, str(error).removeprefix(f"{where}: ")))
            continue
        texts = comment_list(row.get(cols.comments, "")) if cols.comments else []
        found.setdefault(ident, (path, []))[1].extend(texts)
    records = [QualityRecord(i, p, None, tuple(c)) for i, (p, c) in found.items()]
    return records, skipped, cols


def _row_image(
    row: dict[str, str], cols: QualityColumns, csv_path: Path, finder: ImageFinder, where: str
) -> tuple[str, Path]:
    """(image id, existing image file) of one row."""
    if cols.image is not None:
        cell = row.get(cols.image, "")
        if not cell:
            raise UserError(f"{where}: empty {cols.image!r} (image path)")
        path = resolve_image_path(cell, csv_path.parent)
        ident = row.get(cols.id, "") if cols.id else path.stem
        if not path.is_file():
            raise UserError(f"{where}: {cols.image}={cell!r}: image not found ({path})")
        return ident or path.stem, path
    ident = row.get(cols.id, "")
    if not ident:
        raise UserError(f"{where}: empty {cols.id!r} (image id)")
    path = finder.find(ident)
    if path is None:
        raise UserError(f"{where}: {cols.id}={ident!r}: no image of that name in "
                        f"{finder.where()}; set images=DIR")  # fmt: skip
    return ident, path


def read_coco_json(
    json_path: Path, *, images: str | None = None, skip_bad: bool = False
) -> tuple[list[QualityRecord], list[tuple[str, str]]]:
    """COCO captions: ``images`` (``id``, ``file_name``) and ``annotations`` (``image_id``,
    ``caption``)."""
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
        entries, notes = data["images"], data["annotations"]
        files = {str(e["id"]): str(e["file_name"]) for e in entries}
        pairs = [(str(a["image_id"]), str(a["caption"])) for a in notes]
    except UnicodeDecodeError as error:
        raise UserError(f"{json_path}: not UTF-8 text ({error.reason})") from None
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{json_path}: not COCO captions JSON (images: id, file_name; "
                        f"annotations: image_id, caption): {error!s:.80}") from None  # fmt: skip
    finder = ImageFinder(search_folders(json_path.parent, images))
    captions: dict[str, list[str]] = {i: [] for i in files}
    skipped: list[tuple[str, str]] = []
    for number, (ident, text) in enumerate(pairs):
        if ident not in captions:
            where = f"{json_path}: annotations[{number}]"
            if not skip_bad:
                raise UserError(f"{where}: image_id={ident!r} is not in images")
            skipped.append((where, f"image_id={ident!r} is not in images"))
        elif text.strip():
            captions[ident].append(text.strip())
    records = []
    for ident, name in files.items():
        path = finder.find(name) or finder.find(Path(name).stem)
        if path is None:
            where = f"{json_path}: image {ident}"
            if not skip_bad:
                raise UserError(f"{where}: file_name={name!r} not found in {finder.where()}; "
                                "set images=DIR")  # fmt: skip
            skipped.append((where, f"file_name={name!r} not found"))
            continue
        records.append(QualityRecord(ident, path, None, tuple(captions[ident])))
    return records, skipped


def _read_file(
    path: Path, columns: QualityColumns, images: str | None, skip_bad: bool
) -> tuple[list[QualityRecord], list[tuple[str, str]], str, str]:
    """(records, skipped rows, id column, caption column) of a CSV or COCO JSON file."""
    if path.suffix.lower() == ".json":
        records, skipped = read_coco_json(path, images=images, skip_bad=skip_bad)
        return records, skipped, "image_id", "caption"
    records, skipped, cols = read_caption_csv(path, columns, images=images, skip_bad=skip_bad)
    return records, skipped, cols.id or "image_id", cols.comments or "caption"


def _split_file(root: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        for suffix in (".csv", ".json"):
            if (root / f"{name}{suffix}").is_file():
                return root / f"{name}{suffix}"
    return None


def read_captions(
    path: str | Path,
    columns: QualityColumns = QualityColumns(),
    *,
    images: str | None = None,
    skip_bad: bool = False,
) -> tuple[QualitySource, str]:
    """A caption data set and the name of its caption column (the submission's, e.g.
    ``comments`` for the challenge CSV, ``caption`` otherwise)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"{root}: data path not found (check the path)")
    files = {"train": root}
    if root.is_dir():
        train = _split_file(root, ("train",))
        if train is None:
            raise UserError(f"{root}: expected a caption CSV / COCO JSON, or a folder holding "
                            "train.csv or train.json")  # fmt: skip
        files = {"train": train, "val": _split_file(root, VAL_NAMES),
                 "test": _split_file(root, ("test",))}  # fmt: skip
    elif root.suffix.lower() not in (".csv", ".json"):
        raise UserError(f"{root}: expected a .csv or COCO .json caption file")
    source = QualitySource(train=[])
    text_column = "caption"
    for split, file in files.items():
        if file is None:
            continue
        records, skipped, id_column, column = _read_file(file, columns, images, skip_bad)
        setattr(source, split, records)
        source.skipped_rows += skipped
        if split == "train":
            source.id_column, text_column = id_column, column
    return source, text_column
