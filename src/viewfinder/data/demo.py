"""The built-in generated demo data set, behind ``viewfinder demo``.

Why generated: the demo must run offline, in seconds, with labels we can check. Why in the users'
formats (class-per-folder, Dacon CSVs, VQA/caption/IQA CSVs): so the demo exercises the same readers
real data goes through. Images are coloured shapes on noisy backgrounds (see ``demo_draw``); the
classification label is the kind of the largest shape. Generation is deterministic: every random
choice comes from ``numpy.random.default_rng([seed, stream, index])``, so the same parameters give
byte-identical files, and image ``i`` does not depend on ``count``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from viewfinder.data.demo_draw import COLORS, DISTORTIONS, SHAPES, distort, render_image
from viewfinder.data.demo_text import captions, quality_comment, vqa_pairs
from viewfinder.errors import UserError

__all__ = ["COLORS", "SHAPES", "DemoPaths", "ensure_demo", "generate_demo"]

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
_FRACTIONS = (0.70, 0.15)  # train, val; test gets the rest
# Random streams: one independent generator per purpose (and per image where it matters).
_PLAN, _IMAGE, _IQA_PICK, _IQA, _VQA = range(5)
# Everything generate_demo writes at the root; only these are removed when regenerating.
_OWNED = ("images", "classify", "classify_csv", "vqa", "caption", "iqa", "annotations.jsonl")
_OWNED_FILES = ("README.md", "demo.json", ".demo_partial")
_PARTIAL = ".demo_partial"  # present while generating, so an interrupted run can be redone


@dataclass(frozen=True)
class DemoPaths:
    """Where each task's copy of the demo data lives."""

    root: Path
    classify: Path
    classify_csv: Path
    vqa: Path
    caption: Path
    iqa: Path

    @classmethod
    def under(cls, root: Path) -> DemoPaths:
        """The standard layout below ``root``."""
        names = ("classify", "classify_csv", "vqa", "caption", "iqa")
        return cls(root, *(root / name for name in names))


@dataclass(frozen=True)
class _Plan:
    """Per-image label and split, decided before drawing, so drawing can stream to disk."""

    labels: list[str]
    splits: list[str]
    in_classify: list[bool]  # False for train images dropped to make the long tail
    in_iqa: list[bool]


