"""The Python API: every CLI command is one of these calls (for notebooks, Colab, Jupyter).

    import viewfinder
    run = viewfinder.train("classify", data="fruits/", model="resnet50", epochs=10)
    run.metrics[-1]["val_accuracy"]; run.evaluate(); run.predict("fruits/test", out="sub.csv")

Run folders follow one layout: ``<output_dir>/<task>/<name>/{config.yaml, metrics.jsonl,
summary.json, best.safetensors, last.safetensors, last.state.safetensors, split.csv, ...}``.
``folds=k`` trains a fold set instead: ``<output_dir>/<task>/<name>/{fold0..fold<k-1>, folds.json,
oof.csv, summary.json}`` (``experiments/kfold.py``). ``evaluate`` and ``predict`` take one run,
a fold set or several of them (an ensemble: probabilities averaged, ``experiments/ensemble.py``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from viewfinder.config import RunConfig, build_config, load_yaml
from viewfinder.data.outputs import OUTPUT_MARKER, mark_output_folder
from viewfinder.errors import UserError


class Run:
    """A run folder: its config, per-epoch metrics and summary; evaluate and predict from it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "config.yaml").is_file():
            raise UserError(f"{self.path}: not a run folder (config.yaml missing)")

    @property
    def config(self) -> RunConfig:
        raw = load_yaml(self.path / "config.yaml")
        return RunConfig.model_validate(raw)

    @property
    def summary(self) -> dict[str, Any]:
        path = self.path / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    @property
    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def evaluate(
        self, data: str | None = None, split: str = "val", tta: str | None = None
    ) -> dict[str, Any]:
        return evaluate(self, data=data, split=split, tta=tta)

    def predict(
        self,
        data: str | None = None,
        out: str | Path | None = None,
        probabilities: bool = False,
        tta: str | None = None,
    ) -> Path:
        return predict(self, data=data, out=out, probabilities=probabilities, tta=tta)

    def __repr__(self) -> str:
        s = self.summary
        best = s.get("best_value")
        detail = f", {s.get('monitor')}={best:.4f}" if isinstance(best, float) else ""
        return f"Run({str(self.path)!r}, status={s.get('status', 'unknown')!r}{detail})"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def new_run_dir(cfg: RunConfig) -> Path:
    """``<output_dir>/<task>/<name>``; a taken name gets ``-2``, ``-3`` ... (never overwritten)."""
    base = mark_output_folder(Path(cfg.output_dir)) / cfg.task  # never read back as data
    name = _slug(cfg.name or cfg.model.name)
    candidate, n = base / name, 2
    while candidate.exists():
        candidate, n = base / f"{name}-{n}", n + 1
    candidate.mkdir(parents=True)
    return candidate


def _shared_run_dir(cfg: RunConfig) -> Path:
    """The main process picks (and creates) the run folder; the others are told its name."""
    from accelerate import PartialState

    state = PartialState()
    if state.num_processes == 1:
        return new_run_dir(cfg)
    from accelerate.utils import broadcast_object_list

    holder = [str(new_run_dir(cfg)) if state.is_main_process else None]
    broadcast_object_list(holder)
    return Path(holder[0])


def _make_task(cfg: RunConfig, run_dir: Path) -> Any:
    from viewfinder.tasks import get_task_class

    return get_task_class(cfg.task)(cfg, run_dir)


def _progress_callbacks(progress: bool, cfg: RunConfig) -> list[Any]:
    if not progress:
        return []
    from viewfinder.training.callbacks import RichProgress

    return [RichProgress(monitor=cfg.train.monitor)]


