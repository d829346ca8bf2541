"""Grids of runs: every combination of the listed values, run one after another."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from viewfinder.config import canonical_key
from viewfinder.errors import UserError

# Keys (dotted, as ``canonical_key`` gives them) whose one value may hold commas: a MOS range is
# "LOW,HIGH" (``mos_range=0,10`` once became a grid of 0 and 10), and where runs go or what they
# are called is not a setting to compare. A list still sweeps them (the Python API).
WHOLE_VALUES = frozenset({"data.mos_range", "output_dir", "name"})


def split_grid(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Separate fixed overrides from swept ones (lists, or comma-separated strings)."""
    fixed: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    for key, value in overrides.items():
        if isinstance(value, str) and "," in value and canonical_key(key) not in WHOLE_VALUES:
            import yaml

            value = [yaml.safe_load(v.strip()) for v in value.split(",") if v.strip()]
        if isinstance(value, list | tuple):
            if not value:
                raise UserError(f"sweep key {key!r} has no values")
            grid[key] = list(value)
        else:
            fixed[key] = value
    return fixed, grid


def expand(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """All combinations, in a stable order (the first key varies slowest)."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def _short(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text.replace("+", "_").replace("/", "_").replace(" ", "")


def run_name(combo: Mapping[str, Any]) -> str:
    """A readable folder name: ``resnet18_attn-learning_rate1e-04``."""
    parts = []
    for key, value in combo.items():
        dotted = canonical_key(key)
        field = dotted.rpartition(".")[2]
        main_value = dotted in ("model", "data", "model.name", "data.path")
        parts.append(_short(value) if main_value else f"{field}{_short(value)}")
    return "-".join(parts) or "run"


def sweep_progress(done: int, total: int, elapsed: float, name: str) -> str:
    """``sweep: run 3 of 6 (cnn_lr0.001), 2 min 10 s so far, ~4 min 20 s left`` (the ETA from
    the mean time of the runs done; printed before each run, in logs too)."""
    line = f"sweep: run {done + 1} of {total} ({name})"
    if done:
        left = elapsed / done * (total - done)
        line += f", {_duration(elapsed)} so far, ~{_duration(left)} left"
    return line


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
