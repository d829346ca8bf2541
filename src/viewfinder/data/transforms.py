"""Augmentation presets on torchvision v2 transforms.

Geometric ops run on uint8 tensors (cheaper than float), then one dtype conversion and
normalisation. Evaluation resizes the whole image to ``image_size`` (no centre crop), so objects
near the border are never cut off; training crops a random 60-100 % area first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

PRESETS = ("none", "light", "medium")


def build_transforms(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    train: bool,
    preset: str = "light",
) -> v2.Compose:
    """The transform applied to one PIL image: returns a normalised float32 CHW tensor."""
    steps: list[v2.Transform] = [v2.ToImage()]
    if train and preset != "none":
        steps += [
            v2.RandomResizedCrop(image_size, scale=(0.6, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
        ]
        if preset == "medium":
            steps.append(v2.TrivialAugmentWide())
    else:
        steps.append(v2.Resize((image_size, image_size), antialias=True))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)
