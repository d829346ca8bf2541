"""Augmentation presets, split in two: per-sample uint8 ops and one batched geometric step.

Images arrive as uint8 ``S x S`` arrays (``data/dataset.py``; ``S`` = training size + 1/7 margin).

- Per-sample ops that need per-image logic (TrivialAugment, RandAugment) run in the dataset on the
  small uint8 tensor (torchvision v2), in the loader's worker processes when there are any.
- Crop + flip + resize + normalise run once per batch on the training device
  (``BatchTransform``). On a GPU one ``affine_grid``/``grid_sample`` call draws a random-resized
  crop and flip for every image, as Kornia and DALI do, after moving uint8 (4x fewer bytes than
  float). On a CPU the same crop boxes are cut from the uint8 batch and resized per image with
  OpenCV (``images.resize_array``, the resize the cache itself uses), then normalised as a batch.
  Evaluation resizes the whole image the same way.

Presets: ``none`` (resize only), ``flip`` (the whole image, randomly flipped: for inspection
images where a crop can cut the defect out and so change the label), ``light`` (random-resized
crop of 60-100 % area + horizontal flip), ``medium`` (light + TrivialAugmentWide), ``strong``
(light with 35-100 % crops + RandAugment(2, 9)). Evaluation resizes the whole image (no centre
crop), so objects near the border are never cut off. Flips can be turned off (``hflip=false``)
for orientation-dependent classes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from viewfinder.data.images import resize_array

PRESETS = ("none", "flip", "light", "medium", "strong")
GRAY_WEIGHTS = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
# random-resized-crop area range per preset (None: the whole image, only flipped)
_CROP_SCALE = {
    "none": None, "flip": None, "light": (0.6, 1.0), "medium": (0.6, 1.0), "strong": (0.35, 1.0)
}  # fmt: skip
_RATIO = (3 / 4, 4 / 3)


# user-facing names of the per-sample ops -> torchvision's op names
AUGMENT_OPS: dict[str, tuple[str, ...]] = {
    "rotate": ("Rotate",), "shear": ("ShearX", "ShearY"), "translate": ("TranslateX", "TranslateY"),
    "brightness": ("Brightness",), "color": ("Color",), "contrast": ("Contrast",),
    "sharpness": ("Sharpness",), "posterize": ("Posterize",), "solarize": ("Solarize",),
    "autocontrast": ("AutoContrast",), "equalize": ("Equalize",),
}  # fmt: skip


def crops(preset: str) -> bool:
    """Whether training with ``preset`` cuts random crops (so images are stored with a margin)."""
    return _CROP_SCALE[preset] is not None


def sample_transform(
    preset: str, exclude: Sequence[str] = ()
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The per-sample uint8 op of a preset (None when it has none), minus ``exclude`` ops.

    ``exclude`` (config ``augment_exclude=rotate+shear``) removes ops from TrivialAugment's or
    RandAugment's space, for classes that a rotation, shear or colour change would turn into
    another class. It narrows torchvision's (pinned) ``_AUGMENTATION_SPACE`` on the instance.
    """
    if preset == "medium":
        op: v2.Transform = v2.TrivialAugmentWide()
    elif preset == "strong":
        op = v2.RandAugment(num_ops=2, magnitude=9)
    else:
        return None
    dropped = {name for key in exclude for name in AUGMENT_OPS[key]}
    if dropped:
        op._AUGMENTATION_SPACE = {
            k: v for k, v in op._AUGMENTATION_SPACE.items() if k not in dropped
        }
    return op


