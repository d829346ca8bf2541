"""The shared part of every task whose input is an image: cached decoding, batched transforms,
frozen-backbone feature caching, and the image model's set-up (normalisation, frozen backbone).

A task on images (``classify``, ``iqa``; the image side of ``caption`` and ``vqa``) subclasses
``ImageTask`` and says which records a split holds (``_records``) and their targets
(``_targets``: class indices, MOS values, or None for unlabelled data).
"""

from __future__ import annotations

import csv
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from viewfinder.data.cache import stored_size
from viewfinder.data.dataset import ArrayImages, build_image_dataset, collate_skipping
from viewfinder.data.images import scan_images
from viewfinder.data.sources import ImageRecord
from viewfinder.data.transforms import BatchTransform, crops, sample_transform
from viewfinder.errors import UserError
from viewfinder.models.backbones import data_config
from viewfinder.models.classifier import backbone_of, parse_model_name
from viewfinder.models.frozen import FeatureClassifier, freeze_backbone, reset_head
from viewfinder.tasks.base import Task
from viewfinder.training.features import FeatureDataset, cached_features

SPLITS = ("train", "val", "test")


class ImageTask(Task):
    """Images in, through the decoded-image cache; see the module doc."""

    missing_target: float = -1  # the target of an unlabelled image: -1 (a class), NaN (a MOS)
    # caption, vqa: their text batches flip the images, so "left"/"right" in the texts can follow
    # (``data/text.py``, ``WrappedBatches``); the batch transform then flips nothing
    mirrors_texts: bool = False

    def __init__(self, cfg, run_dir) -> None:
        super().__init__(cfg, run_dir)
        self.splits: dict[str, list[Any]] = {}  # train/val/test records, set by setup/load
        self.records_seen: list[Any] = []  # of the last dataset built (mistakes views)
        self._norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        self._batch_transforms: dict[bool, BatchTransform] = {}
        self._frozen: tuple[nn.Module, Any, torch.device] | None = None  # set by training_model

    @abstractmethod
    def _records(self, split: str, data: str | None) -> list[Any]:
        """The records of ``split``, or of other data (``predict --data``)."""

    def split_records(self, split: str) -> list[Any]:
        """The records of one of the run's splits (a one-line error for unknown or empty)."""
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        records = self.splits.get(split, [])
        if not records:
            raise UserError(f"this run has no {split} split; pass data=PATH")
        return records

    @abstractmethod
    def _targets(self, records: list[Any]) -> list[Any] | None:
        """One target per record (None when any record is unlabelled)."""

    def dataset(self, split: str, *, train: bool, data: str | None = None) -> Dataset:
        records = self._records(split, data)
        d = self.cfg.data
        frozen = self._frozen is not None and data is None
        dataset, report = build_image_dataset(
            records,
            self.stored_size(),
            self.cache_settings(),
            targets=self._targets(records),
            seed=self.cfg.train.seed,
            on_bad_image=d.on_bad_image,
            missing_target=self.missing_target,
            sample_transform=(
                sample_transform(d.augment, [x for x in d.augment_exclude.split("+") if x])
                if train and not frozen
                else None
            ),
        )
        self.data_reports[split if data is None else "data"] = report
        self.records_seen = records
        return self._feature_dataset(dataset, report, train=train) if frozen else dataset

    def mirror(self, *, train: bool, data: str | None = None) -> bool:
        """Whether the text batches flip images (``mirrors_texts``): training on images, flips on.
        Frozen, the feature dataset draws the original or flipped view (``feature_flip``)."""
        d = self.cfg.data
        return (self.mirrors_texts and train and data is None and self._frozen is None
                and d.augment != "none" and d.hflip)  # fmt: skip

    def stored_size(self) -> int:
        return stored_size(self.cfg.image_size, crops=crops(self.cfg.data.augment))

    def request_dataset(self, images: list[Any], fields: list[dict[str, str]]) -> Dataset:
        names = [f"upload-{i}" for i in range(len(images))]
        records = [ImageRecord(name, Path(name), None) for name in names]
        return ArrayImages(records, images, missing_target=self.missing_target)

    def _feature_dataset(self, images: Any, report: Any, *, train: bool) -> Dataset:
        """Frozen mode: the split's backbone features, extracted once and cached."""
        model, numerics, device = self._frozen
        start = time.perf_counter()
        # a text task evaluates on the original view only: its flipped view is for training
        flip = self.cfg.model.feature_flip and (train or not self.mirrors_texts)
        features, hit = cached_features(
            model, images, self._transform(train=False), numerics, device,
            flip=flip, cache_root=self.cache_settings().folder,
            spec={"model": self._feature_name(), "image_size": self.cfg.image_size,
                  "norm": self._norm, "precision": numerics.precision,
                  "grayscale": self.cfg.data.grayscale},
        )  # fmt: skip
        report.features = "cached" if hit else f"extracted {features.shape}"
        report.seconds += time.perf_counter() - start
        return FeatureDataset(
            features, images.targets, train=train, seed=self.cfg.train.seed,
            missing_target=self.missing_target,
        )  # fmt: skip

    def _feature_name(self) -> str:
        """What the cached features are, whatever the head on them: the backbone(s), and
        ``+attn`` (feature maps) or pooled (every other head). ``NAME``, ``NAME+mlp`` and
        ``NAME+ridge`` share one extraction."""
        spec = parse_model_name(self.cfg.model.name)
        return spec.backbone + ("+attn" if spec.head == "attn" else ":pooled")

    def training_model(self, model: nn.Module, numerics: Any, device: torch.device) -> nn.Module:
        if not self.cfg.model.freeze_backbone:
            return model
        self._frozen = (model.to(device), numerics, device)
        return FeatureClassifier(model)

    def _transform(self, *, train: bool) -> BatchTransform:
        if train not in self._batch_transforms:
            if self._norm is None:
                raise RuntimeError("build_model() must run first: it fixes normalisation")
            d = self.cfg.data
            self._batch_transforms[train] = BatchTransform(
                self.cfg.image_size, *self._norm, train=train, preset=d.augment,
                hflip=d.hflip and not self.mirrors_texts, vflip=d.vflip, grayscale=d.grayscale,
            )  # fmt: skip
        return self._batch_transforms[train]

    def transform_batch(self, batch: dict[str, Any], *, train: bool) -> dict[str, Any]:
        if "image" not in batch:  # frozen mode: cached features
            return batch
        return {**batch, "image": self._transform(train=train)(batch["image"])}

    def collate(self, items: list[Any]) -> dict[str, Any] | None:
        return collate_skipping(items)

    def drop_bad_images(
        self, splits: dict[str, list[Any]]
    ) -> tuple[dict[str, list[Any]], list[tuple[str, str]]]:
        """``data.on_bad_image`` applied once to every split; skipped files are listed in
        ``skipped_images.csv``."""
        policy = self.cfg.data.on_bad_image
        kept: dict[str, list[Any]] = {}
        bad: list[tuple[str, str]] = []
        for split, records in splits.items():
            good, bad_here = scan_images([r.path for r in records], on_bad_image=policy)
            kept[split] = [records[i] for i in good]
            bad += bad_here
        self._write_skipped("skipped_images.csv", ("path", "reason"), bad)
        return kept, bad

    def write_skipped_rows(self, rows: list[tuple[str, str]]) -> int:
        """``on_bad_image=skip``: the data rows left out (bad MOS, empty image path, ...) as
        ``skipped_rows.csv`` (where, why) in the run folder; returns how many."""
        self._write_skipped("skipped_rows.csv", ("where", "reason"), rows)
        return len(rows)

    def _write_skipped(self, name: str, header: tuple[str, str], rows: list[Any]) -> None:
        """What ``on_bad_image=skip`` left out, listed in the run folder (nothing when none)."""
        if rows:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir / name, "w", newline="") as f:
                csv.writer(f).writerows([header, *rows])

    def prepare_image_model(self, model: nn.Module, note: str) -> str:
        """Fix normalisation from the backbone; re-initialise / freeze as configured."""
        self._check_input_size(backbone_of(model))
        self._norm = data_config(backbone_of(model))
        if self.cfg.model.reinit_head:
            reset_head(model)
            note += ", classifier re-initialised"
        if self.cfg.model.freeze_backbone:
            trainable = freeze_backbone(model)
            note += f", backbone frozen ({trainable:,} trainable parameters)"
        return note

    def _check_input_size(self, backbone: nn.Module) -> None:
        """CLIP towers have fixed position embeddings: the image size must be theirs."""
        if self.cfg.model.name.startswith("clip:"):
            size = backbone.pretrained_cfg["input_size"][-1]
            if self.cfg.image_size != size:
                raise UserError(
                    f"model {self.cfg.model.name} takes {size} px images: image_size={size}"
                )
