from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from viewfinder.errors import UserError
from viewfinder.experiments.compare import compare_runs, read_summary
from viewfinder.experiments.sweep import expand, run_name, split_grid

CSV_COLUMNS = [
    "run",
    "model",
    "accuracy",
    "macro_f1",
    "train_loss",
    "fit",
    "learning_rate",
    "batch_size",
    "epochs_completed",
    "parameters_m",
    "time_per_epoch",
    "total_time",
    "images_per_second",
]


def _run(root: Path, name: str, model: str, accuracy: float | None, mode: str = "max") -> Path:
    """A finished run folder as ``api`` writes it (only ``summary.json`` is read)."""
    folder = root / name
    folder.mkdir(parents=True)
    summary: dict[str, Any] = {
        "name": name,
        "model": model,
        "status": "finished",
        "monitor": "accuracy" if mode == "max" else "loss",
        "monitor_mode": mode,
        "best_value": accuracy,
        "metrics": {"accuracy": accuracy, "macro_f1": 0.5},
        "learning_rate": 0.001,
        "batch_size": 4,
        "epochs_completed": 2,
        "parameters": 11_180_000,
        "time_per_epoch": 12.5,
        "images_per_second": 150.0,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    return [
        _run(tmp_path, "cnn", "cnn", 0.61),
        _run(tmp_path, "resnet18", "resnet18", 0.83),
        _run(tmp_path, "resnet18_attn", "resnet18+attn", 0.72),
    ]


# --- compare -------------------------------------------------------------------------------------


def test_rows_best_first_when_higher_is_better(runs: list[Path]) -> None:
    table = compare_runs(runs)
    assert [r["run"] for r in table.rows] == ["resnet18", "resnet18_attn", "cnn"]
    assert table.rows[0]["model"] == "resnet18"
    assert table.rows[0]["parameters_m"] == 11.18


def test_rows_best_first_when_lower_is_better(tmp_path: Path) -> None:
    folders = [
        _run(tmp_path, "a", "cnn", 0.9, mode="min"),
        _run(tmp_path, "b", "cnn", 0.2, mode="min"),
        _run(tmp_path, "c", "cnn", 0.5, mode="min"),
    ]
    assert [r["run"] for r in compare_runs(folders).rows] == ["b", "c", "a"]


@pytest.mark.parametrize("mode", ["max", "min"])
def test_runs_without_a_best_value_go_last(tmp_path: Path, mode: str) -> None:
    folders = [
        _run(tmp_path, "none", "cnn", None, mode=mode),
        _run(tmp_path, "low", "cnn", 0.1, mode=mode),
        _run(tmp_path, "high", "cnn", 0.9, mode=mode),
    ]
    names = [r["run"] for r in compare_runs(folders).rows]
    assert names == (["high", "low", "none"] if mode == "max" else ["low", "high", "none"])


def test_runs_of_several_tasks_are_named_by_task_and_grouped(tmp_path: Path) -> None:
    """iqa, caption and iqa+caption runs all called ``cnn``: the task column tells them apart,
    and each task's runs rank by their own score (MOS score, CIDEr-D) among themselves."""
    folders = []
    for task, name, monitor, mode, value in [
        ("iqa", "cnn", "mos_score", "max", 0.4), ("caption", "cnn", "cider_d", "max", 0.9),
        ("iqa", "resnet18", "mos_score", "max", 0.7), ("caption", "gru", "cider_d", "max", 1.2),
    ]:  # fmt: skip
        folder = _run(tmp_path / task, name, name, value, mode=mode)
        summary = json.loads((folder / "summary.json").read_text())
        summary.update(task=task, monitor=monitor, metrics={monitor: value})
        (folder / "summary.json").write_text(json.dumps(summary))
        folders.append(folder)
    table = compare_runs(folders)
    assert [(r["task"], r["run"]) for r in table.rows] == [
        ("iqa", "resnet18"), ("iqa", "cnn"), ("caption", "gru"), ("caption", "cnn"),
    ]  # fmt: skip
    assert table.markdown().startswith("| run | task | model |")
    assert "| cnn | caption | cnn |" in table.markdown()


def test_runs_of_one_task_have_no_task_column(runs: list[Path]) -> None:
    assert all(key != "task" for key, _ in compare_runs(runs).columns)


def test_markdown_has_header_rule_and_one_line_per_run(runs: list[Path]) -> None:
    lines = compare_runs(runs).markdown().splitlines()
    assert len(lines) == 2 + len(runs)
    header, rule, *body = lines
    assert header.startswith(
        "| run | model | accuracy | macro f1 | train loss | fit | learning rate | batch |"
    )
    assert header.endswith("| s/epoch | total s | img/s |")
    assert rule == "|" + "|".join(["---"] * len(CSV_COLUMNS)) + "|"
    assert body[0].startswith("| resnet18 | resnet18 | 0.8300 | 0.5000 | - | - | 1e-03 | 4 | 2 |")
    assert all(line.count("|") == len(CSV_COLUMNS) + 1 for line in lines)


def test_markdown_shows_missing_values_as_dash(tmp_path: Path) -> None:
    folder = _run(tmp_path, "x", "cnn", None)
    assert "| x | cnn | - |" in compare_runs([folder]).markdown()


def test_write_markdown_and_csv(runs: list[Path], tmp_path: Path) -> None:
    md, csv_path = compare_runs(runs).write(tmp_path / "out")
    assert md.read_text() == compare_runs(runs).markdown() + "\n"
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == CSV_COLUMNS
    assert [row[0] for row in rows[1:]] == ["resnet18", "resnet18_attn", "cnn"]
    assert rows[1][:4] == ["resnet18", "resnet18", "0.83", "0.5"]
    assert len(rows) == 1 + len(runs)


def test_missing_summary(tmp_path: Path, runs: list[Path]) -> None:
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    with pytest.raises(UserError, match="summary.json missing") as info:
        compare_runs([*runs, unfinished])
    assert str(unfinished) in str(info.value)
    with pytest.raises(UserError):
        read_summary(tmp_path / "nope")


def test_no_runs() -> None:
    with pytest.raises(UserError, match="at least one run"):
        compare_runs([])


# --- sweep ---------------------------------------------------------------------------------------


def test_split_grid_comma_strings_and_lists() -> None:
    fixed, grid = split_grid(
        {
            "model": "cnn, resnet18+attn",
            "epochs": 2,
            "batch_size": [2, 4],
            "data": "fruits/",
            "learning_rate": "0.1,0.01,",
            "deterministic": "true,false",
        }
    )
    assert fixed == {"epochs": 2, "data": "fruits/"}
    assert grid == {
        "model": ["cnn", "resnet18+attn"],
        "batch_size": [2, 4],
        "learning_rate": [0.1, 0.01],
        "deterministic": [True, False],
    }


def test_split_grid_keeps_a_mos_range_and_paths_of_runs_whole() -> None:
    fixed, grid = split_grid(
        {"mos_range": "0,10", "data.mos_range": "1,5", "mos-range": "2,8",
         "output_dir": "runs/a,b", "model": "a,b"}
    )  # fmt: skip
    assert fixed == {"mos_range": "0,10", "data.mos_range": "1,5", "mos-range": "2,8",
                     "output_dir": "runs/a,b"}  # fmt: skip
    assert grid == {"model": ["a", "b"]}
    assert split_grid({"mos_range": ["0,10", "1,5"]})[1] == {"mos_range": ["0,10", "1,5"]}


def test_split_grid_refuses_an_empty_list() -> None:
    with pytest.raises(UserError, match="'model' has no values"):
        split_grid({"model": []})


def test_expand_first_key_varies_slowest() -> None:
    combos = expand({"model": ["cnn", "resnet18"], "learning_rate": [0.1, 0.01]})
    assert combos == [
        {"model": "cnn", "learning_rate": 0.1},
        {"model": "cnn", "learning_rate": 0.01},
        {"model": "resnet18", "learning_rate": 0.1},
        {"model": "resnet18", "learning_rate": 0.01},
    ]
    assert expand({}) == [{}]


def test_run_names_are_readable() -> None:
    assert run_name({"model": "resnet18+attn"}) == "resnet18_attn"
    assert run_name({"model.name": "cnn", "learning_rate": 1e-4}) == "cnn-learning_rate0.0001"
    assert run_name({"train.batch_size": 8, "data": "fruits/small"}) == "batch_size8-fruits_small"
    assert run_name({}) == "run"


def test_run_names_are_distinct_across_a_grid() -> None:
    combos = expand({"model": ["cnn", "cnn+attn"], "learning_rate": [1e-3, 1e-4]})
    names = [run_name(c) for c in combos]
    assert len(set(names)) == len(names)


def test_run_name_rejects_unknown_keys() -> None:
    with pytest.raises(UserError, match="learning_rate"):
        run_name({"learning_rat": 0.1})


@pytest.mark.parametrize(
    ("train_loss", "val_loss", "classes", "fit"),
    [(0.16, 1.62, 6, "overfits (10.1x val/train loss)"), (0.02, 0.05, 6, "ok"),
     (0.6955, 0.9583, 6, "overfits (1.4x val/train loss)"), (1.70, 1.75, 6, "underfits"),
     (0.0267, 0.0349, 6, "ok"), (0.8, 1.0, 6, "ok"),
     (0.4, 0.6, None, "ok"), (None, 0.6, 6, None)],
)  # fmt: skip
def test_fit_diagnosis(train_loss, val_loss, classes, fit) -> None:
    from viewfinder.experiments.compare import diagnose_fit

    assert diagnose_fit(train_loss, val_loss, classes) == fit
    if fit is not None:
        assert diagnose_fit(train_loss, val_loss, classes, True) == fit + "; still improving"
