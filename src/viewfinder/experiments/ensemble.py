"""Ensembles: average the class probabilities of several runs, into one submission or one score.

A member is a run folder; a fold-set folder (``folds.json``, see ``kfold.py``) stands for all of
its fold runs. Every member predicts the same images (``data``, or a split the runs share, such as
the test split of a fold set) with its best checkpoint and test-time views, and the probabilities
are averaged, with equal weights unless ``weights`` are given (one per argument; each member run
of that argument gets it). Probabilities, not logits: separately trained models have logits on
different scales (their confidence, or temperature, differs), probabilities are comparable. The
ensemble's loss is the log loss of the averaged probabilities.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from viewfinder.errors import UserError


def is_fold_set(path: str | Path) -> bool:
    return (Path(path) / "folds.json").is_file()


def fold_runs(path: str | Path) -> list[Path]:
    """The fold run folders of a finished fold set (fails naming the folder otherwise)."""
    path = Path(path)
    info = json.loads((path / "folds.json").read_text())
    if info.get("status") != "completed":
        raise UserError(
            f"{path}: fold set is {info.get('status', 'unfinished')}; finish it with "
            f"`viewfinder train --resume {path}`"
        )
    return [path / name for name in info["fold_runs"]]


def expand_members(runs: Sequence[str | Path]) -> list[tuple[Path, int]]:
    """(run folder, index of the argument it came from): fold sets expand to their folds."""
    if not runs:
        raise UserError("name at least one run folder")
    members: list[tuple[Path, int]] = []
    for index, run in enumerate(runs):
        path = Path(run)
        if is_fold_set(path):
            members += [(fold, index) for fold in fold_runs(path)]
        elif (path / "config.yaml").is_file():
            members.append((path, index))
        else:
            raise UserError(f"{path}: not a run folder or fold set (no config.yaml or folds.json)")
    return members


def parse_weights(weights: str | Sequence[float] | None, count: int) -> list[float] | None:
    """``"1,2"`` or ``[1, 2]``: one non-negative weight per run argument, not all zero."""
    if weights is None:
        return None
    try:
        values = [float(w) for w in (weights.split(",") if isinstance(weights, str) else weights)]
    except ValueError:
        raise UserError(
            f"weights {weights!r}: give numbers separated by commas, e.g. 1,2"
        ) from None
    if len(values) != count:
        raise UserError(f"weights {weights!r}: give one weight per run ({count}), e.g. 1,2")
    if any(v < 0 for v in values) or not any(v > 0 for v in values):
        raise UserError(f"weights {weights!r}: weights must be >= 0 and not all 0")
    return values


def average(probabilities: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
    """Weighted mean of (N, C) probability tensors (equal weights by default)."""
    import torch

    stacked = torch.stack([p.float() for p in probabilities])
    w = torch.ones(len(probabilities)) if weights is None else torch.tensor(weights).float()
    return (stacked * (w / w.sum()).view(-1, 1, 1)).sum(dim=0)


def record_key(record: Any) -> tuple[str, str]:
    """What identifies an image across runs: its id and path (ids of folder data can repeat)."""
    return (str(record.id), str(record.path))


def _check_member(first: Any, first_path: Path, pred: Any, path: Path) -> Any:
    """``pred``'s probabilities in ``first``'s record order; fails naming the run that differs."""
    classes, own = getattr(first.task, "classes", None), getattr(pred.task, "classes", None)
    if own != classes:
        raise UserError(
            f"{path}: its classes {own} differ from {first_path}'s {classes}; "
            "ensemble members must share the class list"
        )
    keys = [record_key(r) for r in first.records]
    own_keys = [record_key(r) for r in pred.records]
    if own_keys == keys:
        return pred.probabilities
    index = {key: i for i, key in enumerate(own_keys)}
    if len(index) != len(own_keys) or set(index) != set(keys):
        raise UserError(
            f"{path}: predicted other images than {first_path} ({len(pred.records)} vs "
            f"{len(first.records)}); ensemble on the same data (--data, or --split test)"
        )
    return pred.probabilities[[index[k] for k in keys]]


def ensemble_predictions(
    runs: Sequence[str | Path],
    *,
    split: str,
    data: str | None = None,
    tta: str | None = None,
    weights: str | Sequence[float] | None = None,
) -> Any:
    """The averaged ``Predictions`` of every member (task, records and targets of the first)."""
    from viewfinder.api import Run
    from viewfinder.training.inference import Predictions, predict_probabilities

    members = expand_members(runs)
    per_argument = parse_weights(weights, len(runs))
    first, first_path, probs = None, members[0][0], []
    for path, _ in members:
        pred = predict_probabilities(path, Run(path).config, split=split, data=data, tta=tta)
        if first is None:
            first = pred
        probs.append(_check_member(first, first_path, pred, path))
    member_weights = None if per_argument is None else [per_argument[i] for _, i in members]
    mean = average(probs, member_weights)
    return Predictions(
        task=first.task,
        records=first.records,
        probabilities=mean,
        targets=first.targets,
        loss=log_loss(mean, first.targets),
    )


def log_loss(probabilities: Any, targets: Any) -> float | None:
    """Mean negative log probability of the true class (None without labels)."""
    if targets is None or len(targets) == 0:
        return None
    from viewfinder.training.inference import TINY

    picked = probabilities.gather(1, targets.view(-1, 1).long()).clamp_min(TINY)
    return float(-picked.log().mean())


def log_probabilities(probabilities: Any) -> Any:
    """Probabilities as logits for the task's metrics and postprocess (softmax gives them back)."""
    from viewfinder.training.inference import TINY

    return probabilities.clamp_min(TINY).log()


def score(pred: Any, out_dir: Path | None) -> dict[str, Any]:
    """The task's metrics of averaged predictions (+ loss); ``out_dir`` gets the report views."""
    if pred.targets is None:
        raise UserError("these images have no labels to score; use predict instead")
    import torch

    task, count = pred.task, len(pred.records)
    if hasattr(task, "records_seen"):  # what a batch's "index" points into (mistakes view)
        task.records_seen = list(pred.records)
    batch = {"target": pred.targets, "index": torch.arange(count), "records": pred.records}
    metrics = task.metrics()
    metrics.update(log_probabilities(pred.probabilities), batch)
    if out_dir is None:
        return {"loss": pred.loss, **metrics.compute()}
    results = {"loss": pred.loss, **task.report(metrics, out_dir)}
    (out_dir / "metrics.json").write_text(json.dumps(results, indent=2))
    return results


def write_submission(pred: Any, out: Path, probabilities: bool = False) -> Path:
    """The task's submission CSV (e.g. ``id,label``) from averaged probabilities."""
    task = pred.task
    batch = {"records": pred.records}
    rows = task.postprocess(
        log_probabilities(pred.probabilities), batch, probabilities=probabilities
    )
    return write_rows(out, task.submission_columns(probabilities), rows)


def write_rows(out: Path, columns: list[str], rows: list[dict[str, Any]]) -> Path:
    """Write submission rows as CSV (the one writer for single runs and ensembles)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return out
