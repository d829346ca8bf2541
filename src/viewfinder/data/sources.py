"""Readers that turn a user's folder or CSV into lists of ``ImageRecord``.

``read_classification(path)`` decides the layout by looking at ``path``; the rules, in order:

1. ``path`` is a ``.csv`` file -> **csv**: every row is training data.
2. ``path`` is a folder holding ``train.csv`` -> **csv-dir** (the Dacon layout): ``train.csv``,
   optional ``val.csv`` / ``valid.csv`` / ``validation.csv``, optional ``test.csv``.
3. ``path`` is a folder whose visible sub-folders are all split names (``train``, ``val``,
   ``valid``, ``validation``, ``test``), including ``train/``, and ``train/`` holds sub-folders ->
   **split-folders** (the Kaggle layout): each split is class-per-folder, except that a ``test/``
   with no sub-folders holds unlabelled images.
4. any other folder -> **folders**: each visible sub-folder is a class; everything is train.
   (So a data set with a class called ``train`` next to ``bus`` and ``car`` is read as classes.)

Within class folders images are found recursively; files whose extension is not an image extension
(``.txt``, ``.csv``, ``.DS_Store`` ...) are ignored, as are hidden files and folders (names
starting with ``.``) and ``__MACOSX`` folders left by zip tools. Loose files beside class folders
are ignored. viewfinder's own output is never data, wherever it lands (``data=.`` with the default
``output_dir=runs`` puts the run folders inside the data): folders holding the marker file
``.viewfinder-output`` (every output root, cache and evaluation folder viewfinder writes), run
folders (``config.yaml`` beside ``summary.json``, ``labels.json``, ``metrics.jsonl`` or
``folds.json``), and, for output written before the marker existed, folders holding run folders
two levels down (``runs/<task>/<run>``, ``runs/sweeps/<sweep>/<task>/<run>``) or an image cache.

CSV columns are auto-detected from common names unless given; image paths are resolved relative to
the CSV's folder (Dacon writes ``./train/TRAIN_00000.jpg``). A listed image that does not exist is
not an error here: the bad-image policy (``images.scan_images``) deals with it before training.

Record ids: the CSV id column, else the file stem. When stems collide within one split
(``cat/1.jpg`` and ``dog/1.jpg``), that split's ids become the path relative to the split root
without the extension (``cat/1``), so submission rows stay unique.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from viewfinder.data.images import IMAGE_EXTENSIONS
from viewfinder.data.outputs import is_output_folder
from viewfinder.errors import UserError, did_you_mean

IMAGE_COLUMNS = (
    "img_path", "image_path", "path", "filepath", "file_path", "file", "filename", "file_name",
    "image", "img", "image_name", "img_name",
)  # fmt: skip
LABEL_COLUMNS = ("label", "labels", "class", "class_name", "target", "category", "y")
ID_COLUMNS = ("id", "ID", "image_id", "img_id", "name")

SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
VAL_NAMES = ("val", "valid", "validation")
_IGNORED_DIRS = frozenset({"__MACOSX"})


@dataclass(frozen=True)
class ImageRecord:
    """One image: ``id`` keys a submission row, ``label`` is None for unlabelled (test) data."""

    id: str
    path: Path
    label: str | None


@dataclass
class ClassificationSource:
    """A classification data set as found on disk, split as the data itself splits it."""

    train: list[ImageRecord]
    val: list[ImageRecord] = field(default_factory=list)
    test: list[ImageRecord] = field(default_factory=list)
    id_column: str = "id"
    label_column: str = "label"
    layout: str = "folders"


@dataclass(frozen=True)
class _Columns:
    """Column names resolved for one CSV file (``id``/``label`` may be absent)."""

    image: str
    label: str | None
    id: str | None


# ---------------------------------------------------------------------------- folders


def _visible(entry: Path) -> bool:
    """Hidden files/folders and zip-tool litter are never data."""
    return not entry.name.startswith(".") and entry.name not in _IGNORED_DIRS


def _data_dir(entry: Path) -> bool:
    """A visible folder that is not viewfinder's own output."""
    return entry.is_dir() and _visible(entry) and not is_output_folder(entry)


def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if _data_dir(p)), key=lambda p: p.name)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and _visible(path) and path.is_file()


def _direct_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if _is_image(p)), key=lambda p: p.name)


