"""k-fold, test-time augmentation and ensembles end to end on the tiny generated set.

One 3-fold set is trained per module (interrupted in fold 1, then resumed) and shared: its fold
runs double as the members of a two-run ensemble. The CLI runs in-process (typer's runner).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import viewfinder
from tests.smoke.conftest import FAST
from viewfinder.cli import app
from viewfinder.data.sampling import read_split
from viewfinder.errors import UserError
from viewfinder.experiments.kfold import FoldSet
from viewfinder.training.callbacks import Callback
from viewfinder.training.inference import run_inference

FOLDS = 3


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class _InterruptSecondFold(Callback):
    """Ctrl-C at the first step of the second fold run."""

    def __init__(self) -> None:
        self.starts = 0

    def on_train_start(self, info: dict[str, Any]) -> None:
        self.starts += 1

    def on_step_end(self, step: dict[str, Any]) -> None:
        if self.starts == 2:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def fold_set(demo_data, tmp_path_factory) -> FoldSet:
    settings = {**FAST, "epochs": 1, "tta": "hflip"}
    stopped = viewfinder.train(
        "classify", data=str(demo_data.classify), model="cnn", folds=FOLDS, progress=False,
        output_dir=str(tmp_path_factory.mktemp("folds") / "runs"),
        callbacks=[_InterruptSecondFold()], **settings,
    )  # fmt: skip
    assert isinstance(stopped, FoldSet) and stopped.info["status"] == "interrupted"
    assert stopped.path.parent.name == "classify" and len(stopped.runs) == 2
    assert not (stopped.path / "summary.json").exists()
    resumed = viewfinder.resume(stopped.path, progress=False)
    assert resumed.path == stopped.path
    return resumed


def test_fold_set_writes_folds_json_and_out_of_fold_file(fold_set):
    info = fold_set.info
    assert info["status"] == "completed" and info["folds"] == FOLDS
    assert [r.path.name for r in fold_set.runs] == ["fold0", "fold1", "fold2"]
    assert [r.config.data.fold for r in fold_set.runs] == [0, 1, 2]
    assert all(r.summary["status"] == "completed" for r in fold_set.runs)
    assert len(info["per_fold"]) == FOLDS
    for key in ("accuracy", "macro_f1", "weighted_f1"):
        values = [f["metrics"][key] for f in info["per_fold"]]
        assert info["mean"][key] == pytest.approx(sum(values) / FOLDS)
        assert info["std"][key] >= 0.0
        assert 0.0 <= info["oof"][key] <= 1.0

    split = read_split(fold_set.runs[0].path / "split.csv")
    pool = split["train"] + split["val"]
    rows = _rows(fold_set.oof)
    assert info["oof"]["samples"] == len(rows) == len(pool)
    assert sorted(r["path"] for r in rows) == sorted(str(r.path) for r in pool)  # exactly once
    held_out = {
        str(r.path): fold
        for fold, run in enumerate(fold_set.runs)
        for r in read_split(run.path / "split.csv")["val"]
    }
    assert all(held_out[r["path"]] == int(r["fold"]) for r in rows)
    classes = json.loads((fold_set.runs[0].path / "labels.json").read_text())["classes"]
    assert list(rows[0]) == ["id", "label", "pred", "fold", "path", *[f"prob_{c}" for c in classes]]
    accuracy = sum(r["label"] == r["pred"] for r in rows) / len(rows)
    assert info["oof"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)

    table = viewfinder.compare([fold_set])  # summary.json: the fold set as one row
    assert table.rows[0]["run"] == fold_set.path.name
    assert table.rows[0]["accuracy"] == pytest.approx(info["mean"]["accuracy"])


def test_predict_from_a_fold_set_averages_its_folds(fold_set, tmp_path):
    sub = fold_set.predict(out=tmp_path / "sub.csv", probabilities=True)
    rows = _rows(sub)
    singles = [
        _rows(r.predict(out=tmp_path / f"{r.path.name}.csv", probabilities=True))
        for r in fold_set.runs
    ]
    assert len(rows) == fold_set.runs[0].summary["data"]["split_sizes"]["test"]
    probs = [k for k in rows[0] if k.startswith("prob_")]
    for i, row in enumerate(rows):
        assert [s[i]["id"] for s in singles] == [row["id"]] * FOLDS
        for key in probs:  # each fold with its config's tta (hflip)
            manual = sum(float(s[i][key]) for s in singles) / FOLDS
            assert float(row[key]) == pytest.approx(manual, abs=2e-6)
        assert row["label"] == max(probs, key=lambda k: float(row[k]))[5:]


def test_cli_predict_with_two_runs_and_weights(fold_set, demo_data, tmp_path):
    runner = CliRunner()
    fold0, fold1 = (str(r.path) for r in fold_set.runs[:2])
    test_dir = str(demo_data.classify / "test")
    out = tmp_path / "ensemble.csv"
    args = ["predict", fold0, fold1, "--data", test_dir, "-o", str(out), "--probabilities"]
    result = runner.invoke(app, [*args, "--tta", "none", "--weights", "1,3"])
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    singles = [
        _rows(
            viewfinder.predict(
                p, data=test_dir, out=tmp_path / f"{i}.csv", probabilities=True, tta="none"
            )
        )
        for i, p in enumerate((fold0, fold1))
    ]
    assert [r["id"] for r in rows] == [r["id"] for r in singles[0]]
    for key in (k for k in rows[0] if k.startswith("prob_")):
        for row, a, b in zip(rows, *singles, strict=True):
            assert float(row[key]) == pytest.approx(
                (float(a[key]) + 3 * float(b[key])) / 4, abs=2e-6
            )

    submission = tmp_path / "submission.csv"
    result = runner.invoke(
        app, ["predict", str(fold_set.path), "--data", test_dir, "-o", str(submission)]
    )
    assert result.exit_code == 0, result.output
    assert list(_rows(submission)[0]) == ["id", "label"]


def test_cli_evaluate_with_tta_and_ensembles(fold_set, tmp_path):
    runner = CliRunner()
    fold0 = fold_set.runs[0]
    result = runner.invoke(app, ["evaluate", str(fold0.path), "--split", "test", "--tta", "hflip"])
    assert result.exit_code == 0, result.output
    flipped = json.loads((fold0.path / "eval" / "test" / "metrics.json").read_text())
    assert 0.0 <= flipped["accuracy"] <= 1.0 and flipped["loss"] > 0
    _, metrics, loss, _ = run_inference(fold0.path, fold0.config, split="test", tta="hflip")
    assert loss == pytest.approx(flipped["loss"])
    assert metrics.compute()["accuracy"] == pytest.approx(flipped["accuracy"])
    _, _, plain_loss, _ = run_inference(fold0.path, fold0.config, split="test", tta="none")
    assert plain_loss != pytest.approx(flipped["loss"], rel=1e-9)  # --tta overrode the config

    result = runner.invoke(app, ["evaluate", str(fold_set.path)])  # a fold set on val: out-of-fold
    assert result.exit_code == 0, result.output
    oof = json.loads((fold_set.path / "eval" / "oof" / "metrics.json").read_text())
    assert oof["accuracy"] == pytest.approx(fold_set.info["oof"]["accuracy"])

    runs = [str(r.path) for r in fold_set.runs[:2]]
    out = tmp_path / "ens"
    result = runner.invoke(app, ["evaluate", *runs, "--split", "test", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "metrics.json").is_file() and (out / "report.txt").is_file()


def test_ensemble_members_must_share_the_class_list(fold_set, tmp_path):
    odd = tmp_path / "odd"
    shutil.copytree(fold_set.runs[1].path, odd)
    labels = json.loads((odd / "labels.json").read_text())
    labels["classes"] = labels["classes"][::-1]
    (odd / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(UserError, match=f"^{odd}: its classes"):
        viewfinder.predict([fold_set.runs[0].path, odd], out=tmp_path / "x.csv")
    with pytest.raises(UserError, match="data.tta"):
        viewfinder.predict(fold_set.runs[0], out=tmp_path / "y.csv", tta="rotate")


def test_cli_resume_of_a_finished_fold_set_reports_it(fold_set):
    result = CliRunner().invoke(app, ["train", "--resume", str(fold_set.path), "-q"])
    assert result.exit_code == 0, result.output
    assert (
        f"{FOLDS}-fold set completed" in result.output and "out-of-fold accuracy=" in result.output
    )


def test_serving_a_fold_set_answers_as_its_ensemble(fold_set, demo_data, tmp_path):
    from fastapi.testclient import TestClient

    from viewfinder.serve.app import create_app
    from viewfinder.serve.server import load_runs

    image = next((demo_data.classify / "test").rglob("*.png"))
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / image.name).write_bytes(image.read_bytes())
    row = _rows(fold_set.predict(data=str(folder), out=tmp_path / "one.csv", probabilities=True))[0]
    folds = ",".join(str(r.path) for r in fold_set.runs)
    served = load_runs([str(fold_set.path), f"ens={folds}"])  # the fold set; its folds, named
    assert served[0].info["members"] == FOLDS and served[0].info["tta"] == ["identity", "hflip"]
    assert served[1].name == "ens" and served[1].info["members"] == FOLDS
    with TestClient(create_app(served)) as client:
        for name in (served[0].name, "ens"):
            answer = client.post(f"/v1/runs/{name}/predict",
                                 files={"image": ("a.png", image.read_bytes())}).json()  # fmt: skip
            assert answer["prediction"]["label"] == row["label"]
            for item in answer["top_k"]:
                expected = float(row[f"prob_{item['label']}"])
                assert item["probability"] == pytest.approx(expected, abs=2e-6)
