"""The runs a report shows: found under the given folders, read from their files only.

A folder with ``summary.json`` is a finished run; with ``folds.json`` a fold set (one entry: its
fold runs are not listed again); any other folder is searched for runs, recursively (a sweep
folder, ``runs/``, a project folder). Folders holding a run's ``config.yaml`` and
``metrics.jsonl`` but no ``summary.json`` are still training or were stopped: they are listed as
unfinished, not shown.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from viewfinder.errors import UserError
from viewfinder.experiments.runs import find_run_folders

SPLIT_ORDER = ("test", "val", "oof")  # eval views shown first; other eval folders follow by name


def read_json(path: Path) -> Any:
    """A JSON file of a run folder; a corrupt one is named in one line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from err


@dataclass
class ReportRun:
    """One run or fold set of the report, with what the page gives it (label, colour, anchor)."""

    path: Path
    summary: dict[str, Any]
    label: str = ""
    color: str = "#1f77b4"
    anchor: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        return str(self.summary.get("task") or "unknown")

    @property
    def is_fold_set(self) -> bool:
        return (self.path / "folds.json").is_file()

    def fold_info(self) -> dict[str, Any]:
        return read_json(self.path / "folds.json") if self.is_fold_set else {}

    def epoch_logs(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """``metrics.jsonl`` records: one list for a run, one per fold for a fold set."""
        if not self.is_fold_set:
            return [(self.label, _read_jsonl(self.path / "metrics.jsonl"))]
        folds = self.fold_info().get("fold_runs", [])
        return [(f"{self.label}/{name}", _read_jsonl(self.path / name / "metrics.jsonl"))
                for name in folds]  # fmt: skip

    def config_text(self) -> str:
        """The resolved config as written (a fold set: its first fold's, with ``data.fold``)."""
        path = self.path / "config.yaml"
        if not path.is_file() and self.is_fold_set:
            folds = self.fold_info().get("fold_runs", [])
            path = self.path / folds[0] / "config.yaml" if folds else path
        return path.read_text(encoding="utf-8") if path.is_file() else ""

    def eval_dirs(self) -> list[Path]:
        """``eval/<split>/`` folders with results: test, val, oof first, then the others."""
        root = self.path / "eval"
        if not root.is_dir():
            return []
        found = [d for d in root.iterdir() if d.is_dir() and (d / "metrics.json").is_file()]
        rank = {name: i for i, name in enumerate(SPLIT_ORDER)}
        return sorted(found, key=lambda d: (rank.get(d.name, len(rank)), d.name))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a run killed mid-write leaves a cut last line; the epochs before it stand
    return records


def _walk(folder: Path, runs: list[Path], unfinished: list[Path], seen: set[str]) -> None:
    """Finished runs (``summary.json``; a fold set has one) and the unfinished run folders."""
    for path in find_run_folders(folder):
        real = os.path.realpath(path)
        if real in seen:  # a run reached from two given paths
            continue
        seen.add(real)
        (runs if (path / "summary.json").is_file() else unfinished).append(path)


def _labels(paths: list[Path]) -> list[str]:
    """Each run's path relative to what all share (a sweep's runs: their own names)."""
    if len(paths) == 1:
        return [paths[0].name]
    root = Path(os.path.commonpath([os.path.abspath(p) for p in paths]))
    return [os.path.relpath(os.path.abspath(p), root) for p in paths]


def find_runs(paths: Sequence[str | Path]) -> tuple[list[ReportRun], list[Path]]:
    """Every finished run and fold set under ``paths``, and the unfinished folders seen."""
    if not paths:
        raise UserError("report needs at least one run, fold-set or sweep folder")
    found: list[Path] = []
    unfinished: list[Path] = []
    seen: set[str] = set()
    for given in map(Path, paths):
        if not given.is_dir():
            raise UserError(f"{given}: no such folder (give run, fold-set or sweep folders)")
        before = len(found)
        _walk(given, found, unfinished, seen)
        if len(found) == before and not any(u.is_relative_to(given) for u in unfinished):
            raise UserError(
                f"{given}: no runs found (no summary.json in it or below); "
                "give a run folder, a fold set, a sweep folder or a folder holding them"
            )
    if not found:
        names = ", ".join(str(p) for p in unfinished[:3])
        raise UserError(f"no finished runs, only unfinished ones ({names}): finish or resume them")
    runs = [ReportRun(p, read_json(p / "summary.json")) for p in found]
    for run, label in zip(runs, _labels(found), strict=True):
        run.label = label
    return runs, unfinished
