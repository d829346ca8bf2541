"""Tests for the generated demo data set (viewfinder.data.demo)."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from viewfinder.data.demo import (
    COLORS,
    SHAPES,
    DemoPaths,
    demo_is_current,
    ensure_demo,
    generate_demo,
)
from viewfinder.data.demo_text import plural
from viewfinder.errors import UserError

SMALL = {"seed": 3, "size": 64, "count": 120}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle))


def annotations(root: Path) -> list[dict]:
    lines = (root / "annotations.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoPaths:
    return generate_demo(tmp_path_factory.mktemp("demo") / "set", **SMALL)


@pytest.fixture(scope="module")
def long_tail_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoPaths:
    return generate_demo(tmp_path_factory.mktemp("demo_lt"), **SMALL, long_tail=4.0)


def test_same_params_give_identical_bytes(demo: DemoPaths, tmp_path: Path) -> None:
    again = generate_demo(tmp_path / "again", **SMALL)
    files = sorted(p.relative_to(demo.root) for p in demo.root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again.root) for p in again.root.rglob("*") if p.is_file())
    sample = [f for f in files if f.suffix != ".png"] + [f for f in files if f.suffix == ".png"][
        ::7
    ]
    for name in sample:
        assert (demo.root / name).read_bytes() == (again.root / name).read_bytes(), name


def test_other_seed_gives_other_images(demo: DemoPaths, tmp_path: Path) -> None:
    other = generate_demo(tmp_path / "other", **{**SMALL, "seed": 4})
    name = "images/img_00000.png"
    assert (demo.root / name).read_bytes() != (other.root / name).read_bytes()


def test_layout_and_csv_columns(demo: DemoPaths) -> None:
    root = demo.root
    assert demo == DemoPaths.under(root)
    for name in ("README.md", "demo.json", "annotations.jsonl"):
        assert (root / name).is_file()
    assert not (root / ".demo_partial").exists()
    assert len(list((root / "images").glob("img_*.png"))) == SMALL["count"]
    expected = {
        demo.classify_csv / "train.csv": ["id", "img_path", "label"],
        demo.classify_csv / "test.csv": ["id", "img_path"],
        demo.classify_csv / "test_labels.csv": ["id", "label"],
        demo.vqa / "train.csv": ["ID", "image_id", "question", "answer"],
        demo.vqa / "test.csv": ["ID", "image_id", "question", "answer"],
        demo.caption / "train.csv": ["image_id", "caption"],
        demo.caption / "test.csv": ["image_id", "caption"],
        demo.iqa / "train.csv": ["img_name", "img_path", "mos", "comments"],
        demo.iqa / "test.csv": ["img_name", "img_path", "mos", "comments"],
        demo.iqa / "distortions.csv": ["img_name", "distortion", "severity", "image_id"],
    }
    for path, columns in expected.items():
        assert header(path) == columns, path
    for path in (
        demo.classify_csv / "train.csv",
        demo.classify_csv / "test.csv",
        demo.iqa / "train.csv",
    ):
        for row in read_csv(path):
            assert (path.parent / row["img_path"]).is_file()
    for row in read_csv(demo.vqa / "test.csv"):
        assert (demo.vqa / ".." / "images" / f"{row['image_id']}.png").is_file()
    with Image.open(root / "images" / "img_00000.png") as image:
        assert image.mode == "RGB" and image.size == (64, 64)


def test_classify_folders_match_annotations(demo: DemoPaths) -> None:
    found = {p.stem: (p.parent.parent.name, p.parent.name) for p in demo.classify.rglob("*.png")}
    records = annotations(demo.root)
    assert len(found) == len(records)
    for record in records:
        assert found[record["image_id"]] == (record["split"], record["label"])
        shapes = record["shapes"]
        assert 1 <= len(shapes) <= 3
        assert shapes[0]["kind"] == record["label"]
        assert shapes[0]["visible_area"] >= 0.8 * shapes[0]["area"]
        for other in shapes[1:]:
            assert shapes[0]["area"] >= 1.4 * other["area"]
        assert {s["kind"] for s in shapes} <= set(SHAPES)
        assert {s["color"] for s in shapes} <= set(COLORS)


def test_classify_csv_matches_annotations(demo: DemoPaths) -> None:
    records = annotations(demo.root)
    train = read_csv(demo.classify_csv / "train.csv")
    test_labels = read_csv(demo.classify_csv / "test_labels.csv")
    assert [r["label"] for r in train] == [a["label"] for a in records if a["split"] != "test"]
    assert [r["label"] for r in test_labels] == [
        a["label"] for a in records if a["split"] == "test"
    ]
    first = next(a for a in records if a["split"] == "test")["image_id"]
    linked = demo.classify_csv / "test" / "TEST_00000.png"
    assert linked.read_bytes() == (demo.root / "images" / f"{first}.png").read_bytes()


def split_counts(paths: DemoPaths) -> dict[str, Counter]:
    return {
        split: Counter(p.parent.name for p in (paths.classify / split).rglob("*.png"))
        for split in ("train", "val", "test")
    }


def test_balanced_without_long_tail(demo: DemoPaths) -> None:
    counts = split_counts(demo)
    for split, by_class in counts.items():
        assert set(by_class) == set(SHAPES), split
        assert max(by_class.values()) - min(by_class.values()) <= 1, split
    total = sum(sum(c.values()) for c in counts.values())
    assert total == SMALL["count"]
    assert abs(sum(counts["train"].values()) / total - 0.7) < 0.03
    recorded = json.loads((demo.root / "demo.json").read_text())["counts"]["classify"]
    assert recorded == {split: dict(counts[split]) for split in counts}


def test_long_tail_train_only(long_tail_demo: DemoPaths, demo: DemoPaths) -> None:
    counts = split_counts(long_tail_demo)
    train = [counts["train"][kind] for kind in SHAPES]
    assert train == sorted(train, reverse=True)
    assert abs(train[0] / 4.0 - train[-1]) <= 0.5
    balanced = split_counts(demo)
    for split in ("val", "test"):
        assert counts[split] == balanced[split]
    rows = read_csv(long_tail_demo.classify_csv / "train.csv")
    assert len(rows) == sum(train) + sum(counts["val"].values())
    # Dropped train images stay in the other tasks.
    dropped = [a for a in annotations(long_tail_demo.root) if not a["in_classify"]]
    assert dropped and all(a["split"] == "train" for a in dropped)
    vqa_images = {r["image_id"] for r in read_csv(long_tail_demo.vqa / "train.csv")}
    assert {a["image_id"] for a in dropped} <= vqa_images


def test_vqa_answers_match_annotations(demo: DemoPaths) -> None:
    records = {a["image_id"]: a for a in annotations(demo.root)}
    rows = read_csv(demo.vqa / "train.csv") + read_csv(demo.vqa / "test.csv")
    per_image = Counter(r["image_id"] for r in rows)
    assert set(per_image) == set(records)
    assert all(3 <= n <= 5 for n in per_image.values())
    checked = 0
    for row in rows:
        shapes = records[row["image_id"]]["shapes"]
        question, answer = row["question"], row["answer"]
        if question == "How many shapes are there?":
            assert answer == str(len(shapes))
        elif question == "What shape is the largest object?":
            assert answer == shapes[0]["kind"]
        else:
            for color in COLORS:
                if question == f"How many {color} shapes are there?":
                    assert answer == str(sum(s["color"] == color for s in shapes))
            for kind in SHAPES:
                if question == f"What color is the {kind}?":
                    assert [answer] == [s["color"] for s in shapes if s["kind"] == kind]
                if question == f"How many {plural(kind)} are there?":
                    assert answer == str(sum(s["kind"] == kind for s in shapes))
                if question == f"Is the {kind} on the left side?":
                    (shape,) = [s for s in shapes if s["kind"] == kind]
                    assert answer == ("yes" if shape["x"] < 32 else "no")
        checked += 1
    assert checked == len(rows)
    test_images = {r["image_id"] for r in read_csv(demo.vqa / "test.csv")}
    assert test_images == {i for i, a in records.items() if a["split"] == "test"}


def test_three_different_captions_per_image(demo: DemoPaths) -> None:
    rows = read_csv(demo.caption / "train.csv") + read_csv(demo.caption / "test.csv")
    by_image: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_image[row["image_id"]].append(row["caption"])
    assert len(by_image) == SMALL["count"]
    records = {a["image_id"]: a for a in annotations(demo.root)}
    for image_id, texts in by_image.items():
        assert len(set(texts)) == 3
        dominant = records[image_id]["shapes"][0]
        assert all(f"{dominant['color']} {dominant['kind']}" in text for text in texts)


def test_mos_decreases_with_severity(demo: DemoPaths) -> None:
    truth = {r["img_name"]: r for r in read_csv(demo.iqa / "distortions.csv")}
    rows = read_csv(demo.iqa / "train.csv") + read_csv(demo.iqa / "test.csv")
    assert len(rows) == len(truth) == SMALL["count"] // 2
    by_severity: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        mos = float(row["mos"])
        assert 0.0 <= mos <= 10.0 and row["comments"]
        by_severity[int(truth[row["img_name"]]["severity"])].append(mos)
    means = [np.mean(by_severity[s]) for s in sorted(by_severity)]
    assert len(means) >= 4
    assert all(a > b for a, b in zip(means, means[1:], strict=False))
    assert {r["distortion"] for r in truth.values()} <= {
        "none",
        "blur",
        "noise",
        "jpeg",
        "exposure",
    }
    split_of = {a["image_id"]: a["split"] for a in annotations(demo.root)}
    test_names = {r["img_name"] for r in read_csv(demo.iqa / "test.csv")}
    assert test_names == {n for n, r in truth.items() if split_of[r["image_id"]] == "test"}


def test_ensure_demo_reuses_then_regenerates(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    assert not demo_is_current(root, **SMALL)
    ensure_demo(root, **SMALL)
    assert demo_is_current(root, **SMALL) and not demo_is_current(root, **{**SMALL, "size": 48})
    marker = root / "demo.json"
    before = marker.stat().st_mtime_ns
    os.utime(marker, ns=(before - 10**9, before - 10**9))
    ensure_demo(root, **SMALL)
    assert marker.stat().st_mtime_ns == before - 10**9
    ensure_demo(root, **{**SMALL, "size": 48})
    assert json.loads(marker.read_text())["params"]["size"] == 48
    with Image.open(root / "images" / "img_00000.png") as image:
        assert image.size == (48, 48)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"size": 31}, "size"),
        ({"size": 513}, "size"),
        ({"count": 59}, "count"),
        ({"long_tail": 0.5}, "long_tail"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, word: str) -> None:
    with pytest.raises(UserError, match=word):
        generate_demo(tmp_path / "demo", **{**SMALL, **kwargs})
    assert not (tmp_path / "demo").exists()


def test_refuses_foreign_folder_unless_overwrite(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="root"):
        generate_demo(tmp_path, **SMALL)
    generate_demo(tmp_path, **SMALL, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "demo.json").is_file()