def _fit(cfg: RunConfig, run_dir: Path, *, resume: bool, callbacks, progress: bool) -> Run:
    from viewfinder.training.loop import Trainer

    task = _make_task(cfg, run_dir)
    trainer = Trainer(task, cfg, run_dir, [*_progress_callbacks(progress, cfg), *(callbacks or [])])
    trainer.setup(resume=resume)
    status = trainer.fit()
    if trainer.accelerator.is_main_process:
        posthoc = adjusted = None
        if status in ("completed", "early_stopped") and cfg.train.posthoc != "none":
            from viewfinder.training.posthoc import apply_posthoc

            posthoc = apply_posthoc(run_dir, cfg)
            adjusted = evaluate(run_dir, split="val")  # compare/sweep show the adjusted model
        _write_summary(run_dir, cfg, trainer, status, posthoc, adjusted)
    trainer.accelerator.wait_for_everyone()
    return Run(run_dir)


def _write_summary(
    run_dir: Path,
    cfg: RunConfig,
    trainer: Any,
    status: str,
    posthoc: dict | None = None,
    adjusted: dict[str, Any] | None = None,
) -> None:
    """``summary.json``; after post-hoc re-balancing, ``adjusted`` (the tuned model's val
    metrics) replaces the best epoch's, which stay as ``metrics_before_posthoc``."""
    run = Run(run_dir)
    records = run.metrics
    previous = run.summary
    best_epoch = trainer.progress["best_epoch"]
    best = next((r for r in records if r["epoch"] == best_epoch), {})
    facts = trainer.facts or previous.get("data", {})
    summary = {
        "name": run_dir.name, "task": cfg.task, "model": cfg.model.name, "status": status,
        "run_dir": str(run_dir), "epochs": cfg.train.epochs,
        "epochs_completed": trainer.progress["epoch"], "best_epoch": best_epoch,
        "monitor": cfg.train.monitor, "monitor_mode": cfg.train.monitor_mode,
        "best_value": trainer.progress["best"],
        "metrics": {k[4:]: v for k, v in best.items() if k.startswith("val_")},
        "train_loss": best.get("train_loss"),
        "learning_rate": cfg.train.learning_rate, "batch_size": cfg.train.batch_size,
        "image_size": cfg.image_size, "parameters": trainer.parameters,
        "weights": trainer.weights_note, "precision": trainer.numerics.precision,
        "channels_last": trainer.numerics.channels_last, "numerics": trainer.numerics.reason,
        "time_per_epoch": _mean(r["epoch_time"] for r in records),
        "total_time": sum(r["epoch_time"] + r.get("eval_time", 0.0) for r in records),
        "images_per_second": _mean(r["images_per_second"] for r in records),
        "skipped_images": facts.get("skipped_images", 0) + trainer.progress["skipped_images"],
        "data": facts,
        "data_prep_seconds": sum(r.seconds for r in trainer.task.data_reports.values()),
        "peak_rss_mb": trainer.peak_rss_mb,
        "posthoc": posthoc,
    }  # fmt: skip
    if adjusted is not None:
        summary.update(metrics_before_posthoc=summary["metrics"], metrics=adjusted)
        summary["best_value"] = adjusted.get(cfg.train.monitor, summary["best_value"])
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


