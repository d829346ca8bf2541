"""``iqa`` on frozen features: ``+ridge`` (closed form), ``+mlp`` and concatenated backbones
``A&B``, each through train -> evaluate -> predict on the tiny generated quality set."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from safetensors.torch import save_file

import viewfinder
from tests.helpers import run_cli
from tests.smoke.conftest import FAST
from viewfinder.errors import UserError
from viewfinder.models.backbones import create_backbone


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_ridge_trains_evaluates_predicts(demo_data, runs_dir):
    # fp32: training (probe under load) and evaluate (cached probe or rule) could otherwise
    # pick different precisions, and this test compares their numbers to 1e-4
    run = viewfinder.train("iqa", data=str(demo_data.iqa), model="cnn+ridge",
                           freeze_backbone=True, feature_flip=True, mos_range="0,10",
                           precision="fp32", output_dir=str(runs_dir), progress=False,
                           **FAST)  # fmt: skip
    s = run.summary
    assert s["status"] == "completed" and s["epochs_completed"] == 1 and s["best_epoch"] == 1
    [record] = run.metrics  # the closed-form fit is the run's one epoch
    ridge = json.loads((run.path / "ridge.json").read_text())
    assert record["ridge_alpha"] == ridge["alpha"] > 0 and len(ridge["grid"]) == 17
    # the checkpoint is the fitted model: flip TTA gives back the validation numbers of training
    again = run.evaluate(tta="hflip")
    for key in ("mos_score", "plcc", "srcc", "rmse"):
        assert again[key] == pytest.approx(s["metrics"][key], abs=1e-4)
    rows = _rows(run.predict(out=runs_dir / "submission.csv"))
    assert [r["img_name"] for r in rows] == [
        r["img_name"] for r in _rows(demo_data.iqa / "test.csv")
    ]
    assert all(0.0 <= float(r["mos"]) <= 10.0 for r in rows)


def test_ridge_with_a_fixed_alpha(demo_data, runs_dir):
    run = viewfinder.train("iqa", data=str(demo_data.iqa), model="cnn+ridge", ridge_alpha=3.5,
                           freeze_backbone=True, output_dir=str(runs_dir), progress=False,
                           **FAST)  # fmt: skip
    assert json.loads((run.path / "ridge.json").read_text())["alpha"] == 3.5
    assert math.isfinite(run.evaluate()["rmse"])


def test_concatenated_backbones_with_weights(demo_data, runs_dir, tmp_path):
    """CLI: ``model=cnn&resnet10t+mlp weights=none&FILE`` trains; evaluate/predict rebuild it."""
    source = create_backbone("resnet10t", num_classes=0)
    path = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    keys = [f"{k}={v}" for k, v in FAST.items()]
    done = run_cli("train", "iqa", f"data={demo_data.iqa}", "model=cnn&resnet10t+mlp",
                   "freeze_backbone=true", "mlp_hidden=16", f"weights=none&{path}",
                   f"output_dir={runs_dir}", "--quiet", *keys, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = viewfinder.Run(runs_dir / "iqa" / "cnn_resnet10t_mlp")
    assert run.summary["status"] == "completed"
    assert f"resnet10t: {len(source.state_dict())} tensors from {path}" in run.summary["weights"]
    assert math.isfinite(run.evaluate()["rmse"])
    assert len(_rows(run.predict(out=runs_dir / "sub.csv"))) == len(
        _rows(demo_data.iqa / "test.csv")
    )


def test_concatenated_ridge(demo_data, runs_dir):
    run = viewfinder.train("iqa", data=str(demo_data.iqa), model="cnn&cnn+ridge",
                           freeze_backbone=True, output_dir=str(runs_dir), progress=False,
                           **FAST)  # fmt: skip
    assert json.loads((run.path / "ridge.json").read_text())["features"] == 512
    assert run.evaluate()["mos_score"] == pytest.approx(run.summary["metrics"]["mos_score"])


@pytest.mark.parametrize(
    ("task", "keys", "match"),
    [
        ("iqa", {"model": "cnn+ridge"}, "add freeze_backbone=true"),
        ("iqa", {"model": "cnn&cnn"}, "concatenated backbones train only a head"),
        ("iqa", {"model": "cnn&cnn+attn", "freeze_backbone": True}, "give pooled features"),
        ("iqa", {"model": "cnn&cnn", "freeze_backbone": True, "weights": "a.pth"}, "1 file"),
        ("iqa", {"model": "cnn&resnet19", "freeze_backbone": True}, "unknown model 'resnet19'"),
        ("classify", {"model": "cnn+ridge", "freeze_backbone": True}, "regression heads"),
    ],
)
def test_bad_combinations_are_one_line(demo_data, tmp_path, task, keys, match):
    data = demo_data.iqa if task == "iqa" else demo_data.classify
    with pytest.raises(UserError, match=match) as caught:
        viewfinder.train(task, data=str(data), output_dir=str(tmp_path / "r"), progress=False,
                         **{**FAST, **keys})  # fmt: skip
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "r" / task).exists()  # nothing left behind
