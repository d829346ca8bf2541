from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.helpers import (
    BAD_IMAGE_KEYS,
    EXIF_STORED_SIZE,
    GOOD_IMAGE_KEYS,
    make_bad_image_corpus,
    save_image,
)
from viewfinder.data.images import IMAGE_EXTENSIONS, load_image, scan_images
from viewfinder.errors import BadImageError, UserError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_bad_image_corpus(tmp_path_factory.mktemp("corpus"))


def _pixels(path: Path) -> np.ndarray:
    image = load_image(path)
    assert image.mode == "RGB"
    array = np.asarray(image)
    assert array.dtype == np.uint8
    return array


def test_extensions_are_lower_case_with_dot() -> None:
    assert {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"} == IMAGE_EXTENSIONS


@pytest.mark.parametrize("key", GOOD_IMAGE_KEYS)
def test_good_files_load_as_rgb_uint8(corpus: dict[str, Path], key: str) -> None:
    array = _pixels(corpus[key])
    assert array.ndim == 3 and array.shape[2] == 3


def test_cmyk_jpeg_becomes_red(corpus: dict[str, Path]) -> None:
    r, g, b = _pixels(corpus["cmyk_jpeg"])[8, 8].astype(int)
    assert r > 230 and g < 25 and b < 25


def test_16bit_png_is_scaled_not_clipped(corpus: dict[str, Path]) -> None:
    assert Image.open(corpus["png16"]).mode.startswith("I")
    grey = _pixels(corpus["png16"])[0, :, 0].tolist()
    assert grey == [0, 1, 128, 255]


@pytest.mark.parametrize("key", ["rgba_png", "la_png"])
def test_transparent_pixels_become_white(corpus: dict[str, Path], key: str) -> None:
    array = _pixels(corpus[key])
    assert array[0, 0].tolist() == [255, 255, 255]
    assert array[0, 7].tolist() == [20, 20, 20]


def test_palette_transparency_becomes_white(corpus: dict[str, Path]) -> None:
    assert Image.open(corpus["palette_transparent_png"]).mode == "P"
    array = _pixels(corpus["palette_transparent_png"])
    assert array[0, 0].tolist() == [255, 255, 255]
    assert array[0, 7].tolist() == [0, 0, 255]


def test_palette_without_transparency(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 10, 200, 30])
    image.save(path)
    assert _pixels(path)[0, 0].tolist() == [10, 200, 30]


def test_one_bit_is_black_and_white(corpus: dict[str, Path]) -> None:
    assert set(np.unique(_pixels(corpus["onebit_png"])).tolist()) == {0, 255}


def test_exif_orientation_is_applied(corpus: dict[str, Path]) -> None:
    width, height = EXIF_STORED_SIZE
    array = _pixels(corpus["exif_rotated_jpeg"])
    assert array.shape[:2] == (width, height)  # displayed size is swapped: height x width = 48 x 24
    top_right = array[2, height - 3].astype(int)
    top_left = array[2, 2].astype(int)
    assert top_right[0] > 200 and top_right[1] < 60  # the stored top-left red block
    assert top_left[0] < 80


def test_float_and_32bit_and_pa_tiffs(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0.0, 0.5, 2.0, -1.0]], dtype=np.float32)).save(tmp_path / "f.tif")
    assert _pixels(tmp_path / "f.tif")[0, :, 0].tolist() == [0, 64, 255, 0]
    Image.fromarray(np.array([[0, 65535, 70000]], dtype=np.int32)).save(tmp_path / "i.tif")
    assert _pixels(tmp_path / "i.tif")[0, :, 0].tolist() == [0, 255, 255]
    Image.new("PA", (2, 2)).save(tmp_path / "pa.tif")
    assert _pixels(tmp_path / "pa.tif")[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize("key", BAD_IMAGE_KEYS)
def test_bad_files_raise_one_line_naming_the_file(corpus: dict[str, Path], key: str) -> None:
    with pytest.raises(BadImageError) as caught:
        load_image(corpus[key])
    message = str(caught.value)
    assert str(corpus[key]) in message
    assert "\n" not in message
    assert caught.value.path == str(corpus[key])


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("missing", "file not found"),
        ("empty", "empty file (0 bytes)"),
        ("text_as_jpg", "not an image file"),
        ("truncated_jpeg", "truncated or corrupt image ("),
        ("truncated_png", "truncated or corrupt image ("),
    ],
)
def test_bad_file_reasons(corpus: dict[str, Path], key: str, reason: str) -> None:
    with pytest.raises(BadImageError) as caught:
        load_image(corpus[key])
    assert caught.value.reason.startswith(reason)


def test_unsupported_mode(tmp_path: Path) -> None:
    path = tmp_path / "lab.tif"
    Image.new("LAB", (2, 2), (50, 0, 0)).save(path)
    with pytest.raises(BadImageError, match="unsupported image mode LAB"):
        load_image(path)
    _, bad = scan_images([path], on_bad_image="skip")
    assert bad == [(str(path), "unsupported image mode LAB")]


def test_decompression_bomb_is_a_bad_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_image(tmp_path / "big.png", size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_image(path)
    with pytest.raises(BadImageError, match="decompression bomb"):
        scan_images([path], on_bad_image="error")


def test_global_truncated_flag_is_untouched(corpus: dict[str, Path]) -> None:
    with pytest.raises(BadImageError):
        load_image(corpus["truncated_jpeg"])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_scan_skip_returns_good_indices_and_reasons(corpus: dict[str, Path]) -> None:
    keys = list(GOOD_IMAGE_KEYS) + list(BAD_IMAGE_KEYS)
    good, bad = scan_images([corpus[k] for k in keys], on_bad_image="skip")
    assert good == list(range(len(GOOD_IMAGE_KEYS)))
    assert [path for path, _ in bad] == [str(corpus[k]) for k in BAD_IMAGE_KEYS]
    reasons = dict(zip(BAD_IMAGE_KEYS, (reason for _, reason in bad), strict=True))
    assert reasons["missing"] == "file not found"
    assert reasons["empty"] == "empty file (0 bytes)"
    assert reasons["text_as_jpg"] == "not an image file"
    assert reasons["truncated_jpeg"].startswith("truncated")
    assert reasons["truncated_png"].startswith("truncated")


def test_scan_error_raises_for_first_bad_file(corpus: dict[str, Path]) -> None:
    paths = [corpus["rgb_jpeg"], corpus["empty"], corpus["missing"]]
    with pytest.raises(BadImageError) as caught:
        scan_images(paths, on_bad_image="error")
    assert caught.value.path == str(corpus["empty"])


def test_scan_accepts_jpeg_with_trailer_after_eoi(tmp_path: Path) -> None:
    path = save_image(tmp_path / "trailer.jpg")
    path.write_bytes(path.read_bytes() + b"CAMERA-TRAILER-DATA")
    assert scan_images([path], on_bad_image="error") == ([0], [])


def test_scan_accepts_padded_jpeg_and_other_formats(tmp_path: Path) -> None:
    padded = save_image(tmp_path / "padded.jpg")
    padded.write_bytes(padded.read_bytes() + b"\x00\x00\n")
    others = [save_image(tmp_path / f"x{ext}") for ext in (".bmp", ".gif", ".webp", ".tiff")]
    good, bad = scan_images([padded, *others], on_bad_image="error")
    assert good == [0, 1, 2, 3, 4] and bad == []


def test_scan_rejects_unknown_policy() -> None:
    with pytest.raises(UserError, match="on_bad_image='ignore'.*error, skip"):
        scan_images([], on_bad_image="ignore")
