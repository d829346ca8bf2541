"""Augmentation: the batched crop/flip/resize/normalise step and the per-sample uint8 ops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from viewfinder.data.images import resize_array
from viewfinder.data.transforms import PRESETS, BatchTransform, _crop_theta, sample_transform

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _noise(batch: int, side: int = 20, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8, generator=generator)


def _halves(batch: int, side: int, *, vertical: bool) -> torch.Tensor:
    """Left (or top) half black, right (or bottom) half white."""
    images = torch.zeros(batch, 3, side, side, dtype=torch.uint8)
    if vertical:
        images[:, :, side // 2 :] = 255
    else:
        images[..., side // 2 :] = 255
    return images


def _flipped(transform: BatchTransform, images: torch.Tensor, *, vertical: bool) -> int:
    """How many outputs have the white half on the other side."""
    out = transform.geometry(images)
    first = out[:, :, 0, :] if vertical else out[..., 0]
    last = out[:, :, -1, :] if vertical else out[..., -1]
    flipped = first.mean(dim=(1, 2)) > last.mean(dim=(1, 2))
    return int(flipped.sum())


# --- evaluation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("side", [20, 16])  # resized, and already at the output size
def test_eval_output_shape_dtype_and_exact_normalisation(side: int) -> None:
    values = torch.tensor([0, 17, 128, 255], dtype=torch.uint8)
    images = values.view(4, 1, 1, 1).expand(4, 3, side, side).contiguous()
    out = BatchTransform(16, MEAN, STD, train=False)(images)
    assert out.shape == (4, 3, 16, 16) and out.dtype == torch.float32
    mean = torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    expected = (values.double().view(4, 1, 1, 1) / 255 - mean) / std
    torch.testing.assert_close(out.double(), expected.expand_as(out), atol=1e-5, rtol=0)


def test_eval_is_deterministic_and_ignores_the_random_generator() -> None:
    images = _noise(3)
    transform = BatchTransform(16, MEAN, STD, train=False, preset="strong", hflip=True, vflip=True)
    torch.manual_seed(0)
    first = transform(images)
    torch.manual_seed(1)
    assert torch.equal(first, transform(images))


def test_eval_resize_is_the_whole_image_resized_without_aliasing() -> None:
    images = _noise(2, side=32)
    out = BatchTransform(16, (0, 0, 0), (1, 1, 1), train=False).geometry(images)
    for image, result in zip(images, out, strict=True):  # on CPU: OpenCV per image, as cached
        expected = resize_array(image.permute(1, 2, 0).numpy(), 16, 16)
        assert torch.equal(result, torch.from_numpy(expected).permute(2, 0, 1).float())
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    smooth = torch.stack([xx * 5, yy * 5, 128 + 90 * torch.sin(xx / 5)]).round().to(torch.uint8)
    out = BatchTransform(16, (0, 0, 0), (1, 1, 1), train=False).geometry(smooth[None])
    reference = F.interpolate(smooth[None].float(), size=(16, 16), mode="bilinear", antialias=True)
    assert (out - reference).abs().mean() < 1.5  # an antialiased resize, not point sampling


def test_train_with_preset_none_equals_eval() -> None:
    images = _noise(4)
    torch.manual_seed(3)
    train = BatchTransform(16, MEAN, STD, train=True, preset="none", hflip=True, vflip=True)
    evaluation = BatchTransform(16, MEAN, STD, train=False)
    assert torch.equal(train(images), evaluation(images))


def test_flip_preset_only_flips_the_whole_image() -> None:
    images = _noise(64, side=16)
    torch.manual_seed(4)
    out = BatchTransform(16, MEAN, STD, train=True, preset="flip", hflip=True, vflip=True)(images)
    plain = BatchTransform(16, MEAN, STD, train=False)(images)
    seen = set()
    for got, x in zip(out, plain, strict=True):  # every image is one of its four flips, uncropped
        views = {"id": x, "h": x.flip(-1), "v": x.flip(-2), "hv": x.flip(-1).flip(-2)}
        match = [name for name, view in views.items() if torch.allclose(got, view, atol=1e-5)]
        assert match, "a flip-preset view that is not a flip of the whole image"
        seen.add(match[0])
    assert seen == {"id", "h", "v", "hv"}


def test_unknown_preset_is_rejected() -> None:
    with pytest.raises(KeyError):
        BatchTransform(16, MEAN, STD, train=True, preset="heavy")


# --- training crops and flips ---------------------------------------------------------------------
def test_light_is_deterministic_under_the_seed() -> None:
    images = _noise(8)
    transform = BatchTransform(16, MEAN, STD, train=True, preset="light")
    torch.manual_seed(5)
    first = transform(images)
    torch.manual_seed(5)
    second = transform(images)
    torch.manual_seed(6)
    third = transform(images)
    assert first.shape == (8, 3, 16, 16) and first.dtype == torch.float32
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_crops_stay_inside_the_image(preset: str) -> None:
    # a distinctive frame (200) around darker noise (60..120): sampling outside would pull in
    # other values with zero padding; with border padding nothing leaves the input's range
    images = torch.randint(60, 121, (64, 3, 24, 24), dtype=torch.uint8)
    images[..., 0, :] = images[..., -1, :] = 200
    images[..., :, 0] = images[..., :, -1] = 200
    transform = BatchTransform(16, MEAN, STD, train=True, preset=preset, hflip=True, vflip=True)
    torch.manual_seed(0)
    out = transform.geometry(images)
    assert out.min() >= 60 - 1e-3 and out.max() <= 200 + 1e-3

    torch.manual_seed(0)
    theta = _crop_theta(64, transform.scale, hflip=True, vflip=True)
    grid = F.affine_grid(theta, [64, 3, 16, 16], align_corners=False)
    assert grid.abs().max() <= 1 + 1e-6  # every sample point lies inside the input


def test_horizontal_flip_about_half_the_time_only_when_enabled() -> None:
    images = _halves(200, 32, vertical=False)
    torch.manual_seed(0)
    on = BatchTransform(24, MEAN, STD, train=True, preset="light", hflip=True)
    assert 60 < _flipped(on, images, vertical=False) < 140
    off = BatchTransform(24, MEAN, STD, train=True, preset="light", hflip=False)
    assert _flipped(off, images, vertical=False) == 0
    assert _flipped(on, _halves(200, 32, vertical=True), vertical=True) == 0  # vflip is off


def test_vertical_flip_about_half_the_time_only_when_enabled() -> None:
    images = _halves(200, 32, vertical=True)
    torch.manual_seed(0)
    on = BatchTransform(24, MEAN, STD, train=True, preset="light", hflip=False, vflip=True)
    assert 60 < _flipped(on, images, vertical=True) < 140
    off = BatchTransform(24, MEAN, STD, train=True, preset="light")  # vflip off by default
    assert _flipped(off, images, vertical=True) == 0
    assert _flipped(on, _halves(200, 32, vertical=False), vertical=False) == 0


def test_flips_are_off_in_evaluation_and_with_preset_none() -> None:
    images = _halves(50, 32, vertical=False)
    for transform in (
        BatchTransform(24, MEAN, STD, train=False, hflip=True, vflip=True),
        BatchTransform(24, MEAN, STD, train=True, preset="none", hflip=True, vflip=True),
    ):
        assert not transform.hflip and not transform.vflip
        assert _flipped(transform, images, vertical=False) == 0


# --- _crop_theta ----------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [(0.6, 1.0), (0.35, 1.0), (0.08, 0.5), (1.0, 1.0)])
def test_crop_theta_areas_and_centres(scale: tuple[float, float]) -> None:
    torch.manual_seed(0)
    theta = _crop_theta(20_000, scale, hflip=True, vflip=True)
    assert theta.shape == (20_000, 2, 3)
    w, cx = theta[:, 0, 0], theta[:, 0, 2]
    h, cy = theta[:, 1, 1], theta[:, 1, 2]
    assert (theta[:, 0, 1] == 0).all() and (theta[:, 1, 0] == 0).all()
    area = (w * h).abs()
    assert area.min() >= scale[0] * 0.75 - 1e-6  # clamping a side to 1 loses at most 1/4
    assert area.max() <= scale[1] + 1e-6
    assert (w.abs() <= 1 + 1e-6).all() and (h.abs() <= 1 + 1e-6).all()
    assert (cx.abs() <= 1 - w.abs() + 1e-6).all()
    assert (cy.abs() <= 1 - h.abs() + 1e-6).all()
    ratio = w.abs() / h.abs()
    unclamped = (w.abs() < 1) & (h.abs() < 1)
    if scale[0] < 1:  # with scale (1, 1) one side is always clamped
        assert ratio[unclamped].min() >= 3 / 4 - 1e-4 and ratio[unclamped].max() <= 4 / 3 + 1e-4
        assert float(area[unclamped].min()) == pytest.approx(scale[0], abs=0.01)
    assert 0.45 < (w < 0).float().mean() < 0.55 and 0.45 < (h < 0).float().mean() < 0.55


def test_crop_theta_without_flips_never_mirrors() -> None:
    torch.manual_seed(0)
    theta = _crop_theta(5000, (0.35, 1.0), hflip=False, vflip=False)
    assert (theta[:, 0, 0] > 0).all() and (theta[:, 1, 1] > 0).all()


def test_crop_theta_area_lower_bound_is_held_for_the_light_presets() -> None:
    # for lower bounds of 0.35 and more, clamping only happens to crops that stay above it
    torch.manual_seed(1)
    for low in (0.35, 0.6):
        theta = _crop_theta(20_000, (low, 1.0), hflip=False, vflip=False)
        area = theta[:, 0, 0] * theta[:, 1, 1]
        assert area.min() >= low - 1e-6
        assert area.max() <= 1 + 1e-6
        assert math.isclose(float(area.max()), 1.0, abs_tol=0.15)


# --- per-sample ops -------------------------------------------------------------------------------
def test_sample_transform_per_preset() -> None:
    assert sample_transform("none") is None
    assert sample_transform("light") is None
    assert sample_transform("flip") is None
    assert set(PRESETS) == {"none", "flip", "light", "medium", "strong"}
    image = _noise(1, side=24)[0]
    channels_last = image.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # as ImageDataset gives
    for preset in ("medium", "strong"):
        op = sample_transform(preset)
        assert callable(op)
        for source in (image, channels_last):
            torch.manual_seed(0)
            out = op(source)
            assert isinstance(out, torch.Tensor)
            assert out.shape == (3, 24, 24) and out.dtype == torch.uint8
        changed = 0
        for seed in range(8):
            torch.manual_seed(seed)
            changed += not torch.equal(op(image), image)
        assert changed > 0


def test_sample_transform_is_seeded() -> None:
    image = _noise(1, side=24)[0]
    op = sample_transform("strong")
    torch.manual_seed(11)
    first = op(image)
    torch.manual_seed(11)
    assert torch.equal(first, op(image))


# --- input layouts --------------------------------------------------------------------------------
@pytest.mark.parametrize("train", [False, True])
def test_runs_on_a_permuted_channels_last_uint8_view(train: bool) -> None:
    hwc = _noise(6, side=20).permute(0, 2, 3, 1).contiguous()  # (B, H, W, 3) as stored
    view = hwc.permute(0, 3, 1, 2)  # (B, 3, H, W), not contiguous
    assert not view.is_contiguous()
    transform = BatchTransform(16, MEAN, STD, train=train, preset="light")
    torch.manual_seed(2)
    from_view = transform(view)
    torch.manual_seed(2)
    from_copy = transform(view.contiguous())
    assert from_view.shape == (6, 3, 16, 16) and from_view.dtype == torch.float32
    torch.testing.assert_close(from_view, from_copy)
    assert torch.equal(hwc.permute(0, 3, 1, 2), view)  # the input is left alone


def test_augment_exclude_removes_ops_from_the_space() -> None:
    from viewfinder.data.transforms import sample_transform

    op = sample_transform("strong", ["rotate", "shear"])
    assert not {"Rotate", "ShearX", "ShearY"} & set(op._AUGMENTATION_SPACE)
    assert "Brightness" in op._AUGMENTATION_SPACE
    assert "Rotate" in sample_transform("strong")._AUGMENTATION_SPACE  # class space untouched
    image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    assert op(image).shape == image.shape


def test_augment_exclude_config_is_validated() -> None:
    from viewfinder.config import build_config
    from viewfinder.errors import UserError

    cfg = build_config("classify", overrides={"augment_exclude": "rotate+color"})
    assert cfg.data.augment_exclude == "rotate+color"
    with pytest.raises(UserError, match="unknown op 'spin'"):
        build_config("classify", overrides={"augment_exclude": "spin"})


def test_grayscale_gives_three_equal_luma_channels():
    from viewfinder.data.transforms import BatchTransform

    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    gray = BatchTransform(8, (0.0,) * 3, (1.0,) * 3, train=False, grayscale=True)(images)
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    luma = (images.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1) / 255
    assert torch.allclose(gray[:, 0], luma, atol=1e-5)
