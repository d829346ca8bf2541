"""Image quality: predict a mean opinion score (MOS) per image, scored as the camera-quality
challenge scores it: (max(PLCC, 0) + max(SRCC, 0)) / 2 (``metrics/quality.py``).

Data: the challenge CSV ``img_name,img_path,mos,comments`` (``data/quality.py``). The model is any
image backbone with one output (``NAME`` pools and regresses, ``NAME+attn`` attention-pools the
feature map); it trains on standardised MOS ((MOS - train mean) / train std) with ``train.loss``
(``mse``, ``l1``, ``smooth_l1``, ``plcc``, ``rank``, ``+``-combined), and its output is mapped back
and clamped to the MOS range (``data.mos_range``, else the training data's). Validation loss is
always MSE on the standardised scale, so it compares across loss recipes.

Augmentation that changes quality corrupts the label, so the preset is ``augment=flip`` (no crops,
which rescale, and no colour, blur or JPEG ops); ``freeze_backbone=true`` trains the head on
cached frozen features: a linear head (``NAME``), an MLP (``NAME+mlp``), attention over the grid
(``NAME+attn``), or the linear head fitted in closed form by ridge regression, no epochs
(``NAME+ridge``, ``fit_closed_form``); ``A&B`` concatenates several frozen backbones' features.
Run-folder state: ``quality.json`` (id column, MOS range, mean, std), ``split.csv`` and, for
``+ridge``, ``ridge.json`` (the chosen alpha). Submission: ``img_name,mos``.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from viewfinder.data.quality import (
    QualityColumns,
    QualityRecord,
    parse_range,
    read_quality,
    read_quality_csv,
    read_quality_split,
    write_quality_split,
)
from viewfinder.data.sampling import holdout_split
from viewfinder.errors import UserError
from viewfinder.metrics.quality import (
    METRIC_NAMES,
    QualityMetrics,
    error_by_range,
    plot_quality,
)
from viewfinder.models.classifier import build_classifier, parse_model_name
from viewfinder.models.frozen import frozen_parts
from viewfinder.tasks.image import ImageTask
from viewfinder.training.quality_losses import QualityLoss


class QualityTask(ImageTask):
    name = "iqa"
    record_fields = ("img_name", "path", "mos", "comments")
    metric_names = METRIC_NAMES
    missing_target = float("nan")

    def __init__(self, cfg, run_dir) -> None:
        super().__init__(cfg, run_dir)
        self.splits: dict[str, list[QualityRecord]] = {}
        self.id_column = "img_name"
        self.mos_range = (0.0, 10.0)
        self.mean, self.std = 0.0, 1.0
        self.loss_fn = QualityLoss(cfg.train.loss)

    # --- data -----------------------------------------------------------------------------------
    def _columns(self) -> QualityColumns:
        d = self.cfg.data
        return QualityColumns(d.image_column, d.id_column, d.mos_column, d.comments_column)

    def setup(self) -> dict[str, Any]:
        d = self.cfg.data
        if not d.path:
            raise UserError("no data given: pass data=PATH (a CSV img_name,img_path,mos,comments)")
        given_range = parse_range(d.mos_range)
        source = read_quality(
            d.path, self._columns(), mos_range=given_range, skip_bad=d.on_bad_image == "skip"
        )
        if len(source.train) < 2:
            raise UserError(f"{d.path}: need at least 2 training images with a MOS")
        train, val = self._split(source.train, source.val)
        splits, skipped = self.drop_bad_images({"train": train, "val": val, "test": source.test})
        scores = np.array([r.mos for r in splits["train"]], dtype=np.float64)
        self.splits, self.id_column = splits, source.id_column
        self.mos_range = given_range or (float(scores.min()), float(scores.max()))
        self.mean, self.std = float(scores.mean()), float(scores.std()) or 1.0
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_quality_split(self.run_dir / "split.csv", splits)
        state = {"id_column": self.id_column, "mos_range": self.mos_range,
                 "mean": self.mean, "std": self.std}  # fmt: skip
        (self.run_dir / "quality.json").write_text(json.dumps(state, indent=2))
        return {
            "layout": "quality-csv", "mos_range": list(self.mos_range),
            "split_sizes": {k: len(v) for k, v in splits.items()},
            "skipped_images": len(skipped),
            "skipped_rows": self.write_skipped_rows(source.skipped_rows),
        }  # fmt: skip

    def _split(
        self, train: list[QualityRecord], val: list[QualityRecord]
    ) -> tuple[list[QualityRecord], list[QualityRecord]]:
        """The data's own val split, else ``val_fraction`` of the images (by image: every
        record is one image, so no image is in both)."""
        if self.cfg.data.folds is not None:
            raise UserError("folds= is for classify for now; iqa uses one train/val split")
        if val:
            return train, val
        return holdout_split(train, self.cfg.data.val_fraction, self.cfg.train.seed)

    def load(self) -> None:
        path = self.run_dir / "quality.json"
        if not path.is_file():
            raise UserError(f"{self.run_dir}: not an iqa run folder (quality.json missing)")
        state = json.loads(path.read_text())
        self.id_column, self.mos_range = state["id_column"], tuple(state["mos_range"])
        self.mean, self.std = state["mean"], state["std"]
        split_file = self.run_dir / "split.csv"
        self.splits = read_quality_split(split_file) if split_file.is_file() else {}

    def _records(self, split: str, data: str | None) -> list[QualityRecord]:
        if data is not None:
            return self._other_data(Path(data))
        return self.split_records(split)

    def _other_data(self, path: Path) -> list[QualityRecord]:
        """``predict --data``: a CSV (MOS optional; kept for scoring) or a folder of images."""
        if path.suffix.lower() == ".csv":
            records, _, _ = read_quality_csv(path, self._columns(), require_mos=False)
            return records
        from viewfinder.data.sources import read_unlabelled

        return [QualityRecord(r.id, r.path, None) for r in read_unlabelled(path)]

    def _targets(self, records: list[QualityRecord]) -> list[float] | None:
        if any(r.mos is None for r in records):
            return None
        return [float(r.mos) for r in records]

    # --- model ----------------------------------------------------------------------------------
    def build_model(self) -> tuple[nn.Module, str]:
        # one output, the standardised MOS, starting at 0 (the mean): see zero_head
        model, note = build_classifier(self.cfg.model, 1, regression=True)
        return model, self.prepare_image_model(model, note)

    def fit_closed_form(
        self, model: nn.Module, train_set: Any, val_set: Any
    ) -> dict[str, float] | None:
        """``NAME+ridge``: the linear head by ridge regression on the cached features, alpha by
        validation MSE (``models/ridge.py``); ``ridge.json`` keeps the alpha table. Flip views
        are averaged, as ``FeatureClassifier`` averages a linear head's outputs over them."""
        if parse_model_name(self.cfg.model.name).head != "ridge":
            return None
        from viewfinder.models.ridge import fit_ridge, write_linear

        start = time.perf_counter()
        (x, y), (val_x, val_y) = self._ridge_rows(train_set), self._ridge_rows(val_set)
        alpha = self.cfg.model.ridge_alpha
        fit = fit_ridge(x, y, val_x, val_y, alphas=None if alpha is None else [alpha])
        write_linear(frozen_parts(getattr(model, "model", model))[1], fit)
        seconds = time.perf_counter() - start
        state = {"alpha": fit.alpha, "train_mse": fit.train_mse, "val_mse": fit.val_mse,
                 "features": x.shape[1], "fit_seconds": seconds, "grid": fit.table}  # fmt: skip
        (self.run_dir / "ridge.json").write_text(json.dumps(state, indent=2))
        speed = len(x) / max(seconds, 1e-9)
        return {"train_loss": fit.train_mse, "epoch_time": seconds,
                "images_per_second": speed, "ridge_alpha": fit.alpha}  # fmt: skip

    def _ridge_rows(self, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
        """(features averaged over views, standardised MOS) of the labelled rows of a split."""
        features = getattr(dataset, "features", None)
        if features is None:
            raise UserError("+ridge fits on cached frozen features: add freeze_backbone=true")
        targets = np.asarray(dataset.targets, dtype=np.float64)
        known = np.isfinite(targets)
        rows = features.reshape(len(features), features.shape[1], -1).mean(axis=1)
        return rows[known], (targets[known] - self.mean) / self.std

    def example_batch(self, batch_size: int) -> dict[str, Any]:
        size = self.cfg.image_size
        return {"image": torch.randn(batch_size, 3, size, size), "target": torch.rand(batch_size)}

    def step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Outputs are MOS (clamped to the range); the loss is on the standardised scale."""
        raw = model(batch["features"] if "features" in batch else batch["image"])
        loss, mos = self.mos_loss(raw, batch["target"], training=model.training)
        return {"loss": loss, "outputs": mos}

    def mos_loss(
        self, raw: torch.Tensor, target: torch.Tensor, *, training: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss over the images that have a MOS, MOS clamped to the range) from the head's raw
        standardised outputs; frozen flip views are averaged. Validation loss is always MSE."""
        raw = raw.float().reshape(raw.shape[0], -1).mean(dim=1)  # (B,)
        mos = (raw * self.std + self.mean).clamp(*self.mos_range)
        known = torch.isfinite(target)
        if not bool(known.any()):
            return raw.sum() * 0.0, mos
        standard = (target[known].float() - self.mean) / self.std
        loss_fn = self.loss_fn if training else F.mse_loss
        return loss_fn(raw[known], standard), mos

    def combine_views(
        self, outputs: list[torch.Tensor], batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """TTA (flips): the mean predicted MOS; the loss as the run's validation loss."""
        mos = torch.stack([o.float() for o in outputs]).mean(dim=0)
        target = batch["target"].float()
        if not bool(torch.isfinite(target).all()):
            return {"loss": mos.new_zeros(()), "outputs": mos}
        return {"loss": F.mse_loss((mos - self.mean) / self.std, (target - self.mean) / self.std),
                "outputs": mos}  # fmt: skip

    def metrics(self) -> QualityMetrics:
        return QualityMetrics()

    # --- results --------------------------------------------------------------------------------
    def submission_columns(self, probabilities: bool = False) -> list[str]:
        return [self.id_column, "mos"]

    def postprocess(
        self, outputs: torch.Tensor, batch: dict[str, Any], *, probabilities: bool = False
    ) -> list[dict[str, Any]]:
        values = outputs.float().flatten().cpu().tolist()
        return [
            {self.id_column: record.id, "mos": round(value, 4)}
            for record, value in zip(batch["records"], values, strict=True)
        ]

    def report(self, metrics: QualityMetrics, out_dir: Path) -> dict[str, Any]:
        """``metrics.json`` numbers, ``error_by_range.csv`` and ``quality.png`` (scatter + bars)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        predicted, target = metrics.values()
        summary = metrics.compute()
        ranges = error_by_range(predicted, target, *self.mos_range)
        with open(out_dir / "error_by_range.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(ranges[0]))
            writer.writeheader()
            writer.writerows(ranges)
        plot_quality(predicted, target, ranges, out_dir / "quality.png")
        return summary
