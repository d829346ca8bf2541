"""Experiment trackers through Accelerate's tracker API: ``log_with=tensorboard|mlflow|wandb``
("+" combines them), ``tracker_dir=`` for where their files go.

Each run logs its resolved config once (flattened ``section.key`` names) and every epoch record of
``metrics.jsonl`` (numbers only) at step = epoch, so the curves in TensorBoard, MLflow or W&B are
the run folder's own. Defaults, chosen so that nothing leaves the machine unless the user says so:

- ``tensorboard``: event files in ``RUN/tensorboard/`` (``tensorboard --logdir runs/`` shows
  every run), or ``tracker_dir/<task>/<run>``;
- ``mlflow``: ``$MLFLOW_TRACKING_URI`` when set (a team's server), else a local SQLite store
  ``sqlite:///<tracker_dir or output_dir>/mlflow.db`` (``mlflow ui --backend-store-uri ...``);
  MLflow 3 keeps the plain-file store in maintenance mode and refuses it by default, and SQLite
  is its recommended local store. Experiment ``viewfinder-<task>`` unless
  ``$MLFLOW_EXPERIMENT_NAME``; the MLflow run is named after the run folder;
- ``wandb``: project ``viewfinder-<task>``, files under ``tracker_dir`` or the run folder; set
  ``WANDB_MODE=offline`` to log without an account or network (``wandb sync`` later).

The packages are the ``trackers`` extra (``pip install 'viewfinder[trackers]'``; wandb apart);
a missing one is a one-line error before training starts.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from viewfinder.errors import UserError

TRACKERS = ("tensorboard", "mlflow", "wandb")
_PACKAGES = {
    "tensorboard": ("tensorboard", "pip install 'viewfinder[trackers]'"),
    "mlflow": ("mlflow", "pip install 'viewfinder[trackers]'"),
    "wandb": ("wandb", "pip install wandb"),
}


def parse_trackers(spec: str) -> list[str]:
    """``"none"`` -> []; ``"tensorboard+mlflow"`` -> both (unknown names fail, naming them)."""
    if spec in ("", "none"):
        return []
    names = [n.strip() for n in spec.replace(",", "+").split("+") if n.strip()]
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"log_with={spec!r}: unknown tracker {name!r}; choose none or "
                             f"{', '.join(TRACKERS)} ('+' combines them)")  # fmt: skip
    return list(dict.fromkeys(names))


def make_trackers(cfg: Any, run_dir: Path) -> list[Any]:
    """Accelerate tracker objects for ``cfg.train.log_with`` (see the module doc)."""
    names = parse_trackers(cfg.train.log_with)
    for name in names:
        module, install = _PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(f"log_with={name} needs the {module} package: {install}")
    base = Path(cfg.train.tracker_dir).expanduser() if cfg.train.tracker_dir else None
    trackers = []
    for name in names:
        trackers.append(_TRACKER_FACTORIES[name](cfg, run_dir, base))
    return trackers


def _tensorboard(cfg: Any, run_dir: Path, base: Path | None) -> Any:
    from accelerate.tracking import TensorBoardTracker

    if base is None:
        return TensorBoardTracker("tensorboard", run_dir)
    return TensorBoardTracker(f"{cfg.task}/{run_dir.name}", base)


def _mlflow(cfg: Any, run_dir: Path, base: Path | None) -> Any:
    import mlflow
    from accelerate.tracking import MLflowTracker

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        folder = (base or Path(cfg.output_dir)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    return MLflowTracker(experiment_name=f"viewfinder-{cfg.task}", run_name=run_dir.name)


def _wandb(cfg: Any, run_dir: Path, base: Path | None) -> Any:
    from accelerate.tracking import WandBTracker

    return WandBTracker(f"viewfinder-{cfg.task}", name=run_dir.name, dir=str(base or run_dir))


_TRACKER_FACTORIES = {"tensorboard": _tensorboard, "mlflow": _mlflow, "wandb": _wandb}


def flat_config(cfg: Any) -> dict[str, Any]:
    """The resolved config as ``section.key -> str | int | float | bool`` (what every tracker
    stores as hyper-parameters; None and lists become text)."""
    flat: dict[str, Any] = {}
    for key, value in cfg.model_dump(mode="json").items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, inner in items:
            name = f"{key}.{sub}" if sub else key
            flat[name] = inner if isinstance(inner, bool | int | float | str) else str(inner)
    return flat


def epoch_values(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of an epoch record (its ``epoch`` is the step)."""
    return {k: float(v) for k, v in record.items()
            if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip
