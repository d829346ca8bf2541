"""``log_with=tensorboard+mlflow``: the per-epoch records and the config reach both trackers
(read back from TensorBoard's event files and MLflow's local SQLite store)."""

from __future__ import annotations

import json

import pytest

import viewfinder
from tests.smoke.conftest import FAST
from viewfinder.errors import UserError


def _records(run) -> list[dict]:
    return [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_and_mlflow_get_every_epoch(demo_data, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    trackers = tmp_path / "trackers"
    run = viewfinder.train("classify", data=str(demo_data.classify), model="cnn",
                           log_with="tensorboard+mlflow", tracker_dir=str(trackers),
                           output_dir=str(tmp_path / "runs"), progress=False, **FAST)  # fmt: skip
    records = _records(run)
    assert len(records) == FAST["epochs"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trackers / "classify" / run.path.name)).Reload()
    for key in ("train_loss", "val_loss", "val_accuracy", "learning_rate"):
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in records], key

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{trackers / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("viewfinder-classify")
    (logged_run,) = client.search_runs([experiment.experiment_id])
    assert logged_run.info.run_name == run.path.name
    assert logged_run.data.params["model.name"] == "cnn"
    assert logged_run.data.params["train.epochs"] == str(FAST["epochs"])
    history = client.get_metric_history(logged_run.info.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [
        (r["epoch"], pytest.approx(r["val_accuracy"])) for r in records
    ]


def test_tensorboard_default_is_inside_the_run_folder(demo_data, tmp_path):
    run = viewfinder.train("classify", data=str(demo_data.classify), model="cnn",
                           log_with="tensorboard", output_dir=str(tmp_path / "runs"),
                           progress=False, **{**FAST, "epochs": 1})  # fmt: skip
    assert list((run.path / "tensorboard").glob("events.out.tfevents.*"))


def test_bad_tracker_names_and_missing_packages_fail_in_one_line(demo_data, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="unknown tracker 'tensorbord'"):
        viewfinder.train("classify", data=str(demo_data.classify), log_with="tensorbord",
                         output_dir=str(tmp_path / "runs"), progress=False)  # fmt: skip
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))  # fmt: skip
    with pytest.raises(UserError, match="log_with=wandb needs the wandb package"):
        viewfinder.train("classify", data=str(demo_data.classify), model="cnn", log_with="wandb",
                         output_dir=str(tmp_path / "runs"), progress=False, **FAST)  # fmt: skip