def _walk_images(folder: Path) -> Iterator[Path]:
    """Every image under ``folder``, recursively, skipping hidden folders and viewfinder output."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if _data_dir(Path(root, d))]
        for name in files:
            candidate = Path(root, name)
            if _is_image(candidate):
                yield candidate


def _make_ids(paths: list[Path], root: Path) -> list[str]:
    """File stems, or root-relative paths without extension when stems collide (see module doc)."""
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [p.relative_to(root).with_suffix("").as_posix() for p in paths]


def _records(paths: list[Path], labels: list[str | None], root: Path) -> list[ImageRecord]:
    order = sorted(range(len(paths)), key=lambda i: paths[i].as_posix())
    paths = [paths[i].absolute() for i in order]
    labels = [labels[i] for i in order]
    ids = _make_ids(paths, root.absolute())
    return [
        ImageRecord(id=i, path=p, label=lab) for i, p, lab in zip(ids, paths, labels, strict=True)
    ]


def _read_class_folders(folder: Path) -> list[ImageRecord]:
    """Class-per-folder: each visible sub-folder is a class holding (recursively) its images."""
    classes = _subdirs(folder)
    if not classes:
        if _direct_images(folder):
            raise UserError(
                f"{folder}: holds images but no class folders; put each class in its own "
                f"sub-folder ({folder}/CLASS/image.jpg) or give a CSV with a label column"
            )
        raise UserError(f"{folder}: folder has no images and no class folders")
    paths: list[Path] = []
    labels: list[str | None] = []
    for class_dir in classes:
        found = list(_walk_images(class_dir))
        if not found:
            raise UserError(f"{class_dir}: class folder has no images (add images or remove it)")
        paths += found
        labels += [class_dir.name] * len(found)
    return _records(paths, labels, folder)


def _read_image_folder(folder: Path) -> list[ImageRecord]:
    """Unlabelled: every image under ``folder``, recursively, sorted by path."""
    paths = list(_walk_images(folder))
    if not paths:
        raise UserError(f"{folder}: folder has no images")
    return _records(paths, [None] * len(paths), folder)


def _read_test_folder(folder: Path) -> list[ImageRecord]:
    """A test folder is class-per-folder when it has sub-folders, else plain (unlabelled) images."""
    return _read_class_folders(folder) if _subdirs(folder) else _read_image_folder(folder)


def _is_split_layout(folder: Path) -> bool:
    subdirs = _subdirs(folder)
    names = {d.name for d in subdirs}
    return "train" in names and names <= set(SPLIT_NAMES) and bool(_subdirs(folder / "train"))


def _find_one(folder: Path, names: tuple[str, ...], *, suffix: str = "") -> Path | None:
    """The single existing ``folder/name+suffix`` among ``names``; two of them is ambiguous."""
    found = [folder / (n + suffix) for n in names if (folder / (n + suffix)).exists()]
    if len(found) > 1:
        listed = " and ".join(p.name for p in found)
        raise UserError(f"{folder}: both {listed} exist; keep one validation split")
    return found[0] if found else None


def _read_split_folders(folder: Path) -> ClassificationSource:
    val_dir = _find_one(folder, VAL_NAMES)
    test_dir = folder / "test"
    return ClassificationSource(
        train=_read_class_folders(folder / "train"),
        val=_read_class_folders(val_dir) if val_dir else [],
        test=_read_test_folder(test_dir) if test_dir.is_dir() else [],
        layout="split-folders",
    )


# ---------------------------------------------------------------------------- CSV


def pick_column(
    header: list[str],
    given: str | None,
    candidates: tuple[str, ...],
    what: str,
    csv_path: Path,
    *,
    required: bool = True,
) -> str | None:
    """The configured column or the first known name present (exact, then any case).

    A configured column that is missing is an error when ``required``; otherwise (a label column
    on test data, which may legitimately have no labels) it is simply absent.
    """
    if given is not None:
        if given not in header and not required:
            return None
        if given not in header:
            raise UserError(
                f"{csv_path}: {what}_column {given!r} is not a column; columns are {header}"
                f"{did_you_mean(given, header)}; set {what}_column=NAME"
            )
        return given
    for name in candidates:
        if name in header:
            return name
    lowered = {h.lower(): h for h in header}
    for name in candidates:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _resolve_columns(
    header: list[str],
    csv_path: Path,
    *,
    image_column: str | None,
    label_column: str | None,
    id_column: str | None,
    require_label: bool,
) -> _Columns:
    image = pick_column(header, image_column, IMAGE_COLUMNS, "image", csv_path)
    if image is None:
        raise UserError(
            f"{csv_path}: no image column found; columns are {header}; set image_column=NAME"
        )
    label = pick_column(
        header, label_column, LABEL_COLUMNS, "label", csv_path, required=require_label
    )
    ident = pick_column(header, id_column, ID_COLUMNS, "id", csv_path)
    return _Columns(image=image, label=label, id=ident)


def read_csv_rows(csv_path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line number, row dict) pairs, blank lines dropped.

    utf-8-sig so an Excel BOM does not end up in the first column name.
    """
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            for row in reader:
                if any(cell.strip() for cell in row):
                    cells = (c.strip() for c in row)
                    rows.append((reader.line_num, dict(zip(header, cells, strict=False))))
    except UnicodeDecodeError as error:
        raise UserError(
            f"{csv_path}: not UTF-8 text ({error.reason} at byte {error.start}); "
            "save the CSV as UTF-8"
        ) from error
    except csv.Error as error:
        raise UserError(f"{csv_path}: not a readable CSV ({error})") from error
    if not header or not any(header):
        raise UserError(f"{csv_path}: CSV file is empty (no header row)")
    if not rows:
        raise UserError(f"{csv_path}: CSV has no rows (only a header: {header})")
    return header, rows


