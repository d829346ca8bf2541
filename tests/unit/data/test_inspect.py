"""Data inspection: the task guess, every task's numbers, sizes, duplicates, unreadable files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import EXIF_STORED_SIZE, make_bad_image_corpus, save_image
from viewfinder.data import inspect_images
from viewfinder.data.demo import DemoPaths, ensure_demo
from viewfinder.data.inspect import (
    default_out_dir,
    guess_task,
    inspect_data,
    k_grid,
    words,
)
from viewfinder.data.inspect_images import find_duplicates, read_header, sample_paths
from viewfinder.data.inspect_report import markdown, write_inspection
from viewfinder.data.outputs import OUTPUT_MARKER
from viewfinder.errors import UserError


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoPaths:
    return ensure_demo(tmp_path_factory.mktemp("inspect") / "demo", count=60, size=32)


def _csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _classes(root: Path) -> Path:
    """cat/ (three sizes), dog/ (a copy of a cat, a text file, an empty file, a portrait JPEG)."""
    for i in range(3):
        save_image(root / "cat" / f"c{i}.png", size=(40 + i, 30), color=(60 * i, 0, 0))
    save_image(root / "dog" / "d0.jpg", size=(20, 60))
    shutil.copy(root / "cat" / "c0.png", root / "dog" / "copy.png")
    (root / "dog" / "broken.jpg").write_text("not an image")
    (root / "dog" / "empty.png").write_bytes(b"")
    return root


# ---------------------------------------------------------------------------- the task guess


def test_guess_task_on_the_demo(demo: DemoPaths) -> None:
    assert guess_task(demo.classify)[0] == "classify"
    assert guess_task(demo.classify_csv)[0] == "classify"
    assert guess_task(demo.caption)[0] == "caption"
    assert guess_task(demo.iqa) == ("iqa+caption", "train.csv has 'mos' and 'comments' columns")
    assert guess_task(demo.vqa)[0] == "vqa"
    assert guess_task(demo.vqa / "test.csv")[0] == "vqa"


@pytest.mark.parametrize(
    ("header", "task"),
    [
        ("image,label", "classify"),
        ("img_name,img_path,MOS", "iqa"),
        ("img_name,img_path,mos,comments", "iqa+caption"),
        ("image_id,caption", "caption"),
        ("ID,image_id,Question,answer", "vqa"),
    ],
)
def test_guess_task_from_columns(tmp_path: Path, header: str, task: str) -> None:
    found, reason = guess_task(_csv(tmp_path / "data.csv", header + "\n"))
    assert found == task
    assert "data.csv" in reason


def test_guess_task_from_json_files(tmp_path: Path) -> None:
    coco = {"images": [{"id": 1, "file_name": "a.png"}], "annotations": []}
    assert guess_task(_csv(tmp_path / "coco.json", json.dumps(coco)))[0] == "caption"
    v2 = {"data_subtype": "train2014", "questions": [{"question_id": 1, "question": "Why?"}]}
    assert guess_task(_csv(tmp_path / "q" / "train.json", json.dumps(v2)))[0] == "vqa"
    line = {"ID": "1", "image_id": "a", "question": "What?", "answer": "x"}
    assert guess_task(_csv(tmp_path / "v.jsonl", json.dumps(line) + "\n"))[0] == "vqa"


def test_guess_task_refuses_what_it_cannot_tell(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot tell the task.*--task"):
        guess_task(_csv(tmp_path / "odd.csv", "a,b\n1,2\n"))
    with pytest.raises(UserError, match="not found"):
        guess_task(tmp_path / "missing")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"image,label\ncaf\xe9.png,x\n\xff\xfe\n" * 3000)
    with pytest.raises(UserError, match="not UTF-8"):
        guess_task(latin)


def test_bad_arguments_are_one_line(demo: DemoPaths) -> None:
    with pytest.raises(UserError, match="did you mean 'vqa'"):
        inspect_data(demo.vqa, task="vq")
    with pytest.raises(UserError, match="--sample -1"):
        inspect_data(demo.vqa, sample=-1)
    with pytest.raises(UserError, match="nothing: data path not found"):
        inspect_data(demo.root / "nothing")


# ---------------------------------------------------------------------------- every task


def test_classify(demo: DemoPaths) -> None:
    summary = inspect_data(demo.classify)
    assert summary["task"] == "classify" and summary["task_guessed"]
    found = summary["classify"]
    assert found["layout"] == "split-folders" and found["classes"] == 6
    assert found["imbalance_ratio"] == 1.0
    assert sum(r["total"] for r in found["counts"]) == 60 == summary["images"]["files"]
    assert summary["records"] == {"train": 42, "val": 12, "test": 6}
    sizes = summary["images"]["sizes"]
    assert sizes["most_common"] == [{"width": 32, "height": 32, "images": 60}]
    assert sizes["formats"] == {"PNG": 60} and not sizes["sampled"]
    assert summary["images"]["unreadable"]["count"] == 0
    assert summary["images"]["duplicates"]["groups"] == 0


def test_classify_imbalance_duplicates_and_unreadable_files(tmp_path: Path) -> None:
    summary = inspect_data(_classes(tmp_path / "pets"))
    found = summary["classify"]
    assert found["imbalance_ratio"] == pytest.approx(4 / 3, abs=1e-3)
    assert (found["largest"], found["smallest"]) == ("dog", "cat")
    bad = {b["path"]: b["reason"] for b in summary["images"]["unreadable"]["listed"]}
    assert bad == {"dog/broken.jpg": "not an image file", "dog/empty.png": "empty file (0 bytes)"}
    dups = summary["images"]["duplicates"]
    assert (dups["groups"], dups["extra_files"], dups["conflicting_labels"]) == (1, 1, 1)
    assert dups["listed"] == [
        {"files": ["cat/c0.png", "dog/copy.png"], "splits": ["train"], "labels": ["cat", "dog"]}
    ]
    sizes = summary["images"]["sizes"]
    assert (sizes["width"]["min"], sizes["width"]["max"]) == (20, 42)
    assert sizes["height"]["max"] == 60 and sizes["aspect"]["min"] == pytest.approx(1 / 3, 1e-3)


def test_missing_image_named_by_a_csv_is_listed(tmp_path: Path) -> None:
    save_image(tmp_path / "a.png")
    data = _csv(tmp_path / "train.csv", "img_path,label\na.png,x\ngone.png,y\n")
    summary = inspect_data(data)
    listed = summary["images"]["unreadable"]["listed"]
    assert listed == [{"path": "gone.png", "reason": "file not found"}]
    assert summary["images"]["sizes"]["read"] == 1


def test_iqa_and_captions(demo: DemoPaths) -> None:
    summary = inspect_data(demo.iqa)
    assert summary["task"] == "iqa+caption"
    mos = summary["iqa"]
    assert mos["count"] == 30 and sum(mos["histogram"]["counts"]) == 30
    assert 0 <= mos["min"] <= mos["q1"] <= mos["median"] <= mos["q3"] <= mos["max"] <= 10
    assert summary["caption"]["captions"] == 30
    assert summary["caption"]["per_image"]["max"] == 1
    only_mos = inspect_data(demo.iqa, task="iqa")
    assert only_mos["task"] == "iqa" and "caption" not in only_mos


def test_iqa_skips_bad_rows_and_notices_empty_comments(tmp_path: Path) -> None:
    for i in range(3):
        save_image(tmp_path / "images" / f"q{i}.png")
    rows = "q0,images/q0.png,3.5,\nq1,images/q1.png,abc,\nq2,images/q2.png,7,\n"
    _csv(tmp_path / "train.csv", "img_name,img_path,mos,comments\n" + rows)
    summary = inspect_data(tmp_path)
    assert summary["task"] == "iqa" and "every comment is empty" in summary["task_reason"]
    assert summary["iqa"]["count"] == 2
    skipped = summary["skipped_rows"]
    assert skipped["count"] == 1 and "row 3" in skipped["listed"][0]["where"]
    assert "abc" in skipped["listed"][0]["why"]


def test_captions(demo: DemoPaths) -> None:
    summary = inspect_data(demo.caption)
    found = summary["caption"]
    assert found["images"] == 60 and found["captions"] == 180
    assert found["per_image"]["distribution"] == {"values": [3], "counts": [60]}
    assert sum(found["length_words"]["distribution"]["counts"]) == 180
    assert found["vocabulary"] > 10
    top = [w for w, _ in found["top_words"]]
    assert "background" in top and "a" not in top and "on" not in top


def test_words() -> None:
    assert words("A dog's toy, 2 balls_x!") == ["a", "dog's", "toy", "2", "balls", "x"]


def test_vqa(demo: DemoPaths) -> None:
    summary = inspect_data(demo.vqa)
    found = summary["vqa"]
    assert summary["task"] == "vqa" and found["images"] == 60
    assert found["questions"] == sum(summary["records"].values())
    assert sum(found["answer_types"].values()) == found["questions"] - found["unanswered"]
    assert found["answer_types"]["yes/no"] > 0 and found["answer_types"]["number"] > 0
    assert dict(found["question_types"])["how many"] > 0
    ks = [k for k, _ in found["coverage"]]
    assert ks == k_grid(found["distinct_answers"]) and found["coverage"][-1][1] == 1.0
    shares = [s for _, s in found["coverage"]]
    assert shares == sorted(shares)
    assert summary["images"]["files"] == 60  # one image per question set, counted once


def test_vqa_with_a_stub_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The VQA part reads ``read_vqa``'s records only; a stub source is enough."""
    from viewfinder.data import vqa

    image = save_image(tmp_path / "a.png")
    q = vqa.QuestionRecord
    source = vqa.VQASource(
        train=[q("1", "a", image, "Is it red?", ("yes", "yes", "no")),
               q("2", "a", image, "How many dogs are there?", ("two",))],
        test=[q("3", "a", image, "What is this?")],
        skipped_rows=[("train.csv: row 5", "empty question")],
    )  # fmt: skip
    monkeypatch.setattr(vqa, "read_vqa", lambda path, **options: source)
    summary = inspect_data(_csv(tmp_path / "train.csv", "ID,image_id,question,answer\n"))
    found = summary["vqa"]
    assert found["answer_types"] == {"yes/no": 1, "number": 1, "other": 0}
    assert found["top_answers"] == [["yes", 1], ["2", 1]]
    assert found["unanswered"] == 1 and found["question_length_words"]["max"] == 5
    assert dict(found["question_types"]) == {"is it": 1, "how many": 1, "what is": 1}
    assert summary["images"]["duplicates"]["files_in_several_splits"] == 1
    assert summary["skipped_rows"]["count"] == 1


