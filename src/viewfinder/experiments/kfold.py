"""Stratified k-fold: train every fold, keep out-of-fold predictions, report mean ± std.

``viewfinder train classify data=DIR folds=5`` makes one fold-set folder
``<output_dir>/<task>/<name>/`` holding one ordinary run folder per fold (``fold0`` ... ``fold4``;
fold i is trained with ``data.fold=i``: it validates on the i-th part of the pooled train+val
images, see ``data/sampling.stratified_kfold``; the test split is in no fold), and:

- ``folds.json``: k, the base config, each fold's best validation metrics with their mean and std
  (population std over the folds, as scikit-learn's ``scores.std()``), and the out-of-fold
  metrics. A folder is a fold set because it has this file.
- ``oof.csv``: ``id,label,pred,fold,path,prob_<class>...``: every pooled image exactly once,
  predicted by the fold that held it out (with the config's ``data.tta``).
- ``summary.json``: the fold set as one row of ``compare``: the mean of the folds' metrics.

Predicting from a fold set averages its folds' probabilities (``ensemble.py``). An interrupted
fold set continues with ``viewfinder train --resume FOLDSET``: finished folds are kept, the
interrupted one resumes from its checkpoint, the others start.
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from viewfinder.config import RunConfig
from viewfinder.errors import UserError
from viewfinder.experiments.ensemble import is_fold_set, record_key

DONE = ("completed", "early_stopped")


class FoldSet:
    """A fold-set folder: its fold runs, ``folds.json``, ``oof.csv`` and ``summary.json``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not is_fold_set(self.path):
            raise UserError(f"{self.path}: not a fold-set folder (folds.json missing)")

    @property
    def info(self) -> dict[str, Any]:
        """The content of ``folds.json``."""
        return json.loads((self.path / "folds.json").read_text())

    @property
    def summary(self) -> dict[str, Any]:
        path = self.path / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    @property
    def config(self) -> RunConfig:
        """The base config (``data.folds`` set, ``data.fold`` unset)."""
        return RunConfig.model_validate(self.info["config"])

    @property
    def runs(self) -> list[Any]:
        """The fold runs started so far."""
        from viewfinder.api import Run

        names = self.info["fold_runs"]
        return [Run(self.path / n) for n in names if (self.path / n / "config.yaml").is_file()]

    @property
    def oof(self) -> Path:
        return self.path / "oof.csv"

    def evaluate(
        self, data: str | None = None, split: str = "val", tta: str | None = None
    ) -> dict[str, Any]:
        """``val``: the out-of-fold score; other data or ``test``: the folds' averaged score."""
        from viewfinder import api

        return api.evaluate(self, data=data, split=split, tta=tta)

    def predict(
        self,
        data: str | None = None,
        out: str | Path | None = None,
        probabilities: bool = False,
        tta: str | None = None,
    ) -> Path:
        """A submission from the mean of the folds' probabilities (default: the test split)."""
        from viewfinder import api

        return api.predict(self, data=data, out=out, probabilities=probabilities, tta=tta)

    def __repr__(self) -> str:
        info = self.info
        monitor = info.get("config", {}).get("train", {}).get("monitor")
        mean, std = info.get("mean", {}).get(monitor), info.get("std", {}).get(monitor)
        detail = f", {monitor}={mean:.4f} ± {std:.4f}" if mean is not None else ""
        return (
            f"FoldSet({str(self.path)!r}, folds={info['folds']}, "
            f"status={info.get('status')!r}{detail})"
        )


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_json(path: Path, content: dict[str, Any]) -> None:
    path.write_text(json.dumps(content, indent=2))


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def _wait_for_everyone() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def train_folds(cfg: RunConfig, *, callbacks: Any = None, progress: bool = True) -> FoldSet:
    """Train folds 0..k-1 of ``cfg`` (``data.folds`` = k) in a new fold-set folder."""
    from viewfinder import api

    task_dir = Path(cfg.output_dir) / cfg.task
    new_parents = [p for p in (task_dir, task_dir.parent) if not p.exists()]
    path = api._shared_run_dir(cfg)
    info = {
        "kind": "fold_set", "task": cfg.task, "folds": cfg.data.folds, "seed": cfg.train.seed,
        "status": "running", "fold_runs": [f"fold{i}" for i in range(cfg.data.folds)],
        "config": cfg.model_dump(mode="json"),
    }  # fmt: skip
    if _is_main_process():
        _write_json(path / "folds.json", info)
    _wait_for_everyone()
    try:
        return _run_folds(path, callbacks=callbacks, progress=progress, overrides={})
    except UserError:
        if not any(path.rglob("*.safetensors")):  # failed on bad input before any checkpoint
            shutil.rmtree(path, ignore_errors=True)
            for parent in new_parents:
                if parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
        raise


def resume_folds(
    path: str | Path, *, callbacks: Any = None, progress: bool = True, **overrides: Any
) -> FoldSet:
    """Continue a fold set: finished folds are kept (or extended, with ``epochs=``), the
    interrupted fold resumes from its checkpoint, folds not started yet are trained."""
    path = Path(path)
    info = FoldSet(path).info
    if overrides and _is_main_process():  # folds not started yet get the new epochs too
        base = RunConfig.model_validate(info["config"]).with_overrides(overrides)
        _write_json(path / "folds.json", {**info, "config": base.model_dump(mode="json")})
    _wait_for_everyone()
    return _run_folds(path, callbacks=callbacks, progress=progress, overrides=overrides)


def _run_folds(path: Path, *, callbacks: Any, progress: bool, overrides: dict[str, Any]) -> FoldSet:
    info = _read_json(path / "folds.json")
    base = RunConfig.model_validate(info["config"])
    for fold, name in enumerate(info["fold_runs"]):
        run = _run_fold(path / name, base, fold, callbacks, progress, overrides)
        status = run.summary.get("status")
        if status not in DONE:  # interrupted: stop here, resumable
            if _is_main_process():
                _write_json(path / "folds.json", {**info, "status": status})
            return FoldSet(path)
    if _is_main_process():
        finish(path)
    _wait_for_everyone()
    return FoldSet(path)


def _run_fold(
    fold_dir: Path,
    base: RunConfig,
    fold: int,
    callbacks: Any,
    progress: bool,
    overrides: dict[str, Any],
) -> Any:
    from viewfinder import api

    if _read_json(fold_dir / "summary.json").get("status") in DONE and not overrides:
        return api.Run(fold_dir)
    if (fold_dir / "last.state.safetensors").is_file():
        return api.resume(fold_dir, callbacks=callbacks, progress=progress, **overrides)
    if fold_dir.exists() and _is_main_process():  # started, but stopped before a checkpoint
        shutil.rmtree(fold_dir)
    _wait_for_everyone()
    fold_dir.mkdir(parents=True, exist_ok=True)
    cfg = base.with_overrides({"data.fold": fold, "name": fold_dir.name})
    return api._fit(cfg, fold_dir, resume=False, callbacks=callbacks, progress=progress)


# --- out-of-fold predictions and the fold-set report -----------------------------------------


def combine_out_of_fold(
    fold_predictions: Sequence[Any], pool: Sequence[Any]
) -> tuple[Any, list[int]]:
    """One ``Predictions`` of every fold's validation images, and the fold of each row.

    Checks the k-fold bookkeeping: every pooled record (``pool``) is out-of-fold exactly once,
    and all folds share the class list.
    """
    import torch

    from viewfinder.training.inference import Predictions

    first = fold_predictions[0]
    for fold, pred in enumerate(fold_predictions):
        if pred.task.classes != first.task.classes:
            raise UserError(
                f"fold {fold} has classes {pred.task.classes}, fold 0 {first.task.classes}"
            )
    records = [r for pred in fold_predictions for r in pred.records]
    seen, expected = Counter(map(record_key, records)), Counter(map(record_key, pool))
    if seen != expected:
        key = next(k for k in seen.keys() | expected.keys() if seen[k] != expected[k])
        raise UserError(
            f"k-fold bookkeeping: image {key[1]} is out-of-fold {seen[key]} times, "
            f"expected {expected[key]} (was a fold's split.csv edited?)"
        )
    labelled = all(p.targets is not None for p in fold_predictions)
    combined = Predictions(
        task=first.task,
        records=records,
        probabilities=torch.cat([p.probabilities for p in fold_predictions]),
        targets=torch.cat([p.targets for p in fold_predictions]) if labelled else None,
        loss=None,
    )
    folds = [fold for fold, pred in enumerate(fold_predictions) for _ in pred.records]
    return combined, folds


