"""The comparison table of runs: reads run folders only (``summary.json``), writes Markdown/CSV."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from viewfinder.errors import UserError

FIXED = [
    ("run", "run"),
    ("model", "model"),
]
TRAILING = [
    ("train_loss", "train loss"),
    ("fit", "fit"),
    ("learning_rate", "learning rate"),
    ("batch_size", "batch"),
    ("epochs_completed", "epochs"),
    ("parameters_m", "params (M)"),
    ("time_per_epoch", "s/epoch"),
    ("total_time", "total s"),
    ("images_per_second", "img/s"),
]


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a finished run folder (summary.json missing)")
    return json.loads(path.read_text())


@dataclass
class Comparison:
    """Rows (one per run) and the column order; renders to Markdown and CSV."""

    rows: list[dict[str, Any]]
    columns: list[tuple[str, str]]  # (key, header)

    def markdown(self) -> str:
        header = "| " + " | ".join(h for _, h in self.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.columns) + "|"
        body = [
            "| " + " | ".join(_cell(r.get(k)) for k, _ in self.columns) + " |" for r in self.rows
        ]
        return "\n".join([header, rule, *body])

    def write(self, out_dir: str | Path, stem: str = "comparison") -> tuple[Path, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md, csv_path = out / f"{stem}.md", out / f"{stem}.csv"
        md.write_text(self.markdown() + "\n")
        with open(csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([k for k, _ in self.columns])
            writer.writerows([[r.get(k, "") for k, _ in self.columns] for r in self.rows])
        return md, csv_path


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
            return f"{value:.0e}"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def diagnose_fit(
    train_loss: Any, val_loss: Any, num_classes: Any = None, still_improving: bool = False
) -> str | None:
    """A plain-words reading of the best epoch's losses, so a weak row explains itself.

    ``underfits``: training loss still above 80 % of chance (ln C, classification); ``overfits``:
    validation loss at least 1.3x the training loss and 0.25 above it; else ``ok``. ``still
    improving`` is added when the best epoch was the last: more epochs would likely help.
    """
    if not isinstance(train_loss, float | int) or not isinstance(val_loss, float | int):
        return None
    if num_classes and train_loss > 0.8 * math.log(num_classes):
        verdict = "underfits"
    elif val_loss >= 1.3 * train_loss and val_loss - train_loss >= 0.25:
        verdict = f"overfits ({val_loss / max(train_loss, 1e-9):.1f}x val/train loss)"
    else:
        verdict = "ok"
    return verdict + ("; still improving" if still_improving else "")


def compare_runs(run_dirs: Sequence[str | Path]) -> Comparison:
    """One row per run: its best-epoch validation metrics, recipe and speed; best first."""
    if not run_dirs:
        raise UserError("compare needs at least one run folder")
    rows, metric_keys = [], []
    for run_dir in run_dirs:
        s = read_summary(run_dir)
        metrics = s.get("metrics", {})
        for key in metrics:
            if key not in metric_keys:
                metric_keys.append(key)
        rows.append({
            "run": s["name"], "task": s.get("task"), "model": s["model"], **metrics,
            "train_loss": s.get("train_loss"),
            "fit": diagnose_fit(
                s.get("train_loss"), metrics.get("loss"), s.get("data", {}).get("num_classes"),
                still_improving=s.get("best_epoch") == s.get("epochs") and s.get("epochs", 0) > 1,
            ),
            "learning_rate": s.get("learning_rate"), "batch_size": s.get("batch_size"),
            "epochs_completed": s.get("epochs_completed"),
            "parameters_m": round(s["parameters"] / 1e6, 2) if s.get("parameters") else None,
            "time_per_epoch": s.get("time_per_epoch"),
            "total_time": s.get("total_time"),
            "images_per_second": s.get("images_per_second"),
            "_monitor": s.get("best_value"), "_mode": s.get("monitor_mode", "max"),
            "_path": str(run_dir),
        })  # fmt: skip
    # runs of several tasks (iqa and caption beside iqa+caption) get a task column and are
    # grouped by task, best first within each: their monitors are different scores
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    rows.sort(key=lambda r: (tasks.index(r["task"]), _rank(r)))
    fixed = FIXED[:1] + [("task", "task")] + FIXED[1:] if len(tasks) > 1 else FIXED
    columns = fixed + [(k, k.replace("_", " ")) for k in metric_keys] + TRAILING
    return Comparison(rows, columns)


def _rank(row: dict[str, Any]) -> float:
    """Best first by the run's own monitor (its mode: max or min); runs without one last."""
    if row["_monitor"] is None:
        return float("inf")
    return -row["_monitor"] if row["_mode"] == "max" else row["_monitor"]
