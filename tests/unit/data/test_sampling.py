from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from viewfinder.data.sampling import read_split, stratified_split, write_split
from viewfinder.data.sources import ImageRecord
from viewfinder.errors import UserError

LABELS = ["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 2 + ["e"]


def test_split_keeps_class_proportions() -> None:
    train, val = stratified_split(LABELS, val_fraction=0.2, seed=0)
    assert sorted(train + val) == list(range(len(LABELS)))
    assert train == sorted(train) and val == sorted(val)
    counts = Counter(LABELS[i] for i in val)
    assert counts == {"a": 10, "b": 6, "c": 2, "d": 1}


def test_singletons_stay_in_train_and_pairs_split() -> None:
    train, val = stratified_split(["x", "y", "y"], val_fraction=0.9, seed=1)
    assert train[0] == 0 and len(val) == 1 and len(train) == 2


def test_small_fraction_still_validates_every_class() -> None:
    _, val = stratified_split(LABELS, val_fraction=0.01, seed=0)
    assert {LABELS[i] for i in val} == {"a", "b", "c", "d"}


def test_deterministic_and_seed_dependent() -> None:
    first = stratified_split(LABELS, val_fraction=0.2, seed=7)
    assert first == stratified_split(LABELS, val_fraction=0.2, seed=7)
    assert first != stratified_split(LABELS, val_fraction=0.2, seed=8)


def test_adding_a_class_leaves_other_classes_alone() -> None:
    _, val = stratified_split(LABELS, val_fraction=0.2, seed=3)
    _, val_more = stratified_split(LABELS + ["f"] * 5, val_fraction=0.2, seed=3)
    assert [i for i in val_more if i < len(LABELS)] == val


def test_empty_labels() -> None:
    assert stratified_split([], val_fraction=0.5, seed=0) == ([], [])


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, float("nan"), True, "0.2"])
def test_bad_fraction(fraction: object) -> None:
    with pytest.raises(UserError, match="val_fraction="):
        stratified_split(["a", "b"], val_fraction=fraction, seed=0)  # type: ignore[arg-type]


def test_split_round_trip(tmp_path: Path) -> None:
    records = {
        "train": [
            ImageRecord("1", tmp_path / "a b, c.jpg", "cat"),
            ImageRecord("2", tmp_path / "x.png", "dog"),
        ],
        "val": [ImageRecord("3", tmp_path / "y.jpg", "cat")],
        "test": [ImageRecord("4", tmp_path / "z.jpg", None)],
    }
    path = tmp_path / "run" / "split.csv"
    write_split(path, records)
    assert path.read_text().splitlines()[0] == "split,id,path,label"
    assert read_split(path) == records


def test_read_split_fills_missing_splits_and_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "split.csv"
    path.write_text("split,id,path,label\ntrain,1,imgs/a.jpg,cat\n")
    assert read_split(path) == {
        "train": [ImageRecord("1", tmp_path / "imgs" / "a.jpg", "cat")],
        "val": [],
        "test": [],
    }


def test_read_split_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="split file not found"):
        read_split(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,path\n1,a.jpg\n")
    with pytest.raises(UserError, match=r"missing columns \['split', 'label'\]"):
        read_split(bad)