def resolve_image_path(cell: str, base: Path) -> Path:
    """Resolve a CSV path cell: relative to the CSV's folder, normalised, absolute kept."""
    raw = Path(cell.replace("\\", "/")) if os.sep == "/" else Path(cell)
    full = raw if raw.is_absolute() else base.absolute() / raw
    return Path(os.path.normpath(full))


def _duplicate_id(
    csv_path: Path, ident: str, rows: tuple[int, int], column: str | None
) -> UserError:
    """Submissions are keyed by id, so two rows with one id would silently overwrite each other."""
    where = f"rows {rows[0]} and {rows[1]}"
    if column is None:
        return UserError(
            f"{csv_path}: {where} have the same file name {ident!r}, which is the id when there is "
            "no id column; add a unique id column or set id_column=NAME"
        )
    return UserError(f"{csv_path}: duplicate id {ident!r} in {where}; ids must be unique")


def _read_csv(
    csv_path: Path,
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    require_label: bool,
) -> tuple[list[ImageRecord], _Columns]:
    """Read one CSV into records (file order). Empty label cells are errors only when required."""
    header, rows = read_csv_rows(csv_path)
    cols = _resolve_columns(
        header,
        csv_path,
        image_column=image_column,
        label_column=label_column,
        id_column=id_column,
        require_label=require_label,
    )
    if require_label and cols.label is None:
        raise UserError(
            f"{csv_path.name} has no label column; columns are {header}; set label_column=NAME"
        )
    records: list[ImageRecord] = []
    seen: dict[str, int] = {}
    for number, row in rows:  # numbered like a spreadsheet: the header is row 1
        cell = row.get(cols.image, "")
        if not cell:
            raise UserError(f"{csv_path}: row {number} has an empty {cols.image!r} (image path)")
        path = resolve_image_path(cell, csv_path.parent)
        label = row.get(cols.label, "") if cols.label else ""
        if require_label and not label:
            raise UserError(f"{csv_path}: row {number} has an empty label in column {cols.label!r}")
        ident = row.get(cols.id, "") if cols.id else path.stem
        if not ident:
            raise UserError(f"{csv_path}: row {number} has an empty id in column {cols.id!r}")
        if ident in seen:
            raise _duplicate_id(csv_path, ident, (seen[ident], number), cols.id)
        seen[ident] = number
        records.append(ImageRecord(id=ident, path=path, label=label or None))
    return records, cols


def _read_csv_dir(
    folder: Path, *, image_column: str | None, label_column: str | None, id_column: str | None
) -> ClassificationSource:
    """Dacon layout: ``train.csv`` (+ optional val/test CSVs); test labels are optional."""
    columns = {"image_column": image_column, "label_column": label_column, "id_column": id_column}
    train, cols = _read_csv(folder / "train.csv", require_label=True, **columns)
    val_csv = _find_one(folder, VAL_NAMES, suffix=".csv")
    val = _read_csv(val_csv, require_label=True, **columns)[0] if val_csv else []
    test: list[ImageRecord] = []
    if (folder / "test.csv").is_file():
        test = _read_csv(folder / "test.csv", require_label=False, **columns)[0]
    return ClassificationSource(
        train=train,
        val=val,
        test=test,
        id_column=cols.id or "id",
        label_column=cols.label or "label",
        layout="csv-dir",
    )


