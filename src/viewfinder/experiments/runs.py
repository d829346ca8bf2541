"""``viewfinder runs [DIR]``: every run folder under DIR as one table row, newest first.

A run folder is a folder with ``config.yaml``; a fold set (``folds.json``) is one row, its fold
runs are not listed apart. Reads files only (``summary.json``, ``metrics.jsonl``, ``config.yaml``),
so it is instant and safe while runs are training. A run without ``summary.json`` is
``running`` while its ``metrics.jsonl`` or checkpoint changed in the last ``STALE_MINUTES``, else
``stopped`` (killed before it could write a summary; ``train --resume`` continues it).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from viewfinder.errors import UserError

STALE_MINUTES = 30
_MARKERS = ("config.yaml", "summary.json", "folds.json")  # what makes a folder a run
_SKIP = {"eval", "tensorboard", "__pycache__", "node_modules"}


@dataclass
class RunRow:
    path: str
    task: str
    model: str
    status: str
    monitor: str | None
    best: float | None
    epochs: str
    seconds: float | None
    created: float  # seconds since the epoch

    @property
    def age(self) -> str:
        return format_age(time.time() - self.created)


def format_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return "now"


def find_run_folders(root: Path) -> list[Path]:
    """Run folders and fold sets under ``root`` (itself included), in path order, not descending
    into them; hidden folders, ``eval/`` and symlink loops are skipped (``report`` shares this)."""
    if not root.is_dir():
        raise UserError(f"{root}: folder not found")
    found: list[Path] = []
    _walk(root, found, set())
    return found


def _walk(folder: Path, found: list[Path], seen: set[str]) -> None:
    real = os.path.realpath(folder)
    if real in seen:
        return
    seen.add(real)
    if any((folder / marker).is_file() for marker in _MARKERS):
        found.append(folder)
        return
    try:
        children = sorted(folder.iterdir())
    except PermissionError:
        return
    for child in children:
        if child.is_dir() and not child.name.startswith(".") and child.name not in _SKIP:
            _walk(child, found, seen)


def read_row(folder: Path) -> RunRow:
    if (folder / "folds.json").is_file():
        return _fold_row(folder)
    config = _yaml(folder / "config.yaml")
    summary = _json(folder / "summary.json")
    records = _records(folder / "metrics.jsonl")
    model = (config.get("model") or {}).get("name", "?")
    planned = (config.get("train") or {}).get("epochs")
    status = summary.get("status") or _live_status(folder)
    monitor = summary.get("monitor") or (config.get("train") or {}).get("monitor")
    best = summary.get("best_value")
    if best is None and records and monitor:
        values = [r[f"val_{monitor}"] for r in records if f"val_{monitor}" in r]
        best = (max if (config.get("train") or {}).get("monitor_mode") != "min" else min)(
            values, default=None
        )
    seconds = summary.get("total_time") or sum(r.get("epoch_time", 0) for r in records) or None
    return RunRow(str(folder), config.get("task", "?"), model, status, monitor, best,
                  f"{len(records)}/{planned or '?'}", seconds, _created(folder))  # fmt: skip


def _fold_row(folder: Path) -> RunRow:
    info = _json(folder / "folds.json")
    first = next(iter(sorted(folder.glob("fold*/config.yaml"))), None)
    config = _yaml(first) if first else {}
    mean = info.get("mean") or {}
    monitor = (config.get("train") or {}).get("monitor")
    model = (config.get("model") or {}).get("name", "?")
    return RunRow(str(folder), config.get("task", "?"), f"{model} ({info.get('folds', '?')} folds)",
                  info.get("status", "?"), monitor, mean.get(monitor) if monitor else None,
                  f"{len(info.get('fold_runs', []))} folds", None, _created(folder))  # fmt: skip


def _live_status(folder: Path) -> str:
    newest = max((p.stat().st_mtime for p in folder.glob("*") if p.is_file()), default=0.0)
    return "running" if time.time() - newest < STALE_MINUTES * 60 else "stopped"


def _created(folder: Path) -> float:
    marker = folder / "config.yaml"
    if not marker.is_file():
        marker = folder / "folds.json"
    return marker.stat().st_mtime if marker.exists() else folder.stat().st_mtime


def _yaml(path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now
    return rows


def list_runs(
    root: str | Path = "runs",
    *,
    task: str | None = None,
    status: str | None = None,
    model: str | None = None,
    since_hours: float | None = None,
    limit: int | None = None,
) -> list[RunRow]:
    """The rows, newest first, filtered (``model``: a substring; ``since_hours``: created in)."""
    rows = [read_row(folder) for folder in find_run_folders(Path(root))]
    if task:
        rows = [r for r in rows if r.task == task]
    if status:
        rows = [r for r in rows if r.status == status]
    if model:
        rows = [r for r in rows if model.lower() in r.model.lower()]
    if since_hours is not None:
        rows = [r for r in rows if time.time() - r.created <= since_hours * 3600]
    rows.sort(key=lambda r: r.created, reverse=True)
    return rows[:limit] if limit else rows


def rows_as_json(rows: list[RunRow]) -> str:
    return json.dumps([{**asdict(r), "age": r.age} for r in rows], indent=2)
