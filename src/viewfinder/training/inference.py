"""Evaluate / predict with a finished run's best checkpoint (one process, any device).

Test-time augmentation (``data.tta``, or ``tta=`` to override the run's config) runs the model on
each view of a batch (``data/transforms.py``: the image, plus flips and/or a centre crop) and
averages the **softmax probabilities**, not the logits: a softmax ignores a per-image shift of the
logits, so the logits of two views are not on a common scale and a single over-confident view
would dominate their mean; probabilities are. The average is passed on as ``log(mean p)``: a
softmax of it gives ``mean p`` back exactly, so the task's metrics and ``postprocess`` work
unchanged, and cross-entropy on it is the log loss of the averaged prediction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from viewfinder.config import RunConfig
from viewfinder.data.transforms import IDENTITY, tta_images, tta_views
from viewfinder.errors import UserError
from viewfinder.progress import track
from viewfinder.training.checkpoint import load_weights_file
from viewfinder.training.loop import make_loader
from viewfinder.training.precision import (
    Numerics,
    autocast,
    cpu_supports_bf16,
    keep_cast_weights,
    prepare_batch,
    select_numerics,
)

TINY = torch.finfo(torch.float32).tiny  # keeps log(mean p) finite when a probability underflows


@dataclass
class Predictions:
    """Class probabilities of one run (or an ensemble) over a data set, in record order.

    Records whose image was skipped (``on_bad_image=skip``) are absent.
    """

    task: Any
    records: list[Any]
    probabilities: torch.Tensor  # (N, C) float32 on the CPU; rows sum to 1
    targets: torch.Tensor | None  # (N,) class indices, when every record has a label
    loss: float | None  # mean loss over the records (None when unlabelled)


def load_trained(run_dir: Path, cfg: RunConfig) -> tuple[Any, torch.nn.Module, Any, torch.device]:
    """The task (state restored) and model (best weights) of a run, on the best device."""
    from viewfinder.tasks import get_task_class

    cfg = inference_config(cfg)
    task = get_task_class(cfg.task)(cfg, run_dir)
    task.load()
    model, _ = task.build_model()
    load_weights_file(model, weights_path(run_dir))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    numerics = trained_numerics(run_dir, device) or select_numerics(
        model, task, cfg, cuda=device.type == "cuda", measure=False
    )  # else the training run's probe when cached on this machine, else the rule
    if numerics.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return task, model.to(device).eval(), numerics, device


def weights_path(run_dir: Path) -> Path:
    """The run's ``best.safetensors``, else ``last.safetensors``; one line when it has neither."""
    for name in ("best.safetensors", "last.safetensors"):
        if (run_dir / name).is_file():
            return run_dir / name
    raise UserError(f"{run_dir}: the run has no weights yet (best.safetensors missing); finish "
                    f"it with `viewfinder train --resume {run_dir}`")  # fmt: skip


def inference_config(cfg: RunConfig) -> RunConfig:
    """The run's config without its initial weights: the checkpoint (loaded strictly) replaces
    every tensor, ``weights=PATH`` may be relative to another folder or gone, and
    ``pretrained=true`` would download from the model hub (evaluate, predict, serve and export
    work offline). CLIP keeps ``pretrained``: without a tag it picks the published weights'
    activation and preprocessing."""
    overrides: dict[str, object] = {}
    if cfg.model.weights:
        overrides["model.weights"] = None
    if cfg.model.pretrained and not cfg.model.name.startswith("clip:"):
        overrides["model.pretrained"] = False
    return cfg.with_overrides(overrides) if overrides else cfg


def trained_numerics(run_dir: Path, device: torch.device) -> Numerics | None:
    """The numerics the run trained with (``summary.json``), on a CPU: a probe measured while the
    CPU was busy is not cached, and the rule may choose otherwise, so evaluate would score other
    numbers than training validated (frozen features, bf16 vs fp32). None on CUDA (the rule)."""
    import json

    path = run_dir / "summary.json"
    if device.type != "cpu" or not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if summary.get("precision") not in ("fp32", "bf16"):
        return None
    if summary["precision"] == "bf16" and not cpu_supports_bf16():
        return None  # trained on another machine with native bf16
    return Numerics(summary["precision"], bool(summary.get("channels_last")), "as trained")


def resolve_tta(cfg: RunConfig, tta: str | None) -> list[str]:
    """The views to average: ``tta`` when given (checked like the config key), else ``data.tta``."""
    spec = cfg.data.tta if tta is None else cfg.with_overrides({"data.tta": tta}).data.tta
    return tta_views(spec)


