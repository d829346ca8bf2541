"""The torch ``Dataset`` over image records, with per-sample seeding and the bad-image policy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from viewfinder.data.images import load_image
from viewfinder.data.sources import ImageRecord
from viewfinder.errors import BadImageError


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """One RNG seed per (run seed, epoch, sample): augmentation is a pure function of these.

    That makes a run reproducible whatever the worker count, and lets an interrupted run resume
    mid-epoch with exactly the augmentations it would have seen.
    """
    return (seed * 1_000_003 + epoch * 100_003 + index) % (2**63)


class ImageDataset(Dataset):
    """Records -> {"image", "target", "index"}; a bad image is ``None`` when skipping bad files."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: Callable[[Any], torch.Tensor],
        *,
        targets: Sequence[int] | None = None,
        seed: int = 0,
        on_bad_image: str = "error",
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.targets = list(targets) if targets is not None else None
        self.seed = seed
        self.on_bad_image = on_bad_image
        self.epoch = 0  # set by the trainer before each epoch (workers are re-created per epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        torch.manual_seed(sample_seed(self.seed, self.epoch, index))
        try:
            image = load_image(self.records[index].path)
        except BadImageError:
            if self.on_bad_image == "skip":
                return None
            raise
        target = self.targets[index] if self.targets is not None else -1
        return {"image": self.transform(image), "target": target, "index": index}


def collate_skipping(items: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Default collation that drops skipped (``None``) samples and counts them in ``skipped``."""
    good = [item for item in items if item is not None]
    if not good:
        return None
    batch = default_collate(good)
    batch["skipped"] = len(items) - len(good)
    return batch
