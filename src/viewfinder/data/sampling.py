"""Train/validation splits that are reproducible and can be written next to a run.

Splits are stratified so a rare class is not left out of validation by chance, and seeded so the
same data and seed give the same split on any machine. A split is saved as a small CSV in the run
folder (``split,id,path,label``) so ``evaluate`` and ``compare`` score on exactly the images the run
held out, even if the data folder gains files later.
"""

from __future__ import annotations

import csv
import math
import numbers
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from viewfinder.data.sources import ImageRecord
from viewfinder.errors import UserError

SPLIT_COLUMNS = ("split", "id", "path", "label")
STANDARD_SPLITS = ("train", "val", "test")


def _validate_fraction(val_fraction: float) -> None:
    valid = (
        isinstance(val_fraction, numbers.Real)
        and not isinstance(val_fraction, bool)
        and 0 < val_fraction < 1  # NaN fails this comparison too
    )
    if not valid:
        raise UserError(
            f"val_fraction={val_fraction!r} must be a number between 0 and 1 (exclusive), "
            "e.g. val_fraction=0.2"
        )


def _class_rng(seed: int, label: str) -> np.random.Generator:
    """One generator per class, keyed by the label text.

    Keying by label (not by class order) means adding or removing a class leaves every other
    class's split unchanged; crc32 is stable across processes, unlike ``hash``.
    """
    return np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])


def stratified_split(
    labels: Sequence[str], *, val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split indices of ``labels`` into (train, val), class by class, both sorted.

    Each class puts ``round(n * val_fraction)`` items in val, but at least 1 and at most ``n - 1``
    when it has 2 or more items, so every class is both trained on and validated; a class with a
    single item stays in train.
    """
    _validate_fraction(val_fraction)
    by_class: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(str(label), []).append(index)
    train: list[int] = []
    val: list[int] = []
    for label in sorted(by_class):
        indices = np.asarray(by_class[label])
        count = len(indices)
        n_val = 0 if count < 2 else min(max(math.floor(count * val_fraction + 0.5), 1), count - 1)
        shuffled = _class_rng(seed, label).permutation(indices)
        val.extend(int(i) for i in shuffled[:n_val])
        train.extend(int(i) for i in shuffled[n_val:])
    return sorted(train), sorted(val)


def write_split(path: Path, records_by_split: dict[str, list[ImageRecord]]) -> None:
    """Write ``split,id,path,label`` rows (empty label for unlabelled records)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SPLIT_COLUMNS)
        for split, records in records_by_split.items():
            for record in records:
                label = "" if record.label is None else record.label
                writer.writerow([split, record.id, record.path.as_posix(), label])


def read_split(path: Path) -> dict[str, list[ImageRecord]]:
    """Read a file written by ``write_split``.

    The result always has "train", "val" and "test" (empty when absent), then any other split
    names in file order. Relative paths are taken relative to the split file's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: split file not found (check the path or re-run training)")
    splits: dict[str, list[ImageRecord]] = {name: [] for name in STANDARD_SPLITS}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in SPLIT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(
                f"{path}: not a split file; missing columns {missing} "
                f"(expected {', '.join(SPLIT_COLUMNS)})"
            )
        for row in reader:
            image = Path(row["path"])
            image = image if image.is_absolute() else path.parent / image
            record = ImageRecord(id=row["id"], path=image, label=row["label"] or None)
            splits.setdefault(row["split"], []).append(record)
    return splits
