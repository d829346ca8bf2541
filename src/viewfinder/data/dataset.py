"""The torch ``Dataset`` over image records: uint8 images from the cache, per-sample seeding.

Every image reaches the model the same way: decoded once to a fixed ``S x S`` uint8 array
(``images.decode_resized``), read back from the on-disk cache (``data/cache.py``) in later epochs,
optionally changed by per-sample ops (TrivialAugment, RandAugment) still as uint8, stacked into a
batch, and only then cropped, flipped, resized and normalised for the whole batch at once on the
training device (``transforms.BatchTransform``). Per-image PIL work happens once per file, not once
per epoch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from viewfinder.data.cache import CachedImages, ImageStore, default_cache_dir, ensure_cached
from viewfinder.data.images import decode_resized
from viewfinder.data.sources import ImageRecord
from viewfinder.errors import BadImageError


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """One RNG seed per (run seed, epoch, sample): augmentation is a pure function of these.

    That makes a run reproducible whatever the worker count, and lets an interrupted run resume
    mid-epoch with exactly the augmentations it would have seen.
    """
    return (seed * 1_000_003 + epoch * 100_003 + index) % (2**63)


def drawn_view(seed: int, epoch: int, index: int, views: int) -> int:
    """Which of a sample's ``views`` (0: the image, 1: it flipped) training reads this epoch: the
    cached-feature dataset's draw, and the text batches' flips of images, are this one draw."""
    return int(np.random.default_rng(sample_seed(seed, epoch, index)).integers(views))


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class CacheSettings:
    """Where and how big the image cache is; ``enabled=False`` decodes every epoch."""

    enabled: bool = True
    root: Path | None = None
    max_gb: float = 20.0
    workers: int | None = None  # decode processes for the first pass: None = all cores, 0 = none

    @property
    def folder(self) -> Path:
        return self.root or default_cache_dir()


@dataclass
class CacheReport:
    """What preparing a dataset cost: images stored, how many were decoded now, seconds."""

    images: int = 0
    decoded: int = 0
    seconds: float = 0.0
    folder: str = ""
    features: str = ""  # frozen-backbone mode: "cached" or what was extracted


class _DecodeSet(Dataset):
    def __init__(self, paths: Sequence[Path], positions: list[int], size: int, skip: bool):
        self.paths, self.positions, self.size, self.skip = paths, positions, size, skip

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str]:
        """(position, array, "") or (position, None, reason): errors cross worker processes
        as data, so the main process raises the one-line ``BadImageError`` itself."""
        position = self.positions[i]
        try:
            return position, decode_resized(self.paths[position], self.size), ""
        except BadImageError as error:
            return position, None, error.reason


def _as_list(items: list[Any]) -> list[Any]:
    return items


def decode_many(
    paths: Sequence[Path], positions: list[int], size: int, *, workers: int, skip: bool
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Decode ``paths[positions]`` in ``workers`` processes (in-process for few images)."""
    decode_set = _DecodeSet(paths, positions, size, skip)
    if workers <= 0 or len(positions) < 64:
        items: Iterator[Any] = (decode_set[i] for i in range(len(decode_set)))
    else:
        loader = DataLoader(decode_set, batch_size=32, num_workers=workers, collate_fn=_as_list)
        items = (item for chunk in loader for item in chunk)
    for position, array, reason in items:
        if array is None and not skip:
            raise BadImageError(paths[position], reason)
        yield position, array


class EpochAware:
    """The epoch number in shared memory, so persistent loader workers see each new epoch.

    Per-sample seeds depend on the epoch; workers forked once (``persistent_workers``) keep a
    copy of the dataset, but a shared-memory tensor stays shared between them and the trainer.
    """

    _epoch_tensor: torch.Tensor

    def _init_epoch(self) -> None:
        self._epoch_tensor = torch.zeros(1, dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch_tensor[0])

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch_tensor[0] = value