def out_of_fold(path: str | Path, tta: str | None = None) -> tuple[Any, list[int]]:
    """Every fold's best model on its own validation images (TTA from the config or ``tta``)."""
    from viewfinder.api import Run
    from viewfinder.data.sampling import read_split
    from viewfinder.experiments.ensemble import log_loss
    from viewfinder.training.inference import predict_probabilities

    runs = [Run(p) for p in _fold_dirs(Path(path))]
    preds = [predict_probabilities(r.path, r.config, split="val", tta=tta) for r in runs]
    split = read_split(runs[0].path / "split.csv")
    combined, folds = combine_out_of_fold(preds, split["train"] + split["val"])
    combined.loss = log_loss(combined.probabilities, combined.targets)
    return combined, folds


def _fold_dirs(path: Path) -> list[Path]:
    info = _read_json(path / "folds.json")
    return [path / name for name in info["fold_runs"]]


def write_oof(path: Path, pred: Any, folds: Sequence[int]) -> Path:
    """``oof.csv``: id, true label, predicted label, fold, image path, one probability per class."""
    classes = pred.task.classes
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "label", "pred", "fold", "path", *[f"prob_{c}" for c in classes]])
        for record, fold, probs in zip(pred.records, folds, pred.probabilities, strict=True):
            writer.writerow([
                record.id, record.label, classes[int(probs.argmax())], fold, record.path,
                *[round(float(p), 6) for p in probs],
            ])  # fmt: skip
    return path


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values)


def finish(path: str | Path) -> dict[str, Any]:
    """Write the out-of-fold file and the fold set's ``folds.json`` / ``summary.json``."""
    from viewfinder.experiments.ensemble import score

    path = Path(path)
    info = _read_json(path / "folds.json")
    summaries = [_read_json(d / "summary.json") for d in _fold_dirs(path)]
    pred, folds = out_of_fold(path)
    write_oof(path / "oof.csv", pred, folds)
    per_fold = [
        {"fold": i, "run": d.name, "status": s["status"], "best_epoch": s["best_epoch"],
         "best_value": s["best_value"], "metrics": s["metrics"]}
        for i, (d, s) in enumerate(zip(_fold_dirs(path), summaries, strict=True))
    ]  # fmt: skip
    keys = [k for k in summaries[0]["metrics"] if all(k in s["metrics"] for s in summaries)]
    stats = {k: _mean_std([s["metrics"][k] for s in summaries]) for k in keys}
    oof = {"file": "oof.csv", "samples": len(pred.records), "tta": info["config"]["data"]["tta"]}
    info.update({
        "status": "completed", "per_fold": per_fold,
        "mean": {k: m for k, (m, _) in stats.items()}, "std": {k: s for k, (_, s) in stats.items()},
        "oof": {**oof, **score(pred, None)},
    })  # fmt: skip
    _write_json(path / "folds.json", info)
    _write_json(path / "summary.json", _summary(path, info, summaries))
    return info


def _summary(path: Path, info: dict[str, Any], summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The fold set as one run for ``compare``: means over the folds."""

    def mean_of(key: str) -> float | None:
        values = [s[key] for s in summaries if s.get(key) is not None]
        return statistics.fmean(values) if values else None

    first = summaries[0]
    return {
        "name": path.name, "kind": "fold_set", "folds": info["folds"], "task": first["task"],
        "model": first["model"], "status": "completed", "run_dir": str(path),
        "epochs": first["epochs"], "epochs_completed": round(mean_of("epochs_completed")),
        "best_epoch": None, "monitor": first["monitor"], "monitor_mode": first["monitor_mode"],
        "best_value": mean_of("best_value"), "metrics": info["mean"], "metrics_std": info["std"],
        "oof_metrics": info["oof"], "learning_rate": first["learning_rate"],
        "batch_size": first["batch_size"], "image_size": first["image_size"],
        "parameters": first["parameters"], "time_per_epoch": mean_of("time_per_epoch"),
        "images_per_second": mean_of("images_per_second"),
        "skipped_images": first.get("skipped_images", 0), "data": first.get("data", {}),
    }  # fmt: skip
