"""The ``caption`` task end to end on the tiny generated set: train -> evaluate -> predict."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import viewfinder
from tests.smoke.conftest import FAST
from viewfinder.errors import UserError
from viewfinder.metrics.captions import java_available


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_train_evaluate_predict(demo_data, runs_dir):
    run = viewfinder.train("caption", data=str(demo_data.caption), model="cnn", min_count=1,
                           decoder="gru", decoder_attention=True, beam_size=2,
                           output_dir=str(runs_dir), progress=False, **FAST)  # fmt: skip
    summary = run.summary
    assert summary["status"] == "completed" and summary["monitor"] == "cider_d"
    assert {"cider_d", "bleu_4", "rouge_l", "distinct_captions"} <= set(summary["metrics"])
    assert summary["data"]["vocabulary"] > 10 and summary["data"]["truncated_captions"] >= 0
    split = _rows(run.path / "split.csv")
    train_ids = {r["id"] for r in split if r["split"] == "train"}
    assert train_ids and not train_ids & {r["id"] for r in split if r["split"] == "val"}

    results = run.evaluate(split="test")
    assert 0.0 <= results["cider_d"] and 0.0 <= results["bleu_1"] <= 1.0
    assert results["java_free"] == (0.0 if java_available() else 1.0)
    out = run.path / "eval" / "test"
    generated = _rows(out / "captions.csv")
    assert len(generated) == len({r["image_id"] for r in _rows(demo_data.caption / "test.csv")})
    assert all(json.loads(r["references"]) for r in generated)
    assert (out / "captions.png").stat().st_size > 0

    rows = _rows(run.predict(out=runs_dir / "submission.csv"))
    assert list(rows[0]) == ["image_id", "caption"]
    assert [r["image_id"] for r in rows] == [r["id"] for r in generated]
    assert all(r["caption"].strip() for r in rows)  # never an empty caption


def test_frozen_features_with_a_transformer_decoder(demo_data, runs_dir):
    run = viewfinder.train("caption", data=str(demo_data.caption / "train.csv"), model="cnn",
                           decoder="transformer", decoder_layers=1, decoder_dim=32,
                           freeze_backbone=True, decoding="greedy", min_count=1, scorer="python",
                           output_dir=str(runs_dir), progress=False, **FAST)  # fmt: skip
    assert run.summary["status"] == "completed" and "backbone frozen" in run.summary["weights"]
    results = run.evaluate()
    assert results["cider_d"] >= 0.0 and results["java_free"] == 1.0
    assert results["meteor"] is None and results["caption_score"] is None  # need Java


def test_uncaptioned_images_and_bad_keys(demo_data, tmp_path):
    csv_path = tmp_path / "caps.csv"
    rows = _rows(demo_data.caption / "train.csv")[:30]
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "caption"])
        writer.writerows([r["image_id"], r["caption"]] for r in rows)
        writer.writerow(["img_99999", ""])
    images = str(demo_data.caption.parent / "images")
    common = {"data": str(csv_path), "images": images, "output_dir": str(tmp_path / "runs"),
              "progress": False, "model": "cnn", "min_count": 1, "scorer": "python",
              **FAST}  # fmt: skip
    with pytest.raises(UserError, match="img_99999"):
        viewfinder.train("caption", **common)
    (demo_data.caption.parent / "images" / "img_99999.png").write_bytes(
        (demo_data.caption.parent / "images" / f"{rows[0]['image_id']}.png").read_bytes()
    )
    try:
        with pytest.raises(UserError, match="has no caption"):
            viewfinder.train("caption", **common)
        run = viewfinder.train("caption", on_bad_image="skip", **common)
        assert run.summary["data"]["images_without_captions"] == 1
    finally:
        (demo_data.caption.parent / "images" / "img_99999.png").unlink()
    with pytest.raises(UserError, match="model.decoder='lstmm' is invalid.*lstm, gru"):
        viewfinder.train("caption", decoder="lstmm", **common)
    with pytest.raises(UserError, match="train.loss='focal' is not a loss of task caption"):
        viewfinder.train("caption", loss="focal", **common)
