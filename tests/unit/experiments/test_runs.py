"""``viewfinder runs``: run folders found, read, filtered and sorted from their files alone."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_cli
from viewfinder.errors import UserError
from viewfinder.experiments.runs import list_runs


def _run(folder: Path, task: str, model: str, *, age_hours: float, summary: dict | None = None,
         epochs: list[float] = ()) -> Path:  # fmt: skip
    folder.mkdir(parents=True)
    config = {"task": task, "model": {"name": model},
              "train": {"epochs": 3, "monitor": "accuracy", "monitor_mode": "max"}}  # fmt: skip
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    lines = [json.dumps({"epoch": i + 1, "val_accuracy": v, "epoch_time": 2.0})
             for i, v in enumerate(epochs)]  # fmt: skip
    (folder / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    stamp = time.time() - age_hours * 3600
    for path in [folder / "config.yaml", folder / "metrics.jsonl"]:
        os.utime(path, (stamp, stamp))
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    done = {"status": "completed", "monitor": "accuracy", "best_value": 0.9, "total_time": 12.0}
    _run(root / "classify" / "cnn", "classify", "cnn", age_hours=30, summary=done, epochs=[0.5])
    _run(root / "classify" / "resnet18", "classify", "resnet18", age_hours=2, epochs=[0.4, 0.6])
    _run(root / "iqa" / "cnn", "iqa", "cnn", age_hours=0.001, epochs=[0.1])
    folds = root / "classify" / "folded"
    _run(folds / "fold0", "classify", "cnn", age_hours=1, summary=done)
    (folds / "folds.json").write_text(json.dumps({"status": "completed", "folds": 2,
        "fold_runs": ["fold0", "fold1"], "mean": {"accuracy": 0.8}}))  # fmt: skip
    stamp = time.time() - 3600
    os.utime(folds / "folds.json", (stamp, stamp))
    return root


def test_rows_are_read_from_the_files_newest_first(runs):
    rows = list_runs(runs)
    assert [Path(r.path).name for r in rows] == ["cnn", "folded", "resnet18", "cnn"]
    by_path = {str(Path(r.path).relative_to(runs)): r for r in rows}
    done = by_path["classify/cnn"]
    assert (done.status, done.best, done.seconds, done.epochs) == ("completed", 0.9, 12.0, "1/3")
    stopped = by_path["classify/resnet18"]  # no summary, untouched for 2 h: killed
    assert (stopped.status, stopped.best, stopped.seconds) == ("stopped", 0.6, 4.0)
    assert by_path["iqa/cnn"].status == "running"  # written seconds ago
    folded = by_path["classify/folded"]  # one row for the fold set, none for its folds
    assert folded.best == 0.8 and folded.model == "cnn (2 folds)"


def test_filters_and_errors(runs):
    assert {r.task for r in list_runs(runs, task="iqa")} == {"iqa"}
    assert len(list_runs(runs, model="RESNET")) == 1
    assert all(r.status == "completed" for r in list_runs(runs, status="completed"))
    assert len(list_runs(runs, since_hours=3)) == 3
    assert len(list_runs(runs, limit=2)) == 2
    with pytest.raises(UserError, match="folder not found"):
        list_runs(runs / "nowhere")


def test_cli_table_and_json(runs, tmp_path):
    table = run_cli("runs", str(runs), cwd=tmp_path)
    assert (
        table.returncode == 0 and "classify/resnet18" in table.stdout and "stopped" in table.stdout
    )
    listed = json.loads(run_cli("runs", str(runs), "--json", "--task", "iqa", cwd=tmp_path).stdout)
    assert [r["task"] for r in listed] == ["iqa"]