class ImageDataset(EpochAware, Dataset):
    """Records -> ``{"image": uint8 (3, S, S), "target", "index"}``; ``None`` for a skipped file."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        size: int,
        *,
        targets: Sequence[int] | None = None,
        seed: int = 0,
        on_bad_image: str = "error",
        sample_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cache: CachedImages | None = None,
        missing_target: float = -1,
    ) -> None:
        self.records = list(records)
        self.missing_target = missing_target  # unlabelled data: -1 (a class index), NaN (a MOS)
        self.size = size
        self.targets = list(targets) if targets is not None else None
        self.seed = seed
        self.on_bad_image = on_bad_image
        self.sample_transform = sample_transform
        self.cache = cache
        self._init_epoch()  # the trainer sets .epoch before each epoch

    def __len__(self) -> int:
        return len(self.records)

    @property
    def needs_workers(self) -> bool:
        """Whether loader worker processes pay off: only with per-image work left to do.

        Cached images with batched augmentation are one ``preadv`` each (~10 us) straight into
        the batch (``__getitems__``); worker processes would only add inter-process copies
        (measured: docs/benchmarks.md).
        """
        return self.cache is None or self.sample_transform is not None

    def _array(self, index: int) -> np.ndarray | None:
        if self.cache is not None:
            array = self.cache[index]
            if array is None and self.on_bad_image != "skip":
                raise self._not_cached(index)
            return array
        try:
            return decode_resized(self.records[index].path, self.size)
        except BadImageError:
            if self.on_bad_image == "skip":
                return None
            raise

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any] | None] | dict[str, Any]:
        """A whole batch at once (the ``DataLoader`` calls this when it exists).

        Cached images without per-sample ops are read straight into one (B, S, S, 3) array and
        returned already collated: the image tensor is its (B, 3, S, S) view, i.e. channels-last
        memory, which the batched crop reads without a copy. Otherwise one item per index.
        """
        if self.cache is None or self.sample_transform is not None:
            return [self[i] for i in indices]
        arrays, stored = self.cache.read_batch(indices)
        if len(stored) < len(indices) and self.on_bad_image != "skip":
            raise self._not_cached(min(set(indices) - set(stored), key=indices.index))
        return {
            "image": torch.from_numpy(arrays).permute(0, 3, 1, 2),
            "target": torch.tensor([self._target(i) for i in stored]),  # int64 classes, f32 MOS
            "index": torch.tensor(stored, dtype=torch.int64),
            "skipped": len(indices) - len(stored),
        }

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        array = self._array(index)
        if array is None:
            return None
        # a writable copy (the cache hands out read-only bytes); HWC -> CHW view
        image = torch.frombuffer(bytearray(array), dtype=torch.uint8)
        image = image.view(self.size, self.size, 3).permute(2, 0, 1)
        if self.sample_transform is not None:
            torch.manual_seed(sample_seed(self.seed, self.epoch, index))
            image = self.sample_transform(image)
        return {"image": image, "target": self._target(index), "index": index}

    def _target(self, index: int) -> int:
        return self.targets[index] if self.targets is not None else self.missing_target

    def _not_cached(self, index: int) -> BadImageError:
        """A file the cache fill could not decode, read under the "error" policy."""
        return BadImageError(self.records[index].path, "not decodable (see the cache fill)")


class ArrayImages(ImageDataset):
    """Images already decoded to (S, S, 3) uint8 arrays at the stored size (HTTP uploads): the
    items ``ImageDataset`` yields for files, so the server shares every step after decoding."""

    def __init__(self, records: Sequence[Any], arrays: Sequence[np.ndarray], **kwargs: Any):
        super().__init__(records, int(arrays[0].shape[0]) if len(arrays) else 0, **kwargs)
        self.arrays = list(arrays)

    def _array(self, index: int) -> np.ndarray:
        return self.arrays[index]


def build_image_dataset(
    records: Sequence[ImageRecord],
    size: int,
    cache: CacheSettings,
    *,
    targets: Sequence[int] | None = None,
    seed: int = 0,
    on_bad_image: str = "error",
    sample_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    missing_target: float = -1,
) -> tuple[ImageDataset, CacheReport]:
    """An ``ImageDataset``, its images decoded into the cache first (unless caching is off)."""
    report = CacheReport(images=len(records))
    reader = None
    if cache.enabled and records:
        start = time.perf_counter()
        store = ImageStore(cache.folder, size, max_bytes=int(cache.max_gb * 1024**3))
        paths = [r.path for r in records]
        workers = cpu_count() if cache.workers is None else cache.workers

        def decode(paths: Sequence[Path], todo: list[int]) -> Iterator[Any]:
            report.decoded = len(todo)
            return decode_many(paths, todo, size, workers=workers, skip=on_bad_image == "skip")

        reader = ensure_cached(store, paths, decode)
        report.seconds, report.folder = time.perf_counter() - start, str(store.dir)
    dataset = ImageDataset(
        records, size, targets=targets, seed=seed, on_bad_image=on_bad_image,
        sample_transform=sample_transform, cache=reader, missing_target=missing_target,
    )  # fmt: skip
    return dataset, report


def collate_skipping(
    items: list[dict[str, Any] | None] | dict[str, Any],
) -> dict[str, Any] | None:
    """Default collation that drops skipped (``None``) samples and counts them in ``skipped``.

    A dict is a batch ``ImageDataset.__getitems__`` already assembled: passed on (None if empty).
    """
    if isinstance(items, dict):
        return items if len(items["index"]) else None
    good = [item for item in items if item is not None]
    if not good:
        return None
    batch = default_collate(good)
    batch["skipped"] = len(items) - len(good)
    return batch