def _validate(root: Path, seed: int, size: int, count: int, long_tail: float | None) -> None:
    """Reject bad arguments with one line naming the argument."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 32 <= size <= 512:
        raise UserError(f"size must be an integer pixel size from 32 to 512, got {size!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 60:
        raise UserError(f"count must be an integer of at least 60 images, got {count!r}")
    if long_tail is not None and not (isinstance(long_tail, (int, float)) and long_tail >= 1):
        raise UserError(
            f"long_tail must be a max/min class ratio >= 1 (or None), got {long_tail!r}"
        )
    if root.exists() and not root.is_dir():
        raise UserError(f"root {root} is a file; pass a folder for the demo data")


def _params(seed: int, size: int, count: int, long_tail: float | None) -> dict:
    """The parameters recorded in demo.json; ensure_demo regenerates when they differ."""
    ratio = None if long_tail is None else float(long_tail)
    return {"seed": seed, "size": size, "count": count, "long_tail": ratio}


def _split_counts(n: int) -> tuple[int, int]:
    """Train and val sizes of a class with ``n`` images (70/15/15, rounded half up)."""
    return math.floor(n * _FRACTIONS[0] + 0.5), math.floor(n * _FRACTIONS[1] + 0.5)


def _long_tail_counts(n_max: int, ratio: float) -> list[int]:
    """Train images per class, decaying exponentially from ``n_max`` to ``n_max / ratio``."""
    last = len(SHAPES) - 1
    return [max(1, math.floor(n_max * ratio ** (-k / last) + 0.5)) for k in range(len(SHAPES))]


def _plan(seed: int, count: int, long_tail: float | None) -> _Plan:
    """Balanced labels, a stratified 70/15/15 split, the long-tail drop and the IQA subset."""
    rng = np.random.default_rng([seed, _PLAN])
    label_ids = rng.permutation(np.arange(count) % len(SHAPES))
    splits = [""] * count
    train_by_class = []
    for c in range(len(SHAPES)):
        members = rng.permutation(np.flatnonzero(label_ids == c))
        n_train, n_val = _split_counts(len(members))
        for position, index in enumerate(members.tolist()):
            in_val = position < n_train + n_val
            splits[index] = "train" if position < n_train else "val" if in_val else "test"
        train_by_class.append(members[:n_train].tolist())
    in_classify = [True] * count
    if long_tail is not None:
        wanted = _long_tail_counts(min(len(t) for t in train_by_class), float(long_tail))
        for members, keep in zip(train_by_class, wanted, strict=True):
            for index in members[keep:]:
                in_classify[index] = False
    pick = np.random.default_rng([seed, _IQA_PICK])
    in_iqa = [False] * count
    for split in SPLITS:  # half of each split, so IQA keeps the same split assignment
        members = [i for i in range(count) if splits[i] == split]
        for index in pick.permutation(members)[: len(members) // 2].tolist():
            in_iqa[index] = True
    labels = [SHAPES[int(c)] for c in label_ids]
    return _Plan(labels, splits, in_classify, in_iqa)


def _prepare_root(root: Path, overwrite: bool) -> None:
    """Refuse to write into someone else's folder; clear a previous demo's files."""
    if root.exists() and any(root.iterdir()):
        ours = (root / "demo.json").exists() or (root / _PARTIAL).exists()
        if not ours and not overwrite:
            raise UserError(
                f"root {root} is a non-empty folder without demo.json; "
                "pass an empty folder or overwrite=True"
            )
        for name in _OWNED + _OWNED_FILES:
            path = root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    root.mkdir(parents=True, exist_ok=True)


def _link(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (no extra disk space), copying where links fail."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _save_png(pixels: np.ndarray, path: Path) -> None:
    """Save an RGB PNG; PIL's PNG writer is deterministic, so bytes depend only on pixels."""
    Image.fromarray(pixels, mode="RGB").save(path, format="PNG")


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """Write a UTF-8 CSV with Unix newlines (byte-identical across runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _draw_all(root: Path, plan: _Plan, seed: int, size: int) -> tuple[list[dict], list[dict]]:
    """Draw and save every image and its IQA variant; returns annotations and IQA records."""
    (root / "images").mkdir()
    (root / "iqa" / "images").mkdir(parents=True)
    annotations, quality = [], []
    for index, label in enumerate(plan.labels):
        image_id = f"img_{index:05d}"
        pixels, drawn = render_image(np.random.default_rng([seed, _IMAGE, index]), size, label)
        _save_png(pixels, root / "images" / f"{image_id}.png")
        record = {"image_id": image_id, "split": plan.splits[index], "label": label}
        record["in_classify"] = plan.in_classify[index]
        annotations.append({**record, **drawn})
        if plan.in_iqa[index]:
            quality.append(_degrade(root, pixels, annotations[-1], len(quality), seed))
    return annotations, quality


def _degrade(root: Path, pixels: np.ndarray, annotation: dict, number: int, seed: int) -> dict:
    """Write one IQA image with a known distortion and severity, and return its record."""
    rng = np.random.default_rng([seed, _IQA, int(annotation["image_id"][4:])])
    severity = int(rng.integers(0, 6))
    distortion = "none" if severity == 0 else DISTORTIONS[int(rng.integers(len(DISTORTIONS)))]
    degraded, detail = distort(pixels, distortion, severity, rng)
    name = f"q_{number:05d}"
    _save_png(degraded, root / "iqa" / "images" / f"{name}.png")
    mos = round(float(np.clip(9.5 - 1.7 * severity + rng.normal(0.0, 0.3), 0.0, 10.0)), 2)
    comment = quality_comment(distortion, severity, detail, annotation["shapes"][0])
    return {
        "img_name": name,
        "image_id": annotation["image_id"],
        "split": annotation["split"],
        "distortion": distortion,
        "severity": severity,
        "mos": mos,
        "comments": comment,
    }


def _write_classify(root: Path, annotations: list[dict]) -> dict:
    """Class-per-folder copy and the Dacon-style CSV copy; returns counts per split and class."""
    counts = {split: dict.fromkeys(SHAPES, 0) for split in SPLITS}
    train_rows, test_rows, test_labels = [], [], []
    for a in annotations:
        if not a["in_classify"]:
            continue
        source = root / "images" / f"{a['image_id']}.png"
        _link(source, root / "classify" / a["split"] / a["label"] / source.name)
        counts[a["split"]][a["label"]] += 1
        if a["split"] == "test":
            image_id = f"TEST_{len(test_rows):05d}"
            test_rows.append([image_id, f"test/{image_id}.png"])
            test_labels.append([image_id, a["label"]])
        else:
            image_id = f"TRAIN_{len(train_rows):05d}"
            train_rows.append([image_id, f"train/{image_id}.png", a["label"]])
        folder = "test" if a["split"] == "test" else "train"
        _link(source, root / "classify_csv" / folder / f"{image_id}.png")
    csv_root = root / "classify_csv"
    _write_csv(csv_root / "train.csv", ["id", "img_path", "label"], train_rows)
    _write_csv(csv_root / "test.csv", ["id", "img_path"], test_rows)
    _write_csv(csv_root / "test_labels.csv", ["id", "label"], test_labels)
    return counts


def _part(split: str) -> str:
    """VQA, caption and IQA have train.csv (train + val images) and test.csv only."""
    return "test" if split == "test" else "train"


def _write_vqa(root: Path, annotations: list[dict], seed: int, size: int) -> dict:
    """Dacon-style VQA CSVs: ID,image_id,question,answer; 3-5 questions per image."""
    rows: dict[str, list[list]] = {"train": [], "test": []}
    for a in annotations:
        rng = np.random.default_rng([seed, _VQA, int(a["image_id"][4:])])
        part = rows[_part(a["split"])]
        for question, answer in vqa_pairs(rng, a["shapes"], size):
            part.append(
                [f"{_part(a['split']).upper()}_{len(part):06d}", a["image_id"], question, answer]
            )
    for part, part_rows in rows.items():
        _write_csv(
            root / "vqa" / f"{part}.csv", ["ID", "image_id", "question", "answer"], part_rows
        )
    return {part: len(part_rows) for part, part_rows in rows.items()}


def _write_captions(root: Path, annotations: list[dict], size: int) -> dict:
    """Caption CSVs: image_id,caption with three phrasings (rows) per image."""
    rows: dict[str, list[list]] = {"train": [], "test": []}
    for a in annotations:
        for text in captions(a["shapes"], a["background"], size):
            rows[_part(a["split"])].append([a["image_id"], text])
    for part, part_rows in rows.items():
        _write_csv(root / "caption" / f"{part}.csv", ["image_id", "caption"], part_rows)
    return {part: len(part_rows) for part, part_rows in rows.items()}


def _write_iqa(root: Path, quality: list[dict]) -> dict:
    """IQA CSVs: img_name,img_path,mos,comments per part, plus the distortion ground truth."""
    rows: dict[str, list[list]] = {"train": [], "test": []}
    for q in quality:
        row = [q["img_name"], f"images/{q['img_name']}.png", f"{q['mos']:.2f}", q["comments"]]
        rows[_part(q["split"])].append(row)
    for part, part_rows in rows.items():
        _write_csv(
            root / "iqa" / f"{part}.csv", ["img_name", "img_path", "mos", "comments"], part_rows
        )
    truth = [[q["img_name"], q["distortion"], q["severity"], q["image_id"]] for q in quality]
    _write_csv(
        root / "iqa" / "distortions.csv", ["img_name", "distortion", "severity", "image_id"], truth
    )
    return {part: len(part_rows) for part, part_rows in rows.items()}


_README = """# viewfinder demo data

