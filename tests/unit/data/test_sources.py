from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import save_image
from viewfinder.data.sources import ImageRecord, read_classification, read_unlabelled
from viewfinder.errors import UserError


def _tree(root: Path, files: list[str]) -> Path:
    """Create ``files`` (relative paths) under root: images by extension, anything else as text."""
    for name in files:
        path = root / name
        if path.suffix.lower() in {".jpg", ".png"}:
            save_image(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("not an image")
    return root


def _csv(path: Path, text: str, *, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return path


def _user_error(match: str, func, *args, **kwargs) -> str:
    """Call and return the UserError message, asserting it is one line and matches."""
    with pytest.raises(UserError, match=match) as caught:
        func(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def _summary(records: list[ImageRecord]) -> list[tuple[str, str | None]]:
    return [(r.id, r.label) for r in records]


# ---------------------------------------------------------------------------- folders


def test_class_folders(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "pets",
        [
            "dog/b.jpg", "dog/a.png", "cat/c.jpg", "cat/sub/d.jpg",
            "cat/notes.txt", "cat/.DS_Store", "cat/.hidden.jpg", "cat/labels.csv",
            ".cache/x/e.jpg", "__MACOSX/cat/._c.jpg", "README.txt", "loose.jpg",
        ],
    )  # fmt: skip
    source = read_classification(root)
    assert source.layout == "folders"
    assert (source.id_column, source.label_column) == ("id", "label")
    assert source.val == [] and source.test == []
    assert _summary(source.train) == [("c", "cat"), ("d", "cat"), ("a", "dog"), ("b", "dog")]
    assert all(r.path.is_absolute() and r.path.exists() for r in source.train)


def test_relative_input_path_gives_absolute_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path / "data", ["a/1.jpg", "b/2.jpg"])
    monkeypatch.chdir(tmp_path)
    records = read_classification("data").train
    assert records[0].path == tmp_path / "data" / "a" / "1.jpg"


def test_class_named_train_is_still_a_class(tmp_path: Path) -> None:
    root = _tree(tmp_path / "vehicles", ["train/1.jpg", "bus/2.jpg", "car/3.jpg"])
    source = read_classification(root)
    assert source.layout == "folders"
    assert [r.label for r in source.train] == ["bus", "car", "train"]


def test_colliding_stems_use_relative_paths_as_ids(tmp_path: Path) -> None:
    root = _tree(tmp_path / "d", ["cat/1.jpg", "dog/1.jpg"])
    assert [r.id for r in read_classification(root).train] == ["cat/1", "dog/1"]


def test_split_folders_with_labelled_test(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "fruit",
        [
            "train/apple/1.jpg", "train/kiwi/2.jpg", "validation/apple/3.jpg",
            "test/kiwi/4.jpg", "train/kiwi/info.txt",
        ],
    )  # fmt: skip
    source = read_classification(root)
    assert source.layout == "split-folders"
    assert _summary(source.train) == [("1", "apple"), ("2", "kiwi")]
    assert _summary(source.val) == [("3", "apple")]
    assert _summary(source.test) == [("4", "kiwi")]


def test_split_folders_with_unlabelled_test(tmp_path: Path) -> None:
    root = _tree(tmp_path / "f", ["train/a/1.jpg", "train/b/2.jpg", "test/9.jpg", "test/8.png"])
    source = read_classification(root)
    assert source.val == []
    assert _summary(source.test) == [("8", None), ("9", None)]


def test_two_validation_folders_is_an_error(tmp_path: Path) -> None:
    root = _tree(tmp_path / "f", ["train/a/1.jpg", "val/a/2.jpg", "valid/a/3.jpg"])
    message = _user_error("both", read_classification, root)
    assert "val" in message and "valid" in message


# ---------------------------------------------------------------------------- CSV


def test_csv_auto_columns_and_relative_paths(tmp_path: Path) -> None:
    _tree(tmp_path / "dacon", ["train/TRAIN_00000.jpg"])
    data = _csv(
        tmp_path / "dacon" / "data.csv",
        "id,img_path,label\nTRAIN_00000,./train/TRAIN_00000.jpg,cat\n"
        "TRAIN_00001,./train/TRAIN_00001.jpg,dog\n",
        bom=True,
    )
    source = read_classification(data)
    assert source.layout == "csv"
    assert (source.id_column, source.label_column) == ("id", "label")
    assert _summary(source.train) == [("TRAIN_00000", "cat"), ("TRAIN_00001", "dog")]
    assert source.train[0].path == tmp_path / "dacon" / "train" / "TRAIN_00000.jpg"
    assert not source.train[1].path.exists()  # missing files are left to the bad-image policy


def test_csv_case_insensitive_detection_and_stem_ids(tmp_path: Path) -> None:
    absolute = save_image(tmp_path / "elsewhere" / "z.jpg")
    data = _csv(tmp_path / "d.csv", f"Image_Path,Class\nimgs/q.jpg,x\n{absolute},y\n")
    source = read_classification(data)
    assert source.id_column == "id" and source.label_column == "Class"
    assert _summary(source.train) == [("q", "x"), ("z", "y")]
    assert source.train[1].path == absolute


def test_csv_explicit_columns(tmp_path: Path) -> None:
    data = _csv(tmp_path / "d.csv", "key,file,breed,label\nk1,a.jpg,pug,ignored\n")
    source = read_classification(data, image_column="file", label_column="breed", id_column="key")
    assert (source.id_column, source.label_column) == ("key", "breed")
    assert _summary(source.train) == [("k1", "pug")]
    assert source.train[0].path == tmp_path / "a.jpg"


def test_csv_dir_layout(tmp_path: Path) -> None:
    root = tmp_path / "open"
    _csv(root / "train.csv", "id,img_path,label\nT0,./train/T0.jpg,a\nT1,./train/T1.jpg,b\n")
    _csv(root / "val.csv", "id,img_path,label\nV0,./val/V0.jpg,a\n")
    _csv(root / "test.csv", "id,img_path\nTEST_0,./test/TEST_0.jpg\n")
    source = read_classification(root)
    assert source.layout == "csv-dir"
    assert _summary(source.val) == [("V0", "a")]
    assert _summary(source.test) == [("TEST_0", None)]
    assert source.test[0].path == root / "test" / "TEST_0.jpg"


def test_test_path_overrides(tmp_path: Path) -> None:
    train = _csv(tmp_path / "train.csv", "path,target\na.jpg,x\nb.jpg,y\n")
    _tree(tmp_path / "unseen", ["p.jpg", "deeper/q.jpg"])
    source = read_classification(train, test_path=tmp_path / "unseen")
    assert _summary(source.test) == [("q", None), ("p", None)]  # sorted by path: deeper/ < p.jpg
    test_csv = _csv(tmp_path / "t.csv", "path,target\nc.jpg,y\nd.jpg,\n")
    assert _summary(read_classification(train, test_path=test_csv).test) == [
        ("c", "y"),
        ("d", None),
    ]


# ---------------------------------------------------------------------------- read_unlabelled


def test_read_unlabelled_folder_tree_and_csv(tmp_path: Path) -> None:
    _tree(tmp_path / "flat", ["b.jpg", "a.png", "sub/c.jpg", "note.txt"])
    assert _summary(read_unlabelled(tmp_path / "flat")) == [("a", None), ("b", None), ("c", None)]
    _tree(tmp_path / "tree", ["cat/1.jpg", "dog/2.jpg"])
    assert _summary(read_unlabelled(tmp_path / "tree")) == [("1", "cat"), ("2", "dog")]
    unlabelled = _csv(tmp_path / "u.csv", "image_id,filename\nx,one.jpg\n")
    assert _summary(read_unlabelled(unlabelled)) == [("x", None)]
    labelled = _csv(tmp_path / "l.csv", "filename,label\none.jpg,cat\n")
    assert _summary(read_unlabelled(labelled)) == [("one", "cat")]


# ---------------------------------------------------------------------------- errors


def test_path_not_found(tmp_path: Path) -> None:
    message = _user_error("not found", read_classification, tmp_path / "nope")
    assert "nope" in message
    _user_error("not found", read_unlabelled, tmp_path / "nope.csv")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _user_error("no images and no class folders", read_classification, tmp_path / "empty")
    _user_error("has no images", read_unlabelled, tmp_path / "empty")


def test_images_without_class_folders(tmp_path: Path) -> None:
    root = _tree(tmp_path / "flat", ["a.jpg", "b.jpg"])
    _user_error("no class folders", read_classification, root)


def test_class_folder_without_images(tmp_path: Path) -> None:
    root = _tree(tmp_path / "f", ["train/dog/1.jpg", "train/cat/readme.txt"])
    message = _user_error("class folder has no images", read_classification, root)
    assert "train/cat: class folder has no images" in message


def test_not_a_csv_file(tmp_path: Path) -> None:
    path = _csv(tmp_path / "data.json", "{}")
    _user_error("expected a folder of images or a .csv file", read_classification, path)


def test_configured_column_missing_suggests_nearest(tmp_path: Path) -> None:
    data = _csv(tmp_path / "d.csv", "id,img_path,label\n1,a.jpg,x\n")
    message = _user_error("label_column 'lable'", read_classification, data, label_column="lable")
    assert "['id', 'img_path', 'label']" in message and "did you mean 'label'" in message
    _user_error("image_column 'image'", read_classification, data, image_column="image")


def test_no_image_column(tmp_path: Path) -> None:
    data = _csv(tmp_path / "d.csv", "id,photo,label\n1,a.jpg,x\n")
    _user_error(
        r"no image column found; columns are \['id', 'photo', 'label'\]", read_classification, data
    )


def test_no_label_column_for_training(tmp_path: Path) -> None:
    data = _csv(tmp_path / "data.csv", "id,img_path\n1,a.jpg\n")
    _user_error(
        r"data.csv has no label column; columns are \['id', 'img_path'\]; set label_column=NAME",
        read_classification,
        data,
    )


def test_csv_without_rows(tmp_path: Path) -> None:
    _user_error("has no rows", read_classification, _csv(tmp_path / "h.csv", "img_path,label\n"))
    _user_error("empty", read_classification, _csv(tmp_path / "e.csv", ""))


def test_empty_label_cell_names_row(tmp_path: Path) -> None:
    data = _csv(tmp_path / "d.csv", "img_path,label\na.jpg,x\nb.jpg,\nc.jpg,y\n")
    _user_error("row 3 has an empty label in column 'label'", read_classification, data)


def test_duplicate_ids(tmp_path: Path) -> None:
    data = _csv(tmp_path / "d.csv", "id,img_path,label\n7,a.jpg,x\n8,b.jpg,x\n7,c.jpg,y\n")
    _user_error("duplicate id '7' in rows 2 and 4", read_classification, data)


def test_duplicate_file_names_without_id_column(tmp_path: Path) -> None:
    data = _csv(tmp_path / "d.csv", "img_path,label\na/x.jpg,p\nb/x.jpg,q\n")
    _user_error(
        "rows 2 and 3 have the same file name 'x'.*set id_column=NAME", read_classification, data
    )


def test_unreadable_csv(tmp_path: Path) -> None:
    data = tmp_path / "korean.csv"
    data.write_bytes("img_path,label\na.jpg,고양이\n".encode("cp949"))
    _user_error("not UTF-8 text.*save the CSV as UTF-8", read_classification, data)


def test_label_unseen_in_train(tmp_path: Path) -> None:
    root = _tree(tmp_path / "f", ["train/apple/1.jpg", "val/apple/2.jpg", "val/kiwi/3.jpg"])
    _user_error("label 'kiwi' appears in val but not in train", read_classification, root)
    data = _csv(tmp_path / "d" / "train.csv", "img_path,label\na.jpg,x\n")
    _csv(tmp_path / "d" / "test.csv", "img_path,label\nb.jpg,z\n")
    _user_error("label 'z' appears in test but not in train", read_classification, data.parent)


# ---------------------------------------------------------------------------- viewfinder's output


def _old_run_folder(folder: Path) -> None:
    """A run folder as any version writes it (no marker): config, summary, eval PNGs, weights."""
    _tree(folder, ["config.yaml", "summary.json", "eval/val/confusion_matrix.png", "best.txt"])


def test_output_folders_inside_the_data_are_not_classes(tmp_path: Path) -> None:
    from viewfinder.data.outputs import mark_output_folder

    root = _tree(tmp_path / "fruits", ["apple/1.jpg", "banana/2.jpg"])
    marked = mark_output_folder(root / "runs")  # what `data=. output_dir=runs` writes
    _tree(marked, ["classify/cnn/config.yaml", "classify/cnn/eval/val/confusion_matrix.png"])
    _old_run_folder(root / "old-runs" / "classify" / "resnet18")  # written before the marker
    _old_run_folder(root / "sweeps-out" / "sweeps" / "demo" / "classify" / "cnn")
    _tree(root, ["my-cache/images/rgb-resize36-v2/shard.bin"])  # a cache_dir of the data
    _old_run_folder(root / "banana" / "a-run-in-a-class")  # images in a run folder are not data
    source = read_classification(root)
    assert source.layout == "folders"
    assert _summary(source.train) == [("1", "apple"), ("2", "banana")]


def test_output_folders_do_not_break_the_split_layout(tmp_path: Path) -> None:
    from viewfinder.data.outputs import mark_output_folder

    root = _tree(tmp_path / "d", ["train/a/1.jpg", "train/b/2.jpg", "val/a/3.jpg", "val/b/4.jpg"])
    _tree(mark_output_folder(root / "runs"), ["classify/cnn/eval/val/cm.png"])
    source = read_classification(root)
    assert source.layout == "split-folders"
    assert [r.id for r in source.val] == ["3", "4"]
    assert [r.id for r in read_unlabelled(root / "val")] == ["3", "4"]