def test_k_grid() -> None:
    assert k_grid(0) == []
    assert k_grid(1) == [1]
    assert k_grid(24) == [1, 2, 5, 10, 20, 24]
    assert k_grid(100) == [1, 2, 5, 10, 20, 50, 100]


# ---------------------------------------------------------------------------- images


def test_size_sample_is_seeded_and_reported(demo: DemoPaths) -> None:
    summary = inspect_data(demo.classify, sample=10)
    sizes = summary["images"]["sizes"]
    assert sizes["sampled"] and (sizes["checked"], sizes["read"], sizes["of"]) == (10, 10, 60)
    assert sum(sizes["histograms"]["width"]["counts"]) == 10
    assert "headers of 10 of 60 files, a seeded sample (seed 0" in markdown(summary)
    paths = [Path(f"{i:03d}.png") for i in range(100)]
    first = sample_paths(paths, 7, seed=0)
    assert first == sample_paths(list(reversed(paths)), 7, seed=0) and first == sorted(first)
    assert first != sample_paths(paths, 7, seed=1)
    assert sample_paths(paths, 0, seed=0) == paths
    assert inspect_data(demo.classify, sample=0)["images"]["sizes"]["checked"] == 60


def test_duplicates_hash_only_files_sharing_a_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = bytes(range(256)) * 300  # 76,800 bytes: past the 64 KiB prefix
    contents = {"a": b"same", "b": b"same", "c": b"diff", "d": b"longer",
                "e": big, "f": big, "g": big[:-1] + b"x", "h": b"y" + big[1:]}  # fmt: skip
    files = {name: tmp_path / name for name in contents}
    for name, data in contents.items():
        files[name].write_bytes(data)
    hashed: list[tuple[str, int | None]] = []
    real = inspect_images._digest

    def spy(path: Path, limit: int | None = None) -> str | None:
        hashed.append((path.name, limit))
        return real(path, limit)

    monkeypatch.setattr(inspect_images, "_digest", spy)
    sizes = {p: p.stat().st_size for p in files.values()}
    assert find_duplicates(sizes) == [[files["a"], files["b"]], [files["e"], files["f"]]]
    whole = sorted(name for name, limit in hashed if limit is None)
    assert whole == ["a", "b", "c", "e", "f", "g"]  # "d" has a size of its own, "h" a prefix