def _crop_theta(
    batch: int, scale: tuple[float, float] | None, hflip: bool, vflip: bool
) -> torch.Tensor:
    """Affine matrices (B, 2, 3) of random-resized crops (torchvision's area/ratio law) + flips.

    In ``affine_grid``'s normalised coordinates an output pixel x maps to ``w * x + cx``: a crop of
    relative width ``w`` centred at ``cx``; a negative ``w`` mirrors it. ``scale=None``: the whole
    image (no area or aspect jitter), only flipped.
    """
    if scale is None:
        w, h = torch.ones(batch), torch.ones(batch)
        cx, cy = torch.zeros(batch), torch.zeros(batch)
    else:
        area = torch.empty(batch).uniform_(*scale)
        log_ratio = torch.empty(batch).uniform_(math.log(_RATIO[0]), math.log(_RATIO[1]))
        ratio = log_ratio.exp()
        w = (area * ratio).sqrt().clamp(max=1.0)
        h = (area / ratio).sqrt().clamp(max=1.0)
        cx = (torch.rand(batch) * 2 - 1) * (1 - w)
        cy = (torch.rand(batch) * 2 - 1) * (1 - h)
    if hflip:
        w = torch.where(torch.rand(batch) < 0.5, -w, w)
    if vflip:
        h = torch.where(torch.rand(batch) < 0.5, -h, h)
    zero = torch.zeros(batch)
    return torch.stack([torch.stack([w, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def _crop_uint8(images: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The crops ``theta`` describes, cut as pixel boxes from uint8 images and resized.

    Works on the images' (B, S, S, 3) channels-last memory (what the cache hands out, so no copy)
    with OpenCV per image: resize (``images.resize_array``), flip in place, split the channels
    into planes. Returns contiguous (B, 3, h, w) uint8, the layout the per-channel normalisation
    is fastest on (torch's own channels-last -> planar copy of uint8 costs 8x OpenCV's split).
    """
    height, width = images.shape[-2:]
    source = images.permute(0, 2, 3, 1).contiguous().numpy()  # no copy when channels-last
    out = np.empty((images.shape[0], images.shape[1], *size), dtype=np.uint8)
    for i, ((w, _, cx), (_, h, cy)) in enumerate(theta.tolist()):
        crop_w = max(1, round(abs(w) * width))
        crop_h = max(1, round(abs(h) * height))
        left = min(max(0, round((cx - abs(w) + 1) / 2 * width)), width - crop_w)
        top = min(max(0, round((cy - abs(h) + 1) / 2 * height)), height - crop_h)
        crop = resize_array(source[i, top : top + crop_h, left : left + crop_w], *size)
        if w < 0 or h < 0:  # OpenCV's flip codes: 1 horizontal, 0 vertical, -1 both
            crop = cv2.flip(crop, 1 if h > 0 else (0 if w > 0 else -1))
        cv2.split(crop, list(out[i]))
    return torch.from_numpy(out)


class BatchTransform:
    """uint8 (B, 3, S, S) -> normalised float32 (B, 3, size, size), for a whole batch at once.

    Random numbers come from torch's global CPU generator, which the training loop seeds per
    (seed, epoch, step): the same batch gets the same crops on any device and after a resume.
    """

    def __init__(
        self,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        train: bool,
        preset: str = "light",
        hflip: bool = True,
        vflip: bool = False,
        grayscale: bool = False,
    ) -> None:
        self.image_size = image_size
        self.grayscale = grayscale
        self.scale = _CROP_SCALE[preset] if train else None
        self.hflip = train and preset != "none" and hflip
        self.vflip = train and preset != "none" and vflip
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def geometry(self, images: torch.Tensor) -> torch.Tensor:
        """Crop/flip/resize: float32 in 0..255 (before normalisation), a new tensor.

        On CPU the crops are cut and resized per image as uint8 with OpenCV (1.2 ms for 32
        images at 128 px, against 3.4 ms for a float ``grid_sample`` of the batch and 4.7 ms for
        torch's uint8 resize per image; docs/benchmarks.md); on GPUs one ``grid_sample`` call does
        the whole batch. Both draw the same crop parameters from the same generator.
        """
        size = (self.image_size, self.image_size)
        if self.scale is None and not (self.hflip or self.vflip):
            if images.shape[-2:] == size:
                return images.to(torch.float32, copy=True)  # never normalise the caller's tensor
            if images.device.type == "cpu" and images.dtype == torch.uint8:  # whole-image boxes
                identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
                return _crop_uint8(images, identity.expand(images.shape[0], 2, 3), size).float()
            return _resize(images.float(), size)
        theta = _crop_theta(images.shape[0], self.scale, self.hflip, self.vflip)
        if images.device.type == "cpu" and images.dtype == torch.uint8:
            return _crop_uint8(images, theta, size).float()
        x = images.float()
        grid = F.affine_grid(theta.to(x.device), [x.shape[0], 3, *size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        scale = (1.0 / (255.0 * self.std)).to(x.device)
        shift = (self.mean / self.std).to(x.device)
        return x.mul_(scale).sub_(shift)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = self.geometry(images)
        if self.grayscale:  # ITU-R 601 luma in all three channels (``data.grayscale``)
            luma = x.mul(GRAY_WEIGHTS.to(x.device)).sum(dim=1, keepdim=True)
            x = luma.expand_as(x).contiguous()
        return self.normalize(x)


def mix_transform(mixup: float, cutmix: float, num_classes: int) -> Callable[..., Any]:
    """Batch mixup and/or cutmix (one of them per batch when both are on): soft targets.

    torchvision v2's MixUp/CutMix rather than timm's ``Mixup``: they draw from torch's generator,
    which the loop seeds per step, so resumed runs stay exact (timm's draws from NumPy's global
    state).
    """
    ops: list[v2.Transform] = []
    if mixup > 0:
        ops.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
    if cutmix > 0:
        ops.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
    return ops[0] if len(ops) == 1 else v2.RandomChoice(ops)


# --- Test-time augmentation -------------------------------------------------------------------

TTA_VIEWS = ("hflip", "vflip", "scale")
IDENTITY = "identity"
SCALE_VIEW_AREA = 0.875  # the ``scale`` view: a centre crop of this fraction of the image area


def tta_views(spec: str) -> list[str]:
    """The views of a ``data.tta`` spec: the image itself, then each listed view.

    Views add up (``hflip+vflip`` is 3 views: original, h-flipped, v-flipped), they are not
    multiplied into every combination: a few views give most of the gain, and orientation-bound
    classes can take ``scale`` alone (no flip ever touches them).
    """
    from viewfinder.errors import UserError

    names = [v.strip() for v in spec.split("+") if v.strip()]
    unknown = [v for v in names if v not in TTA_VIEWS]
    if (unknown and names != ["none"]) or not names:
        choices = ", ".join(TTA_VIEWS)
        raise UserError(f"tta={spec!r}: use none or a '+'-list of {choices} (e.g. hflip+scale)")
    return [IDENTITY, *dict.fromkeys(v for v in names if v != "none")]


def apply_view(images: torch.Tensor, view: str) -> torch.Tensor:
    """One TTA view of a uint8 (B, 3, S, S) batch, before resize/normalise (flips are exact).

    ``scale`` is a centre crop of ``SCALE_VIEW_AREA`` of the area (side x ~0.935); the eval
    transform resizes it back to the model's size, so objects appear ~7 % larger (multi-scale).
    """
    if view == IDENTITY:
        return images
    if view == "hflip":
        return images.flip(-1)
    if view == "vflip":
        return images.flip(-2)
    if view == "scale":
        side = math.sqrt(SCALE_VIEW_AREA)
        height, width = images.shape[-2:]
        h, w = max(1, round(height * side)), max(1, round(width * side))
        top, left = (height - h) // 2, (width - w) // 2
        return images[..., top : top + h, left : left + w]
    raise ValueError(f"unknown TTA view {view!r}")


def tta_images(
    images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor], views: Sequence[str]
) -> Iterator[torch.Tensor]:
    """Each view of a uint8 batch through the eval transform (e.g. ``BatchTransform(train=False)``):
    float (B, 3, size, size) tensors, one per view, in ``views`` order."""
    for view in views:
        yield transform(apply_view(images, view))
