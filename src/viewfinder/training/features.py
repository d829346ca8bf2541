"""Extract frozen-backbone features once and keep them in the feature cache.

The key covers everything the features depend on: the backbone's weights (a hash of its tensors,
so a fine-tuned or re-seeded backbone never reuses stale features), the image files (path, size,
mtime), the input size and normalisation, and the views (original, horizontal flip). Not the
head: ``NAME``, ``NAME+mlp`` and ``NAME+ridge`` on the same backbone share one extraction (tensor
names are hashed without the ``backbone.`` prefix the wrapped models add).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from viewfinder.data.cache import file_key, load_features, save_features
from viewfinder.data.dataset import EpochAware, ImageDataset, collate_skipping, drawn_view
from viewfinder.models.frozen import frozen_parts
from viewfinder.progress import track
from viewfinder.training.precision import Numerics, autocast

VIEWS = {False: ("original",), True: ("original", "hflip")}


def weights_digest(module: torch.nn.Module, skip: torch.nn.Module | None = None) -> str:
    """A hash of ``module``'s tensors, leaving out those of ``skip`` (the head)."""
    skipped = {id(t) for t in skip.state_dict(keep_vars=True).values()} if skip else set()
    digest = hashlib.sha1()
    for name, tensor in sorted(module.state_dict(keep_vars=True).items()):
        if id(tensor) in skipped:
            continue
        digest.update(name.removeprefix("backbone.").encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


# Part of every feature-cache key: raise it whenever the code that computes features changes
# (``frozen_parts``, a model's ``features_for_head``), so no cache written by older code is read.
FEATURES_VERSION = 1


def feature_key(model: torch.nn.Module, paths: Sequence[Path], spec: dict[str, Any]) -> str:
    digest = hashlib.sha1(weights_digest(model, skip=frozen_parts(model)[1]).encode())
    digest.update(json.dumps({**spec, "features_version": FEATURES_VERSION},
                             sort_keys=True).encode())  # fmt: skip
    for path in paths:
        digest.update(file_key(path).encode())
    return digest.hexdigest()


@torch.no_grad()
def extract_features(
    model: torch.nn.Module,
    dataset: ImageDataset,
    transform: Any,
    numerics: Numerics,
    device: torch.device,
    *,
    flip: bool,
    batch_size: int = 64,
) -> np.ndarray:
    """(N, V, ...) float32 features of every image (V = 2 with the flipped view)."""
    features_fn, _ = frozen_parts(model)
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skipping)
    out: np.ndarray | None = None
    for batch in track(loader, len(loader), "extracting backbone features"):
        if batch is None:
            continue
        images = transform(batch["image"].to(device))
        views = [images, images.flip(-1)] if flip else [images]
        feats = []
        for view in views:
            if numerics.channels_last:
                view = view.contiguous(memory_format=torch.channels_last)
            with autocast(device, numerics):
                feats.append(features_fn(view).float().cpu())
        stacked = torch.stack(feats, dim=1).numpy()
        if out is None:
            out = np.zeros((len(dataset), *stacked.shape[1:]), dtype=np.float32)
        out[batch["index"].numpy()] = stacked
    if out is None:
        raise RuntimeError("no image could be read for feature extraction")
    return out


def cached_features(
    model: torch.nn.Module,
    dataset: ImageDataset,
    transform: Any,
    numerics: Numerics,
    device: torch.device,
    *,
    flip: bool,
    cache_root: Path,
    spec: dict[str, Any],
) -> tuple[np.ndarray, bool]:
    """Features from the cache, extracting and storing them on a miss; (array, was_cached)."""
    key = feature_key(model, [r.path for r in dataset.records], {**spec, "views": VIEWS[flip]})
    found = load_features(cache_root, key)
    if found is not None:
        return found, True
    array = extract_features(model, dataset, transform, numerics, device, flip=flip)
    save_features(cache_root, key, array)
    return array, False


class FeatureDataset(EpochAware, Dataset):
    """Cached features -> ``{"features": (V', ...), "target", "index"}``.

    Training draws one view per sample per epoch (seeded like image augmentation) and says
    which (``view``: 1 is the flipped image, whose texts the text batches mirror); evaluation
    returns every view, and ``FeatureClassifier`` averages their logits (flip TTA).
    """

    def __init__(
        self,
        features: np.ndarray,
        targets: Sequence[float] | None,
        *,
        train: bool,
        seed: int = 0,
        missing_target: float = -1,
    ) -> None:
        self.features = features
        self.missing_target = missing_target
        self.targets = list(targets) if targets is not None else None
        self.train, self.seed = train, seed
        self._init_epoch()
        self.records: list[Any] = []

    def __len__(self) -> int:
        return len(self.features)

    needs_workers = False  # rows of an array in memory: nothing for workers to do

    def __getitem__(self, index: int) -> dict[str, Any]:
        views, pick = self.features[index], 0
        if self.train and len(views) > 1:
            pick = drawn_view(self.seed, self.epoch, index, len(views))
            views = views[pick : pick + 1]
        target = self.targets[index] if self.targets is not None else self.missing_target
        return {"features": torch.from_numpy(np.array(views)), "target": target, "index": index,
                "view": pick}  # fmt: skip
