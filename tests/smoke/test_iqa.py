"""The ``iqa`` task end to end on the tiny generated quality set: train -> evaluate -> predict."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

import viewfinder
from tests.smoke.conftest import FAST
from viewfinder.errors import UserError


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_evaluate_predict(demo_data, runs_dir):
    run = viewfinder.train("iqa", data=str(demo_data.iqa), model="cnn", loss="mse+plcc",
                           mos_range="0,10", output_dir=str(runs_dir), progress=False,
                           **FAST)  # fmt: skip
    summary = run.summary
    assert summary["status"] == "completed" and summary["monitor"] == "mos_score"
    assert set(summary["metrics"]) == {"loss", "mos_score", "plcc", "srcc", "krcc", "rmse"}
    state = json.loads((run.path / "quality.json").read_text())
    assert state["mos_range"] == [0.0, 10.0] and state["std"] > 0
    split = _rows(run.path / "split.csv")
    train_ids = {r["id"] for r in split if r["split"] == "train"}
    assert train_ids and not train_ids & {r["id"] for r in split if r["split"] == "val"}

    results = run.evaluate(split="test", tta="hflip")
    assert 0.0 <= results["mos_score"] <= 1.0 and math.isfinite(results["rmse"])
    assert results["mos_score"] == pytest.approx(
        (max(results["plcc"], 0) + max(results["srcc"], 0)) / 2
    )
    for name in ("quality.png", "error_by_range.csv", "metrics.json"):
        assert (run.path / "eval" / "test" / name).stat().st_size > 0

    rows = _rows(run.predict(out=runs_dir / "submission.csv"))
    test_ids = [r["img_name"] for r in _rows(demo_data.iqa / "test.csv")]
    assert list(rows[0]) == ["img_name", "mos"]
    assert [r["img_name"] for r in rows] == test_ids
    assert all(0.0 <= float(r["mos"]) <= 10.0 for r in rows)


def test_frozen_backbone_head(demo_data, runs_dir):
    run = viewfinder.train("iqa", data=str(demo_data.iqa / "train.csv"), model="resnet18+attn",
                           freeze_backbone=True, feature_flip=True, output_dir=str(runs_dir),
                           progress=False, **FAST)  # fmt: skip
    assert run.summary["status"] == "completed"
    assert "backbone frozen" in run.summary["weights"]
    assert math.isfinite(run.evaluate()["rmse"])


def test_bad_mos_is_one_line_or_skipped(demo_data, tmp_path, capsys):
    root = tmp_path / "iqa"
    shutil.copytree(demo_data.iqa, root)
    lines = (root / "train.csv").read_text().splitlines()
    first = lines[1].split(",")
    lines[1] = ",".join([first[0], first[1], "bright", *first[3:]])
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"row 2: mos='bright' is not a number") as caught:
        viewfinder.train("iqa", data=str(root), output_dir=str(tmp_path / "r"), progress=False)
    assert "\n" not in str(caught.value)
    capsys.readouterr()
    run = viewfinder.train("iqa", data=str(root), model="cnn", on_bad_image="skip",
                           output_dir=str(tmp_path / "r"), progress=True, **FAST)  # fmt: skip
    assert run.summary["data"]["skipped_rows"] == 1
    assert len(_rows(run.path / "skipped_rows.csv")) == 1
    # the console says so, naming the list: a user learns it before the run ends
    printed = capsys.readouterr().out
    words = " ".join(printed.split())
    assert "skipped 1 data row that could not be used (on_bad_image=skip)" in words
    assert str(run.path / "skipped_rows.csv") in "".join(printed.split())  # wrapped on a terminal


def test_classification_keys_are_refused(demo_data, tmp_path):
    for keys, match in (({"loss": "focal"}, "not a loss of task iqa"),
                        ({"posthoc": "logit_adjust"}, "re-balances classifiers"),
                        ({"folds": 3}, "folds= is for classify")):  # fmt: skip
        with pytest.raises(UserError, match=match):
            viewfinder.train("iqa", data=str(demo_data.iqa), model="cnn", progress=False,
                             output_dir=str(tmp_path / "r"), **{**FAST, **keys})  # fmt: skip