def _mean(values: Any) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def train(
    task: str = "classify",
    config: str | Path | None = None,
    *,
    callbacks: Sequence[Any] | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Any:
    """Train one model; keys as in the CLI (``data=``, ``model=``, ``train.learning_rate=`` ...).

    With ``folds=k`` (and no ``fold=``) every fold is trained: returns a ``FoldSet``.
    """
    cfg = build_config(task, config_file=config, overrides=overrides)
    from viewfinder.tasks import TASKS

    TASKS.get(cfg.task)
    if cfg.model.name:
        from viewfinder.models.backbones import check_model_name
        from viewfinder.models.classifier import parse_model_name

        for backbone in parse_model_name(cfg.model.name).backbones:  # A&B: each one
            check_model_name(backbone)
    if cfg.data.folds is not None and cfg.data.fold is None:
        from viewfinder.experiments.kfold import train_folds

        return train_folds(cfg, callbacks=callbacks, progress=progress)
    task_dir = Path(cfg.output_dir) / cfg.task
    new_parents = [p for p in (task_dir, task_dir.parent) if not p.exists()]
    run_dir = _shared_run_dir(cfg)
    try:
        return _fit(cfg, run_dir, resume=False, callbacks=callbacks, progress=progress)
    except UserError:
        _remove_unstarted(run_dir, new_parents)
        raise


def zero_shot(config: str | Path | None = None, *, split: str = "val", **overrides: Any) -> Run:
    """A CLIP zero-shot baseline as a run folder: no training, class-name prompts only.

    ``viewfinder.zero_shot(data="defects/", model="clip:ViT-B-32@openai", pretrained=True)``.
    The run scores ``split`` and then works with evaluate / predict / compare like any run.
    """
    from viewfinder.tasks import get_task_class
    from viewfinder.training.checkpoint import save_weights

    cfg = build_config("classify", config_file=config, overrides={**overrides, "zero_shot": True})
    run_dir = _shared_run_dir(cfg)
    try:
        task = get_task_class("classify")(cfg, run_dir)
        facts = task.setup()
        (run_dir / "config.yaml").write_text(cfg.to_yaml())
        model, note = task.build_model()
    except UserError:
        _remove_unstarted(run_dir, [])
        raise
    save_weights(model, run_dir / "best.safetensors")
    metrics = evaluate(run_dir, split=split)
    summary = {
        "name": run_dir.name, "task": "classify", "model": cfg.model.name, "status": "zero-shot",
        "run_dir": str(run_dir), "epochs": 0, "epochs_completed": 0, "monitor": cfg.train.monitor,
        "best_value": metrics.get(cfg.train.monitor), "metrics": metrics, "weights": note,
        "image_size": cfg.image_size, "data": facts, "evaluated_split": split,
    }  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return Run(run_dir)


def _remove_unstarted(run_dir: Path, new_parents: list[Path]) -> None:
    """A run that failed on bad input before its first checkpoint leaves no folder behind.

    Only the parents this run created are removed (when empty): a user's own folder stays.
    """
    if not any(run_dir.glob("*.safetensors")):
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
        for parent in new_parents:  # <task>/ first, then <output_dir>/
            if parent.is_dir() and {p.name for p in parent.iterdir()} <= {OUTPUT_MARKER}:
                shutil.rmtree(parent)
        marker = run_dir.parent.parent / OUTPUT_MARKER  # in a user's own (now empty) folder
        if marker.is_file() and [p.name for p in marker.parent.iterdir()] == [OUTPUT_MARKER]:
            marker.unlink()


def resume(
    run: str | Path | Run,
    *,
    callbacks: Sequence[Any] | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Any:
    """Continue an interrupted run from its last checkpoint (``epochs=`` may extend it).

    ``posthoc=`` on a finished run (re)tunes post-hoc re-balancing of its best weights with no
    training. A fold-set folder continues its remaining folds (returns the ``FoldSet``).
    """
    allowed = {
        "epochs", "train.epochs", "num_workers", "data.num_workers", "posthoc", "train.posthoc"
    }  # fmt: skip
    bad = sorted(set(overrides) - allowed)
    if bad:
        raise UserError(f"resume can only change epochs, num_workers or posthoc, not {bad[0]!r}")
    from viewfinder.experiments.ensemble import is_fold_set

    path = getattr(run, "path", run)
    if is_fold_set(path):
        from viewfinder.experiments.kfold import resume_folds

        return resume_folds(path, callbacks=callbacks, progress=progress, **overrides)
    run = run if isinstance(run, Run) else Run(run)
    cfg = run.config.with_overrides(overrides) if overrides else run.config
    (run.path / "config.yaml").write_text(cfg.to_yaml())
    return _fit(cfg, run.path, resume=True, callbacks=callbacks, progress=progress)


def load_run(path: str | Path) -> Any:
    """The ``Run`` of a run folder, or the ``FoldSet`` of a fold-set folder."""
    from viewfinder.experiments.kfold import FoldSet, is_fold_set

    return FoldSet(path) if is_fold_set(path) else Run(path)


RunArg = str | Path | Any  # a run folder, fold-set folder, ``Run`` or ``FoldSet``


def _paths(runs: RunArg | Sequence[RunArg]) -> list[Path]:
    if isinstance(runs, str | Path) or hasattr(runs, "path"):
        runs = [runs]
    return [Path(getattr(r, "path", r)) for r in runs]


def _is_single_run(paths: list[Path], weights: Any) -> bool:
    from viewfinder.experiments.ensemble import is_fold_set

    return len(paths) == 1 and weights is None and not is_fold_set(paths[0])


def evaluation_dir(
    runs: RunArg | Sequence[RunArg],
    data: str | None = None,
    split: str = "val",
    out: str | Path | None = None,
) -> Path:
    """Where ``evaluate`` writes: ``out``, else ``RUN/eval/<split|custom>`` (a fold set on val:
    ``eval/oof``; several runs: ``eval/ensemble_<split|custom>`` of the first)."""
    from viewfinder.experiments.ensemble import is_fold_set

    if out is not None:
        return Path(out)
    paths = _paths(runs)
    name = "custom" if data else split
    if len(paths) > 1:
        return paths[0] / "eval" / f"ensemble_{name}"
    if is_fold_set(paths[0]) and data is None and split == "val":
        return paths[0] / "eval" / "oof"
    return paths[0] / "eval" / name


def evaluate(
    run: RunArg | Sequence[RunArg],
    data: str | None = None,
    split: str = "val",
    *,
    tta: str | None = None,
    weights: str | Sequence[float] | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Score the best checkpoint on a split (or other labelled data); writes ``eval/<split>/``.

    ``tta`` overrides the run's ``data.tta``. A fold set on ``val`` is scored out-of-fold (each
    image by the fold that held it out); a fold set on other data, or several runs, are scored as
    an ensemble (mean probabilities; ``weights``: one per run argument).
    """
    from viewfinder.experiments import ensemble

    paths = _paths(run)
    out_dir = mark_output_folder(evaluation_dir(paths, data=data, split=split, out=out))
    if _is_single_run(paths, weights):
        from viewfinder.training.inference import run_inference

        single = Run(paths[0])
        task, metrics, loss, _ = run_inference(
            single.path, single.config, split=split, data=data, tta=tta,
            skipped_list=out_dir / "skipped_images.csv",
        )  # fmt: skip
        if metrics is None:
            raise UserError(f"{data or split}: images have no labels to score; use predict instead")
        results = {"loss": loss, **task.report(metrics, out_dir)}
        (out_dir / "metrics.json").write_text(json.dumps(results, indent=2))
        return results
    if len(paths) == 1 and data is None and split == "val" and ensemble.is_fold_set(paths[0]):
        from viewfinder.experiments.kfold import out_of_fold

        ensemble.fold_runs(paths[0])  # fails unless the fold set is finished
        pred, _ = out_of_fold(paths[0], tta=tta)
    else:
        pred = ensemble.ensemble_predictions(
            paths, split=split, data=data, tta=tta, weights=weights
        )
    if pred.targets is None:
        raise UserError(f"{data or split}: images have no labels to score; use predict instead")
    return ensemble.score(pred, out_dir)


def predict(
    run: RunArg | Sequence[RunArg],
    data: str | None = None,
    out: str | Path | None = None,
    probabilities: bool = False,
    *,
    tta: str | None = None,
    weights: str | Sequence[float] | None = None,
) -> Path:
    """Write a submission CSV for ``data`` (default: the run's test split).

    Several runs, or a fold set, predict as an ensemble: their probabilities are averaged (equal
    weights, or ``weights``: one per run argument). ``tta`` overrides the runs' ``data.tta``.
    """
    from viewfinder.experiments import ensemble

    paths = _paths(run)
    if _is_single_run(paths, weights):
        from viewfinder.training.inference import run_inference

        single = Run(paths[0])
        out_path = Path(out) if out else single.path / "submission.csv"
        task, _, _, rows = run_inference(
            single.path, single.config, split="test", data=data, probabilities=probabilities,
            rows=True, tta=tta, skipped_list=out_path.with_name(f"{out_path.stem}.skipped.csv"),
        )  # fmt: skip
        return ensemble.write_rows(out_path, task.submission_columns(probabilities), rows)
    if out is None and len(paths) > 1:
        raise UserError("an ensemble of several runs needs an output file: -o submission.csv")
    if len({_task_of(p) for p in paths}) > 1:
        return _joined_submission(paths, data=data, out=Path(out), tta=tta)
    pred = ensemble.ensemble_predictions(paths, split="test", data=data, tta=tta, weights=weights)
    out_path = Path(out) if out else paths[0] / "submission.csv"
    return ensemble.write_submission(pred, out_path, probabilities=probabilities)


def _task_of(path: Path) -> str:
    from viewfinder.experiments.ensemble import fold_runs, is_fold_set

    return Run(fold_runs(path)[0] if is_fold_set(path) else path).config.task


def _joined_submission(paths: list[Path], *, data: str | None, out: Path, tta: str | None) -> Path:
    """Runs of different tasks on the same images (``predict IQA_RUN CAPTION_RUN``): each run's
    columns, joined on the first run's id column in its row order (ids are the images')."""
    from viewfinder.experiments.ensemble import is_fold_set, write_rows
    from viewfinder.training.inference import run_inference

    joined: dict[str, dict[str, Any]] = {}
    columns: list[str] = []
    for path in paths:
        if is_fold_set(path):
            raise UserError(f"{path}: runs of different tasks are joined one run each, not folds")
        run = Run(path)
        task, _, _, rows = run_inference(run.path, run.config, split="test", data=data,
                                         rows=True, tta=tta)  # fmt: skip
        names = task.submission_columns()
        key = names[0] if not columns else columns[0]
        if rows and key not in rows[0]:
            raise UserError(f"{path}: its submission has no {key!r} column to join on ({names})")
        for row in rows:
            joined.setdefault(str(row[key]), {key: row[key]}).update(row)
        columns += [c for c in names if c not in columns]
    missing = [k for k, row in joined.items() if len(row) < len(columns)]
    if missing:
        raise UserError(f"runs predict different images (e.g. {missing[0]!r}); pass the same "
                        "--data to every run")  # fmt: skip
    return write_rows(out, columns, list(joined.values()))


def compare(runs: Sequence[str | Path | Run], out: str | Path | None = None) -> Any:
    """The comparison table of finished runs; written as Markdown + CSV when ``out`` is given."""
    from viewfinder.experiments.compare import compare_runs

    table = compare_runs([getattr(r, "path", r) for r in runs])
    if out is not None:
        table.write(out)
    return table


def sweep(
    task: str = "classify",
    config: str | Path | None = None,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    name: str | None = None,
    progress: bool = True,
    **overrides: Any,
) -> tuple[list[Run], Any]:
    """Train every combination of ``grid`` (and list/comma values in overrides); compare them."""
    from viewfinder.experiments.sweep import expand, run_name, split_grid, sweep_progress

    fixed, swept = split_grid(overrides)
    swept.update({k: list(v) for k, v in (grid or {}).items()})
    if not swept:
        raise UserError("sweep needs at least one key with several values, e.g. model=cnn,resnet18")
    combos = expand(swept)
    base = build_config(task, config_file=config, overrides=fixed)
    for combo in combos:  # fail on a bad value before any run starts
        base.with_overrides(combo)
    sweep_dir = mark_output_folder(Path(base.output_dir)) / "sweeps" / _slug(name or "sweep")
    n = 2
    while sweep_dir.exists():
        sweep_dir, n = sweep_dir.with_name(f"{_slug(name or 'sweep')}-{n}"), n + 1
    runs, start = [], time.perf_counter()
    for k, combo in enumerate(combos):
        kwargs = {**fixed, **combo, "output_dir": str(sweep_dir), "name": run_name(combo)}
        if progress:
            print(sweep_progress(k, len(combos), time.perf_counter() - start, kwargs["name"]))
        runs.append(train(task, config, progress=progress, **kwargs))
    return runs, compare(runs, out=sweep_dir)
