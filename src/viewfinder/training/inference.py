"""Evaluate / predict with a finished run's best checkpoint (one process, any device)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from viewfinder.config import RunConfig
from viewfinder.models.classifier import backbone_of
from viewfinder.training.checkpoint import load_weights_file
from viewfinder.training.loop import autocast, make_loader, prepare_batch
from viewfinder.training.precision import choose_numerics


def load_trained(run_dir: Path, cfg: RunConfig) -> tuple[Any, torch.nn.Module, Any, torch.device]:
    """The task (state restored) and model (best weights) of a run, on the best device."""
    from viewfinder.tasks import get_task_class

    task = get_task_class(cfg.task)(cfg, run_dir)
    task.load()
    model, _ = task.build_model()
    weights = run_dir / "best.safetensors"
    if not weights.is_file():
        weights = run_dir / "last.safetensors"
    load_weights_file(model, weights)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    numerics = choose_numerics(backbone_of(model), cfg.train, cuda=device.type == "cuda")
    if numerics.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return task, model.to(device).eval(), numerics, device


@torch.no_grad()
def run_inference(
    run_dir: Path,
    cfg: RunConfig,
    *,
    split: str,
    data: str | None = None,
    probabilities: bool = False,
    rows: bool = False,
) -> tuple[Any, Any, float | None, list[dict[str, Any]]]:
    """Run the best model over a split or ``data``: (task, metrics, mean loss, submission rows).

    Metrics and loss are only filled when every record has a label.
    """
    task, model, numerics, device = load_trained(run_dir, cfg)
    dataset = task.dataset(split, train=False, data=data)
    labelled = getattr(dataset, "targets", None) is not None
    loader = make_loader(dataset, task, cfg, train=False)
    metrics = task.metrics().to(device) if labelled else None
    loss_sum, count, out_rows = 0.0, 0, []
    for batch in loader:
        if batch is None:
            continue
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        batch = prepare_batch(task.transform_batch(batch, train=False), numerics.channels_last)
        with autocast(device, numerics):
            out = task.step(model, batch)
        if labelled:
            n = out["outputs"].shape[0]
            loss_sum, count = loss_sum + float(out["loss"]) * n, count + n
            metrics.update(out["outputs"], batch)
        if rows:
            batch["records"] = [dataset.records[int(i)] for i in batch["index"]]
            out_rows += task.postprocess(out["outputs"], batch, probabilities=probabilities)
    return task, metrics, (loss_sum / count if count else None), out_rows