def _read_unlabelled(
    path: str | Path,
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
) -> list[ImageRecord]:
    """``read_unlabelled`` plus an optional label column, used for a training set's test split."""
    root = _existing(path, "path")
    if _is_csv(root):
        columns = {"image_column": image_column, "label_column": label_column}
        return _read_csv(root, id_column=id_column, require_label=False, **columns)[0]
    if not root.is_dir():
        raise UserError(f"{root}: expected a folder of images or a .csv file")
    if _subdirs(root) and not _direct_images(root):
        return _read_class_folders(root)
    return _read_image_folder(root)


# ---------------------------------------------------------------------------- public


def _existing(path: str | Path, what: str) -> Path:
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise UserError(f"{resolved}: {what} not found (check the path)")
    return resolved


def _is_csv(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv"


def _check_labels_seen(source: ClassificationSource) -> None:
    """A label the model never trains on cannot be predicted: fail now, not after training."""
    known = {r.label for r in source.train}
    for split in ("val", "test"):
        for record in getattr(source, split):
            if record.label is not None and record.label not in known:
                raise UserError(
                    f"label {record.label!r} appears in {split} but not in train "
                    f"(first at {record.path}); add training images for it or remove it"
                )


def read_classification(
    path: str | Path,
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    test_path: str | Path | None = None,
) -> ClassificationSource:
    """Read a labelled classification data set in any supported layout (see the module doc)."""
    root = _existing(path, "data path")
    columns = {"image_column": image_column, "label_column": label_column, "id_column": id_column}
    if _is_csv(root):
        records, cols = _read_csv(root, require_label=True, **columns)
        source = ClassificationSource(
            train=records,
            id_column=cols.id or "id",
            label_column=cols.label or "label",
            layout="csv",
        )
    elif root.is_dir() and (root / "train.csv").is_file():
        source = _read_csv_dir(root, **columns)
    elif root.is_dir() and _is_split_layout(root):
        source = _read_split_folders(root)
    elif root.is_dir():
        source = ClassificationSource(train=_read_class_folders(root), layout="folders")
    else:
        raise UserError(f"{root}: expected a folder of images or a .csv file")
    if test_path is not None:
        source.test = _read_unlabelled(test_path, **columns)
    _check_labels_seen(source)
    return source


def read_unlabelled(
    path: str | Path, *, image_column: str | None = None, id_column: str | None = None
) -> list[ImageRecord]:
    """Read images to predict on; labels are kept when the data has them (for scoring).

    Accepts a CSV (label column auto-detected), a folder of images (recursive, sorted by path), or
    a class-per-folder tree (a folder with sub-folders and no loose images; labels = folder names).
    """
    return _read_unlabelled(path, image_column=image_column, id_column=id_column)


def read_label_map(path: str | Path) -> dict[str, str]:
    """A label map CSV: two columns, fine label -> coarse label (header row optional).

    e.g. ``apple,fruit`` / ``carrot,vegetable``: derives a coarse task from fine labels.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"label map not found: {p}")
    with p.open(newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if rows and [c.strip().lower() for c in rows[0][:2]] in (
        ["fine", "coarse"],
        ["label", "group"],
    ):
        rows = rows[1:]
    bad = next((row for row in rows if len(row) < 2 or not row[1].strip()), None)
    if bad is not None or not rows:
        raise UserError(f"{p}: each row must be fine_label,coarse_label (bad row: {bad})")
    return {row[0].strip(): row[1].strip() for row in rows}


def map_labels(records: list[ImageRecord], label_map: str | Path | None) -> list[ImageRecord]:
    """Records with their labels mapped through ``label_map`` (unchanged when it is None)."""
    if label_map is None:
        return records
    mapping = read_label_map(label_map)
    missing = sorted({r.label for r in records if r.label is not None} - mapping.keys())
    if missing:
        raise UserError(f"{label_map}: no coarse label for {missing[:3]} (add rows fine,coarse)")
    return [
        ImageRecord(r.id, r.path, None if r.label is None else mapping[r.label]) for r in records
    ]