def mean_probabilities(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean softmax probabilities (B, C) of several views' logits (see the module doc)."""
    total = None
    for view_logits in logits:
        probs = view_logits.float().softmax(dim=1)
        total = probs if total is None else total + probs
    return total / len(logits)


def forward_views(
    task: Any, model: torch.nn.Module, batch: dict[str, Any], views: Sequence[str], numerics: Any
) -> dict[str, torch.Tensor]:
    """The task's step over every view, combined by the task (``Task.combine_views``); with no
    TTA exactly ``task.step``."""
    device = next(model.parameters()).device
    if list(views) == [IDENTITY] or "image" not in batch:
        batch = prepare_batch(task.transform_batch(batch, train=False), numerics.channels_last)
        with autocast(device, numerics):
            return task.step(model, batch)

    def transform(images: torch.Tensor) -> torch.Tensor:
        view = task.transform_batch({**batch, "image": images}, train=False)
        return prepare_batch(view, numerics.channels_last)["image"]

    outputs = []
    for position, images in enumerate(tta_images(batch["image"], transform, views)):
        view = {**batch, "image": images, "tta_view": position}  # 0: the image as it is
        with autocast(device, numerics):
            outputs.append(task.step(model, view)["outputs"])
    return task.combine_views(outputs, batch)


def forward_batch(
    task: Any,
    model: torch.nn.Module,
    batch: dict[str, Any],
    views: Sequence[str],
    numerics: Any,
    records: Sequence[Any],
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A collated batch moved to the model's device and through ``forward_views``; the batch
    gains its ``records`` (what ``postprocess`` names rows by). Evaluate, predict and the HTTP
    server all run batches through here."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    out = forward_views(task, model, batch, views, numerics)
    batch["records"] = [records[int(i)] for i in batch["index"]]
    return batch, out


class InferenceSession:
    """A run's best model over one split or ``data``, batch by batch (TTA views averaged).

    Images that could not be read (``on_bad_image=skip``) are listed in ``skipped_list``
    (default ``RUN/eval/skipped_<split|data>.csv``) and announced in one line on stderr.
    """

    def __init__(
        self,
        run_dir: Path,
        cfg: RunConfig,
        split: str,
        data: str | None,
        tta: str | None,
        *,
        skipped_list: Path | None = None,
    ) -> None:
        self.views = resolve_tta(cfg, tta)  # a bad --tta fails before the model loads
        self.task, self.model, self.numerics, self.device = load_trained(run_dir, cfg)
        self.dataset = self.task.dataset(split, train=False, data=data)
        self.labelled = getattr(self.dataset, "targets", None) is not None
        self.loader = make_loader(self.dataset, self.task, cfg, train=False)
        self.name = name = "data" if data is not None else split
        self.skipped_list = skipped_list or run_dir / "eval" / f"skipped_{name}.csv"
        self.skipped: list[Any] = []

    def batches(self) -> Iterator[tuple[dict[str, Any], dict[str, torch.Tensor]]]:
        with keep_cast_weights():
            yield from self._batches()

    def _batches(self) -> Iterator[tuple[dict[str, Any], dict[str, torch.Tensor]]]:
        seen: set[int] = set()
        for batch in track(self.loader, len(self.loader), f"predicting {self.name}"):
            if batch is None:
                continue
            batch, out = forward_batch(self.task, self.model, batch, self.views, self.numerics,
                                       self.dataset.records)  # fmt: skip
            seen.update(int(i) for i in batch["index"])
            yield batch, out
        records = self.dataset.records
        self.skipped = [r for i, r in enumerate(records) if i not in seen]
        if self.skipped:
            self._announce_skipped(len(records))

    def _announce_skipped(self, total: int) -> None:
        import csv

        from rich.console import Console

        from viewfinder.data.images import skipped_notice

        self.skipped_list.parent.mkdir(parents=True, exist_ok=True)
        with open(self.skipped_list, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "path", "reason"])
            writer.writerows((r.id, r.path, "could not be decoded") for r in self.skipped)
        effect = "their rows are missing from the output"
        line = skipped_notice(len(self.skipped), total, self.skipped_list, effect=effect)
        Console(stderr=True).print(f"[yellow]{line}[/]", highlight=False)


@torch.no_grad()
def run_inference(
    run_dir: Path,
    cfg: RunConfig,
    *,
    split: str,
    data: str | None = None,
    probabilities: bool = False,
    rows: bool = False,
    tta: str | None = None,
    skipped_list: Path | None = None,
) -> tuple[Any, Any, float | None, list[dict[str, Any]]]:
    """Run the best model over a split or ``data``: (task, metrics, mean loss, submission rows).

    Metrics and loss are only filled when every record has a label. ``tta`` overrides the run's
    ``data.tta`` (e.g. ``"hflip+scale"``; ``"none"`` turns it off).
    """
    session = InferenceSession(run_dir, cfg, split, data, tta, skipped_list=skipped_list)
    task = session.task
    metrics = task.metrics().to(session.device) if session.labelled else None
    loss_sum, count, out_rows = 0.0, 0, []
    for batch, out in session.batches():
        if session.labelled:
            n = len(batch["index"])
            loss_sum, count = loss_sum + float(out["loss"]) * n, count + n
            metrics.update(out["outputs"], batch)
        if rows:
            out_rows += task.postprocess(out["outputs"], batch, probabilities=probabilities)
    return task, metrics, (loss_sum / count if count else None), out_rows


@torch.no_grad()
def predict_probabilities(
    run_dir: Path, cfg: RunConfig, *, split: str, data: str | None = None, tta: str | None = None
) -> Predictions:
    """Class probabilities per record (TTA-averaged): the input of out-of-fold files and
    ensembles. Outputs must be class logits (classification tasks)."""
    session = InferenceSession(run_dir, cfg, split, data, tta)
    records, probs, targets, loss_sum = [], [], [], 0.0
    for batch, out in session.batches():
        records += batch["records"]
        probs.append(out["outputs"].float().softmax(dim=1).cpu())
        if session.labelled:
            targets.append(batch["target"].cpu())
            loss_sum += float(out["loss"]) * len(batch["records"])
    num_classes = len(getattr(session.task, "classes", [])) or 0
    return Predictions(
        task=session.task,
        records=records,
        probabilities=torch.cat(probs) if probs else torch.zeros(0, num_classes),
        targets=(torch.cat(targets) if targets else None) if session.labelled else None,
        loss=loss_sum / len(records) if session.labelled and records else None,
    )
