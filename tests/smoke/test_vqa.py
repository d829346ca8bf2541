"""The ``vqa`` task end to end on the tiny generated set: train -> evaluate -> predict, both
answerers, frozen grids, filters and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import viewfinder
from tests.smoke.conftest import FAST
from viewfinder.errors import UserError


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_classifier_train_evaluate_predict(demo_data, runs_dir):
    run = viewfinder.train("vqa", data=str(demo_data.vqa), model="cnn", min_count=1,
                           output_dir=str(runs_dir), progress=False, **FAST)  # fmt: skip
    summary = run.summary
    assert summary["status"] == "completed" and summary["monitor"] == "accuracy"
    assert {"accuracy", "vqa_accuracy", "accuracy_yes_no"} <= set(summary["metrics"])
    facts = summary["data"]
    assert facts["answer_vocabulary"] > 5 and 0 < facts["val_answer_coverage"] <= 1
    assert facts["images_in_train_and_val"] == 0  # split by image
    split = _rows(run.path / "split.csv")
    train_images = {r["image_id"] for r in split if r["split"] == "train"}
    assert train_images and not train_images & {r["image_id"] for r in split if r["split"] == "val"}

    results = run.evaluate(split="test")
    assert 0.0 <= results["accuracy"] <= 1.0 and "baseline_accuracy" in results
    out = run.path / "eval" / "test"
    test_rows = _rows(demo_data.vqa / "test.csv")
    assert len(_rows(out / "answers.csv")) == len(test_rows)
    assert (out / "per_answer_type.png").stat().st_size > 0
    assert {r["answer_type"] for r in _rows(out / "per_answer_type.csv")} >= {"yes/no", "number"}

    rows = _rows(run.predict(out=runs_dir / "submission.csv"))
    assert list(rows[0]) == ["ID", "answer"]
    assert [r["ID"] for r in rows] == [r["ID"] for r in test_rows]
    assert all(r["answer"] for r in rows)


def test_generative_with_frozen_grid(demo_data, runs_dir):
    run = viewfinder.train("vqa", data=str(demo_data.vqa), model="cnn", answerer="generative",
                           decoder="gru", decoder_attention=True,
                           decoder_dim=32, freeze_backbone=True, min_count=1,
                           output_dir=str(runs_dir), progress=False, **FAST)  # fmt: skip
    assert run.summary["status"] == "completed" and "backbone frozen" in run.summary["weights"]
    assert run.summary["data"]["answer_tokens"] > 5
    results = run.evaluate()
    assert 0.0 <= results["accuracy"] <= 1.0
    rows = _rows(run.predict(out=runs_dir / "gen.csv"))
    assert len(rows) == len(_rows(demo_data.vqa / "test.csv"))


def test_generative_with_an_lm_decoder_answers_without_its_folder(demo_data, runs_dir, tmp_path):
    """``decoder=hf:FOLDER`` (a tiny random GPT-2 with a BPE trained on the answers): the run
    keeps the LM's config, so evaluate and predict work after the folder is gone."""
    import shutil

    from tests.unit.models.test_lm import make_tiny_lm

    answers = [r["answer"] for r in _rows(demo_data.vqa / "train.csv")]
    lm = make_tiny_lm(tmp_path / "lm", answers, vocab=300)
    run = viewfinder.train("vqa", data=str(demo_data.vqa), model="cnn", answerer="generative",
                           decoder=f"hf:{lm}", min_count=1, output_dir=str(runs_dir),
                           progress=False, **FAST)  # fmt: skip
    assert (run.path / "bpe.json").is_file() and (run.path / "decoder" / "config.json").is_file()
    shutil.rmtree(lm)
    assert 0.0 <= run.evaluate()["accuracy"] <= 1.0
    rows = _rows(run.predict(out=runs_dir / "lm.csv"))
    assert len(rows) == len(_rows(demo_data.vqa / "test.csv"))


def test_filters_and_transformer_question_encoder(demo_data, runs_dir):
    run = viewfinder.train("vqa", data=str(demo_data.vqa / "train.csv"), model="cnn",
                           answer_type="yes/no", question_encoder="transformer",
                           fusion="concat", decoder_dim=32, min_count=1,
                           output_dir=str(runs_dir), progress=False, **FAST)  # fmt: skip
    split = _rows(run.path / "split.csv")
    trained = [json.loads(r["answers"])[0] for r in split if r["split"] in ("train", "val")]
    assert set(trained) <= {"yes", "no"}
    assert run.summary["data"]["answer_vocabulary"] == 2


def test_bad_input(demo_data, tmp_path):
    rows = _rows(demo_data.vqa / "train.csv")[:40]
    header = ["ID", "image_id", "question", "answer"]
    good = [[r["ID"], r["image_id"], r["question"], r["answer"]] for r in rows]
    images = str(demo_data.vqa.parent / "images")
    common = {"images": images, "output_dir": str(tmp_path / "runs"), "progress": False,
              "model": "cnn", "min_count": 1, **FAST}  # fmt: skip
    missing = _write(tmp_path / "missing.csv", header, [*good, ["X1", "img_99999", "What?", "a"]])
    with pytest.raises(UserError, match=r"row 42: image_id='img_99999'"):
        viewfinder.train("vqa", data=str(missing), **common)
    run = viewfinder.train("vqa", data=str(missing), on_bad_image="skip", **common)
    assert run.summary["data"]["skipped_rows"] == 1
    (skipped,) = _rows(run.path / "skipped_rows.csv")
    assert "row 42" in skipped["where"] and "img_99999" in skipped["reason"]
    empty = _write(tmp_path / "empty.csv", header, [*good, ["X2", rows[0]["image_id"], " ", "a"]])
    with pytest.raises(UserError, match="row 42: empty 'question'"):
        viewfinder.train("vqa", data=str(empty), **common)
    twice = _write(tmp_path / "twice.csv", header, [*good, good[0]])
    with pytest.raises(UserError, match=f"ID={good[0][0]!r} repeats"):
        viewfinder.train("vqa", data=str(twice), **common)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("ID,image_id,question,answer\nA,b,caf\xe9?,x\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        viewfinder.train("vqa", data=str(latin), **common)
    with pytest.raises(UserError, match="fusion"):
        viewfinder.train("vqa", data=str(missing), fusion="sum", **common)