Generated by `viewfinder demo` (viewfinder.data.demo); parameters and counts are in demo.json.
Each image shows 1-3 coloured shapes on a noisy background; the label is the kind of the largest
shape ({shapes}). Paths inside every CSV are relative to the CSV's folder.

- images/{{image_id}}.png: every clean image once.
- annotations.jsonl: ground truth per image: split, label, background and shapes (kind, color,
  center x/y px, size = circumscribed diameter px, rotation deg, area and visible_area px, z order).
  in_classify is false for train images dropped to make the long tail.
- classify/{{train,val,test}}/{{label}}/: class-per-folder copy (hard links).
- classify_csv/: train.csv (id,img_path,label; train + val images), test.csv (id,img_path),
  test_labels.csv (id,label), train/ and test/ images.
- vqa/: train.csv and test.csv (ID,image_id,question,answer); images are ../images/{{image_id}}.png.
- caption/: train.csv and test.csv (image_id,caption), three captions per image.
- iqa/: train.csv and test.csv (img_name,img_path,mos,comments), images/ with distorted copies,
  distortions.csv (img_name,distortion,severity,image_id); MOS is 0-10, lower when more distorted.
"""


def generate_demo(
    root: Path | str,
    *,
    seed: int = 0,
    size: int = 96,
    count: int = 1500,
    long_tail: float | None = None,
    overwrite: bool = False,
) -> DemoPaths:
    """Generate the demo data set under ``root`` and return where each task's copy is.

    ``long_tail=RATIO`` makes the classification train split imbalanced (max/min = RATIO, classes
    decaying exponentially in SHAPES order); val and test stay balanced. A folder holding a previous
    demo is regenerated in place; any other non-empty folder needs ``overwrite=True``, and even then
    only the demo's own files and folders are replaced.
    """
    root = Path(root)
    _validate(root, seed, size, count, long_tail)
    params = _params(seed, size, count, long_tail)
    _prepare_root(root, overwrite)
    (root / _PARTIAL).write_text(json.dumps(params) + "\n", encoding="utf-8")
    plan = _plan(seed, count, long_tail)
    annotations, quality = _draw_all(root, plan, seed, size)
    with (root / "annotations.jsonl").open("w", encoding="utf-8", newline="\n") as handle:
        for annotation in annotations:
            handle.write(json.dumps(annotation) + "\n")
    counts = {
        "classify": _write_classify(root, annotations),
        "vqa": _write_vqa(root, annotations, seed, size),
        "caption": _write_captions(root, annotations, size),
        "iqa": _write_iqa(root, quality),
        "images": {s: plan.splits.count(s) for s in SPLITS},
    }
    (root / "README.md").write_text(_README.format(shapes=", ".join(SHAPES)), encoding="utf-8")
    record = {"format_version": FORMAT_VERSION, "params": params, "counts": counts}
    (root / "demo.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (root / _PARTIAL).unlink()
    return DemoPaths.under(root)


def demo_is_current(
    root: Path | str, *, size: int, count: int, seed: int = 0, long_tail: float | None = None
) -> bool:
    """Whether ``root`` holds a complete demo made with these parameters (``ensure_demo`` would
    return it as it is). Size and count have no default here: the caller's own decide."""
    root = Path(root)
    record_path = root / "demo.json"
    if not record_path.is_file() or (root / _PARTIAL).exists():
        return False
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = _params(seed, size, count, long_tail)
    return record.get("format_version") == FORMAT_VERSION and record.get("params") == wanted


def ensure_demo(
    root: Path | str,
    *,
    seed: int = 0,
    size: int = 96,
    count: int = 1500,
    long_tail: float | None = None,
    overwrite: bool = False,
) -> DemoPaths:
    """Return the demo under ``root``, generating it only if missing or made with other params.

    Why: ``viewfinder demo`` calls this every time; regenerating 1500 images on each run would waste
    seconds, and a stale set (other seed or size) would silently mislead.
    """
    root = Path(root)
    _validate(root, seed, size, count, long_tail)
    if demo_is_current(root, seed=seed, size=size, count=count, long_tail=long_tail):
        return DemoPaths.under(root)
    return generate_demo(
        root, seed=seed, size=size, count=count, long_tail=long_tail, overwrite=overwrite
    )
