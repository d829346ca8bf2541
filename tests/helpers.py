"""Builders shared by tests: small images and data sets made on the fly, nothing downloaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# Keys of ``make_bad_image_corpus`` that must load, and that must raise ``BadImageError``.
GOOD_IMAGE_KEYS: tuple[str, ...] = (
    "rgb_jpeg",
    "cmyk_jpeg",
    "palette_transparent_png",
    "png16",
    "rgba_png",
    "la_png",
    "onebit_png",
    "exif_rotated_jpeg",
)
BAD_IMAGE_KEYS: tuple[str, ...] = (
    "missing",
    "empty",
    "truncated_jpeg",
    "truncated_png",
    "text_as_jpg",
)

# The EXIF-rotated JPEG is stored 48 wide x 24 tall with a red block in the stored top-left corner.
EXIF_STORED_SIZE = (48, 24)
EXIF_ORIENTATION_TAG = 0x0112


def noise_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Random RGB pixels: incompressible, so truncating the encoded file cuts into pixel data."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def save_image(path: Path, size: tuple[int, int] = (16, 12), color=(200, 30, 30)) -> Path:
    """Write a small solid RGB image (format from the extension) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _truncated(path: Path, source: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _exif_rotated_jpeg(path: Path) -> Path:
    """Orientation 6 ("rotate 90 CW to display") on a landscape image with a marked corner."""
    width, height = EXIF_STORED_SIZE
    pixels = np.full((height, width, 3), 40, dtype=np.uint8)
    pixels[:8, :8] = (255, 0, 0)  # stored top-left: red; displayed it is the top-right corner
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[EXIF_ORIENTATION_TAG] = 6
    image.save(path, quality=95, exif=exif.tobytes())
    return path


def _palette_transparent_png(path: Path) -> Path:
    """Palette image: index 0 (left half) fully transparent, index 1 (right half) opaque blue."""
    image = Image.new("P", (8, 4), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    image.paste(1, (4, 0, 8, 4))
    image.save(path, transparency=0)
    return path


def _alpha_png(path: Path, mode: str) -> Path:
    """Left half transparent, right half opaque dark (value 20): RGBA or LA."""
    channels = 4 if mode == "RGBA" else 2
    pixels = np.full((4, 8, channels), 20, dtype=np.uint8)
    pixels[:, :4, -1] = 0
    pixels[:, 4:, -1] = 255
    Image.fromarray(pixels).save(path)  # 2 channels -> LA, 4 -> RGBA
    return path


def make_bad_image_corpus(directory: Path) -> dict[str, Path]:
    """Build every awkward input ``load_image`` must handle; keys in GOOD/BAD_IMAGE_KEYS.

    Good files: rgb_jpeg, cmyk_jpeg (pure red), palette_transparent_png, png16 (I;16 row
    0, 257, 32896, 65535), rgba_png / la_png (left half transparent, right half value 20),
    onebit_png (checkerboard), exif_rotated_jpeg (see EXIF_STORED_SIZE).
    Bad files: missing (never written), empty, truncated_jpeg, truncated_png, text_as_jpg.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    corpus: dict[str, Path] = {"missing": directory / "missing.jpg"}
    corpus["empty"] = directory / "empty.jpg"
    corpus["empty"].write_bytes(b"")
    corpus["text_as_jpg"] = directory / "notes.jpg"
    corpus["text_as_jpg"].write_text("this is not an image\n")
    noise = Image.fromarray(noise_rgb(64, 64))
    noise.save(directory / "full.jpg", quality=95)
    noise.save(directory / "full.png")
    corpus["rgb_jpeg"] = directory / "full.jpg"
    corpus["truncated_jpeg"] = _truncated(directory / "truncated.jpg", directory / "full.jpg")
    corpus["truncated_png"] = _truncated(directory / "truncated.png", directory / "full.png")
    corpus["cmyk_jpeg"] = directory / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(corpus["cmyk_jpeg"], quality=95)
    corpus["palette_transparent_png"] = _palette_transparent_png(directory / "palette.png")
    corpus["png16"] = directory / "grey16.png"
    row = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(row).save(corpus["png16"])
    corpus["rgba_png"] = _alpha_png(directory / "rgba.png", "RGBA")
    corpus["la_png"] = _alpha_png(directory / "la.png", "LA")
    corpus["onebit_png"] = directory / "onebit.png"
    checker = (np.indices((4, 4)).sum(axis=0) % 2).astype(bool)
    Image.fromarray(checker).save(corpus["onebit_png"])
    corpus["exif_rotated_jpeg"] = _exif_rotated_jpeg(directory / "rotated.jpg")
    return corpus


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m viewfinder ARGS`` in ``cwd``, as a user runs it (wide console, 5 min cap)."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "viewfinder", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
