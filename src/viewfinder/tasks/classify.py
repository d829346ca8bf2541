"""Image classification: class-per-folder or CSV data, one label per image.

Records: ``id, path, label``. Run-folder state: ``labels.json`` (class list, id/label column names),
``split.csv`` (which image went to train/val/test), ``skipped_images.csv`` when bad files were
skipped. Submission: ``<id column>,<label column>`` and optionally one probability column per class.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from viewfinder.data.sampling import (
    build_sampler,
    read_split,
    stratified_kfold,
    stratified_split,
    write_split,
)
from viewfinder.data.sources import (
    ImageRecord,
    map_labels,
    read_classification,
    read_label_map,
    read_unlabelled,
)
from viewfinder.data.transforms import mix_transform
from viewfinder.errors import UserError
from viewfinder.metrics.classification import (
    ClassifyMetrics,
    format_per_class_report,
    plot_confusion_matrix,
)
from viewfinder.metrics.longtail import frequency_groups, plot_confident_mistakes
from viewfinder.models.classifier import build_classifier
from viewfinder.tasks.image import ImageTask
from viewfinder.training.losses import build_loss


class ClassifyTask(ImageTask):
    name = "classify"
    record_fields = ("id", "path", "label")
    metric_names = (
        "accuracy", "top5_accuracy", "macro_f1", "weighted_f1", "balanced_accuracy",
        "head_accuracy", "medium_accuracy", "tail_accuracy",
    )  # fmt: skip

    def __init__(self, cfg, run_dir) -> None:
        super().__init__(cfg, run_dir)
        self.classes: list[str] = []
        self.id_column = "id"
        self.label_column = "label"
        self.splits: dict[str, list[ImageRecord]] = {}
        self.loss_fn: nn.Module | None = None
        self._mix: Any = None

    # --- data -----------------------------------------------------------------------------------
    def setup(self) -> dict[str, Any]:
        data = self.cfg.data
        if not data.path:
            raise UserError("no data given: pass data=PATH (a folder of class folders or a CSV)")
        source = read_classification(
            data.path,
            image_column=data.image_column,
            label_column=data.label_column,
            id_column=data.id_column,
            test_path=data.test_path,
        )
        train, val = self._split(self._level(source.train), self._level(source.val))
        splits = {"train": train, "val": val, "test": self._level(source.test)}
        splits, skipped = self.drop_bad_images(splits)
        self.splits = splits
        self.classes = sorted({r.label for r in splits["train"] if r.label is not None})
        if len(self.classes) < 2:
            raise UserError(f"{data.path}: need at least 2 classes, found {self.classes}")
        self.id_column, self.label_column = source.id_column, source.label_column
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_split(self.run_dir / "split.csv", splits)
        self._write_state()
        return {
            "layout": source.layout,
            "num_classes": len(self.classes),
            "split_sizes": {k: len(v) for k, v in splits.items()},
            "skipped_images": len(skipped),
        }

    def _level(self, records: list[ImageRecord]) -> list[ImageRecord]:
        """Labels at the trained level: coarse (through ``data.label_map``) or as given."""
        d = self.cfg.data
        return map_labels(records, d.label_map) if d.label_level == "coarse" else records

    def _split(
        self, train: list[ImageRecord], val: list[ImageRecord]
    ) -> tuple[list[ImageRecord], list[ImageRecord]]:
        """Train/val: the data's own val split, else a stratified one, or fold ``data.fold``.

        k-fold pools the labelled train and val images and holds out fold ``data.fold`` of
        ``data.folds`` (the test split is never part of any fold).
        """
        data, seed = self.cfg.data, self.cfg.train.seed
        if data.fold is not None or data.folds is not None:
            if data.fold is None or data.folds is None or data.fold >= data.folds:
                raise UserError(
                    f"data.fold={data.fold} needs data.folds > fold (got folds={data.folds})"
                )
            pool = train + val
            train_idx, val_idx = stratified_kfold([r.label for r in pool], data.folds, seed)[
                data.fold
            ]
            return [pool[i] for i in train_idx], [pool[i] for i in val_idx]
        if val:
            return train, val
        train_idx, val_idx = stratified_split(
            [r.label for r in train], val_fraction=data.val_fraction, seed=seed
        )
        return [train[i] for i in train_idx], [train[i] for i in val_idx]

    def _write_state(self) -> None:
        state = {
            "classes": self.classes,
            "id_column": self.id_column,
            "label_column": self.label_column,
        }
        (self.run_dir / "labels.json").write_text(json.dumps(state, indent=2))

    def load(self) -> None:
        path = self.run_dir / "labels.json"
        if not path.is_file():
            raise UserError(f"{self.run_dir}: not a classify run folder (labels.json missing)")
        state = json.loads(path.read_text())
        self.classes = state["classes"]
        self.id_column, self.label_column = state["id_column"], state["label_column"]
        split_file = self.run_dir / "split.csv"
        self.splits = read_split(split_file) if split_file.is_file() else {}

    def _records(self, split: str, data: str | None) -> list[ImageRecord]:
        if data is not None:
            d = self.cfg.data
            return read_unlabelled(data, image_column=d.image_column, id_column=d.id_column)
        return self.split_records(split)

    def _targets(self, records: list[ImageRecord]) -> list[int] | None:
        if any(r.label is None for r in records):
            return None
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({r.label for r in records} - index.keys())
        if unknown:
            raise UserError(f"label {unknown[0]!r} is not one of the run's classes {self.classes}")
        return [index[r.label] for r in records]

    def transform_batch(self, batch: dict[str, Any], *, train: bool) -> dict[str, Any]:
        batch = super().transform_batch(batch, train=train)
        if "image" not in batch:  # frozen mode: cached features
            return batch
        d = self.cfg.data
        if train and (d.mixup > 0 or d.cutmix > 0):
            if self._mix is None:
                self._mix = mix_transform(d.mixup, d.cutmix, len(self.classes))
            batch["image"], batch["soft_target"] = self._mix(batch["image"], batch["target"])
        return batch

    def class_counts(self) -> list[int]:
        """Training images per class (the prior that re-balancing uses)."""
        counts = Counter(r.label for r in self.splits.get("train", []))
        return [counts.get(c, 0) for c in self.classes]

    def train_sampler(self, dataset: Any) -> Any:
        """``data.sampler``: class-balanced or repeat-factor sampling (None = plain shuffling)."""
        return build_sampler(self.cfg.data.sampler, dataset.targets, seed=self.cfg.train.seed)

    # --- model ----------------------------------------------------------------------------------
    def build_model(self) -> tuple[nn.Module, str]:
        m = self.cfg.model
        if m.zero_shot:
            from viewfinder.models.clip import build_zero_shot

            if not m.name.startswith("clip:"):
                raise UserError(f"zero-shot needs a CLIP model (model=clip:ViT-B-32), not {m.name}")
            model, _ = build_zero_shot(m.name, self.classes, pretrained=m.pretrained)
            note = "zero-shot from class names" + (", pretrained" if m.pretrained else "")
        else:
            model, note = build_classifier(m, len(self.classes))
        note = self.prepare_image_model(model, note)
        t = self.cfg.train
        self.loss_fn = build_loss(
            t.loss, self.class_counts() or [1] * len(self.classes), weights=t.class_weights,
            focal_gamma=t.focal_gamma, tau=t.logit_tau, label_smoothing=t.label_smoothing,
        )  # fmt: skip
        return model, note

    def step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Training uses the recipe's loss (``train.loss``); evaluation always plain CE.

        Balanced-softmax and logit-adjusted losses train raw logits to be balanced, so validation
        loss on raw logits (plain CE) is the number that compares across recipes.
        """
        logits = model(batch["features"] if "features" in batch else batch["image"])
        target = batch["target"]
        if bool((target < 0).any()):
            return {"loss": logits.new_zeros(()), "outputs": logits}
        if model.training and self.loss_fn is not None:
            self.loss_fn.to(logits.device)
            loss = self.loss_fn(logits.float(), batch.get("soft_target", target))
        else:
            loss = F.cross_entropy(logits.float(), target)
        return {"loss": loss, "outputs": logits}

    def combine_views(
        self, outputs: list[torch.Tensor], batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Mean softmax probabilities, passed on as ``log(mean p)`` (``training/inference.py``)."""
        from viewfinder.training.inference import TINY, mean_probabilities

        log_probs = mean_probabilities(outputs).clamp_min(TINY).log()
        target = batch.get("target")
        if target is None or bool((target < 0).any()):
            return {"loss": log_probs.new_zeros(()), "outputs": log_probs}
        smoothing = self.cfg.train.label_smoothing  # as the run's own val loss, so they compare
        loss = F.cross_entropy(log_probs, target, label_smoothing=smoothing)
        return {"loss": loss, "outputs": log_probs}

    def metrics(self) -> ClassifyMetrics:
        counts = self.class_counts()
        # head/medium/tail only mean something on imbalanced data (max/min count >= 1.5)
        imbalanced = len(counts) >= 3 and max(counts) >= 1.5 * max(min(counts), 1)
        groups = frequency_groups(counts) if imbalanced else []
        return ClassifyMetrics(len(self.classes), self.classes, groups, self._coarse_index())

    def _coarse_index(self) -> list[str] | None:
        """Training fine labels with a label map: each class's coarse label, to report both."""
        d = self.cfg.data
        if d.label_map is None or d.label_level != "fine":
            return None
        mapping = read_label_map(d.label_map)
        missing = [c for c in self.classes if c not in mapping]
        if missing:
            raise UserError(f"{d.label_map}: no coarse label for {missing[:3]} (add fine,coarse)")
        return [mapping[c] for c in self.classes]

    # --- results --------------------------------------------------------------------------------
    def submission_columns(self, probabilities: bool = False) -> list[str]:
        probs = [f"prob_{c}" for c in self.classes] if probabilities else []
        return [self.id_column, self.label_column, *probs]

    def postprocess(
        self, outputs: torch.Tensor, batch: dict[str, Any], *, probabilities: bool = False
    ) -> list[dict[str, Any]]:
        probs = outputs.float().softmax(dim=1).cpu()
        records = batch["records"]
        rows = []
        for record, p in zip(records, probs, strict=True):
            row = {self.id_column: record.id, self.label_column: self.classes[int(p.argmax())]}
            if probabilities:
                row.update(
                    {f"prob_{c}": round(float(v), 6) for c, v in zip(self.classes, p, strict=True)}
                )
            rows.append(row)
        return rows

    def report(self, metrics: ClassifyMetrics, out_dir: Path) -> dict[str, Any]:
        out_dir.mkdir(parents=True, exist_ok=True)
        inner = metrics.inner
        summary = metrics.compute()
        rows = inner.per_class()
        (out_dir / "report.txt").write_text(format_per_class_report(rows) + "\n")
        with open(out_dir / "per_class.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        matrix = inner.confusion_matrix()
        plot_confusion_matrix(matrix, self.classes, out_dir / "confusion_matrix.png")
        plot_confusion_matrix(
            matrix, self.classes, out_dir / "confusion_matrix_normalized.png", normalize=True
        )
        if metrics.probs and len(self.records_seen) > 0:
            indices = torch.cat(metrics.indices).numpy()
            plot_confident_mistakes(
                [self.records_seen[i].path for i in indices], torch.cat(metrics.probs).numpy(),
                torch.cat(metrics.targets).numpy(), self.classes,
                out_dir / "confident_mistakes.png",
            )  # fmt: skip
        return summary