def test_headers_are_read_without_decoding(tmp_path: Path) -> None:
    corpus = make_bad_image_corpus(tmp_path)
    assert read_header(corpus["truncated_png"])[:3] == (64, 64, "PNG")  # pixels never read
    width, height = EXIF_STORED_SIZE
    assert read_header(corpus["exif_rotated_jpeg"])[:2] == (height, width)  # as displayed
    with pytest.raises(OSError):
        read_header(corpus["text_as_jpg"])


# ---------------------------------------------------------------------------- output


def test_write_inspection(demo: DemoPaths, tmp_path: Path) -> None:
    summary = write_inspection(inspect_data(demo.vqa), tmp_path / "out")
    out = tmp_path / "out"
    assert summary["plots"] == ["image_sizes.png", "questions.png", "answers.png"]
    for name in (*summary["plots"], "inspect.md", "inspect.json", OUTPUT_MARKER):
        assert (out / name).is_file(), name
    assert json.loads((out / "inspect.json").read_text())["vqa"] == summary["vqa"]
    text = (out / "inspect.md").read_text()
    assert "![answers.png](answers.png)" in text and "Top-K answer coverage" in text
    assert "guessed: train.csv has a 'question'" in text


def test_markdown_lists_problems(tmp_path: Path) -> None:
    text = markdown(inspect_data(_classes(tmp_path / "pets")))
    assert "### Unreadable files (2)" in text and "dog/broken.jpg" in text
    assert "### Duplicate files (1 group)" in text and "cat/c0.png, dog/copy.png" in text
    assert "| dog | 4 | 0 | 0 | 4 |" in text and "a seeded sample" not in text


def test_default_out_dir(demo: DemoPaths) -> None:
    assert default_out_dir(demo.vqa) == Path("inspect-vqa")
    assert default_out_dir(demo.vqa / "train.csv") == Path("inspect-vqa-train")
    assert default_out_dir(demo.iqa / "distortions.csv") == Path("inspect-distortions")
