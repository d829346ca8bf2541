"""Every classification command end to end on the tiny generated set: train -> evaluate ->
predict -> compare -> sweep, through the Python API and the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

import viewfinder
from tests.helpers import run_cli
from tests.smoke.conftest import FAST
from viewfinder.errors import UserError


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_evaluate_predict_api(demo_data, runs_dir):
    run = viewfinder.train(
        "classify", data=str(demo_data.classify), model="cnn", output_dir=str(runs_dir),
        progress=False, **FAST,
    )  # fmt: skip
    files = {p.name for p in run.path.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "summary.json", "split.csv", "labels.json"} <= files
    assert {"best.safetensors", "last.safetensors", "last.state.safetensors"} <= files
    assert [m["epoch"] for m in run.metrics] == [1, 2]
    for record in run.metrics:
        assert {"train_loss", "val_loss", "val_accuracy", "learning_rate", "epoch_time"} <= set(
            record
        )
    summary = run.summary
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert summary["data"]["layout"] == "split-folders"
    assert summary["data"]["num_classes"] == 6

    results = run.evaluate(split="val")
    assert 0.0 <= results["accuracy"] <= 1.0
    assert math.isfinite(results["loss"])
    for name in ("confusion_matrix.png", "report.txt", "per_class.csv", "metrics.json"):
        assert (run.path / "eval" / "val" / name).stat().st_size > 0

    sub = run.predict(probabilities=True)
    rows = _rows(sub)
    test_size = summary["data"]["split_sizes"]["test"]
    assert len(rows) == test_size
    classes = json.loads((run.path / "labels.json").read_text())["classes"]
    assert list(rows[0]) == ["id", "label", *[f"prob_{c}" for c in classes]]
    assert all(r["label"] in classes for r in rows)
    assert abs(sum(float(rows[0][f"prob_{c}"]) for c in classes) - 1.0) < 1e-3


def test_csv_layout_writes_dacon_submission(demo_data, runs_dir):
    run = viewfinder.train(
        "classify", data=str(demo_data.classify_csv), model="resnet18", output_dir=str(runs_dir),
        progress=False, **FAST,
    )  # fmt: skip
    assert run.summary["data"]["layout"] == "csv-dir"
    sub = run.predict(out=runs_dir / "sub.csv")
    rows = _rows(sub)
    test_ids = [r["id"] for r in _rows(demo_data.classify_csv / "test.csv")]
    assert [r["id"] for r in rows] == test_ids
    assert list(rows[0]) == ["id", "label"]


def test_attention_variant_and_comparison(demo_data, runs_dir):
    runs = [
        viewfinder.train(
            "classify",
            data=str(demo_data.classify),
            model=name,
            output_dir=str(runs_dir),
            progress=False,
            **FAST,
        )  # fmt: skip
        for name in ("cnn+attn", "resnet18+attn")
    ]
    table = viewfinder.compare(runs, out=runs_dir / "cmp")
    assert len(table.rows) == 2
    assert {r["model"] for r in table.rows} == {"cnn+attn", "resnet18+attn"}
    text = (runs_dir / "cmp" / "comparison.md").read_text()
    assert "resnet18+attn" in text and "s/epoch" in text
    assert len(_rows(runs_dir / "cmp" / "comparison.csv")) == 2


def test_sweep_runs_every_combination(demo_data, runs_dir):
    runs, table = viewfinder.sweep(
        "classify", data=str(demo_data.classify), model="cnn,cnn+attn",
        learning_rate=[1e-3, 1e-4], output_dir=str(runs_dir), progress=False,
        **{k: v for k, v in FAST.items() if k != "epochs"}, epochs=1,
    )  # fmt: skip
    assert len(runs) == 4 and len(table.rows) == 4
    names = sorted(r.path.name for r in runs)
    assert names[0] == "cnn-learning_rate0.0001"
    assert (runs[0].path.parent.parent / "comparison.md").is_file()  # runs/sweeps/NAME/


def test_bad_data_path_leaves_no_folder(runs_dir):
    with pytest.raises(UserError, match="nowhere"):
        viewfinder.train("classify", data=str(runs_dir / "nowhere"), output_dir=str(runs_dir),
                         progress=False)  # fmt: skip
    assert not runs_dir.exists()
    runs_dir.mkdir()  # a folder the user made stays, even when empty
    with pytest.raises(UserError, match="nowhere"):
        viewfinder.train("classify", data=str(runs_dir / "nowhere"), output_dir=str(runs_dir),
                         progress=False)  # fmt: skip
    assert runs_dir.is_dir() and not any(runs_dir.iterdir())


def test_unknown_model_fails_before_work(demo_data, runs_dir):
    with pytest.raises(UserError, match="resnet19"):
        viewfinder.train("classify", data=str(demo_data.classify), model="resnet19",
                         output_dir=str(runs_dir), progress=False)  # fmt: skip
    assert not runs_dir.exists()


_cli = run_cli


@pytest.mark.slow
def test_cli_end_to_end(demo_data, tmp_path):
    fast = [f"{k}={v}" for k, v in FAST.items()]
    done = _cli("train", "classify", f"data={demo_data.classify}", "model=cnn", "-q", *fast,
                cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = tmp_path / "runs" / "classify" / "cnn"
    assert (run / "best.safetensors").is_file()
    done = _cli("evaluate", str(run), "--split", "test", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "accuracy" in done.stdout
    assert (run / "eval" / "test" / "confusion_matrix.png").is_file()
    done = _cli("predict", str(run), "--out", "sub.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(_rows(tmp_path / "sub.csv")) > 0
    done = _cli("predict", str(run), "--data", str(demo_data.classify / "test"), "-o", "s2.csv",
                cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = _cli("compare", str(run), str(run), "--out", "cmp", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "| cnn |" in done.stdout
    done = _cli("sweep", "classify", f"data={demo_data.classify}", "model=cnn,cnn+attn", "-q",
                *fast, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "cnn+attn" in done.stdout
