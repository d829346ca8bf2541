"""Image decoding and the bad-file policy.

Users' folders hold whatever their cameras, scanners and scrapers wrote: CMYK JPEGs, palette PNGs,
16-bit greyscale, transparent product shots, phone photos that are stored sideways with an EXIF
orientation tag, and the odd truncated or mis-named file. ``load_image`` turns all of these into one
thing (8-bit RGB, upright) or raises ``BadImageError`` with a one-line reason, so a bad file never
surfaces as a PIL traceback in the middle of epoch 7.

``scan_images`` checks every file cheaply *before* training, so the ``on_bad_image`` policy
("error" or "skip") is applied once, up front, and a skip count can be reported.

PIL's global ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never touched: silently padding truncated
files with grey would train on garbage, and a process-wide flag would change other code's behaviour.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from viewfinder.errors import BadImageError, UserError

# OpenCV's own thread pool would split a 128 px resize across threads (pure overhead) and does not
# survive a fork into loader workers; every resize here is one small image.
cv2.setNumThreads(0)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)

ON_BAD_IMAGE_CHOICES: tuple[str, ...] = ("error", "skip")

# Modes PIL converts to RGB faithfully with a plain ``convert("RGB")``.
_DIRECT_MODES = frozenset({"RGB", "RGBX", "CMYK", "YCbCr", "HSV", "L", "1"})
# Modes with an alpha channel (or palette transparency): composited onto white.
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "PA", "P"})
# High bit-depth integer greyscale: scaled from 16-bit to 8-bit.
_WIDE_INT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_SUPPORTED_MODES = _DIRECT_MODES | _ALPHA_MODES | _WIDE_INT_MODES | {"F"}

_JPEG_EOI = b"\xff\xd9"
_TAIL_BYTES = 4096


def _one_line(message: object) -> str:
    """Collapse an exception message to one line so error output stays one line."""
    return " ".join(str(message).split())


def _check_file(path: Path) -> None:
    """Reject missing, non-regular and empty files before PIL sees them (clearer reasons)."""
    if not path.exists():
        raise BadImageError(path, "file not found")
    if not path.is_file():
        raise BadImageError(path, "not a file")
    if path.stat().st_size == 0:
        raise BadImageError(path, "empty file (0 bytes)")


@contextlib.contextmanager
def _decode_errors(path: Path) -> Iterator[None]:
    """Turn PIL's decoding exceptions into one-line ``BadImageError``s naming ``path``."""
    try:
        yield
    except Image.DecompressionBombError as error:
        raise BadImageError(
            path, f"image too large, possible decompression bomb ({_one_line(error)})"
        ) from error
    except UnidentifiedImageError as error:
        raise BadImageError(path, "not an image file") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise BadImageError(path, f"truncated or corrupt image ({_one_line(error)})") from error


def load_image(path: str | Path, *, draft: int | None = None) -> Image.Image:
    """Decode ``path`` to an upright 8-bit RGB image, or raise ``BadImageError``.

    Mode handling:

    - CMYK (including Adobe CMYK JPEGs), YCbCr, HSV, L and 1-bit: converted by PIL.
    - RGBA, LA, PA and palette images with transparency: alpha is composited onto **white**.
      Transparent images in practice are product photos and logos cut out for display on a white
      page; white matches what the photographer saw, whereas black (PIL's default when dropping
      alpha) turns the background into a strong, misleading feature.
    - 16-bit greyscale (I;16, I;16B, I;16L, I): ``value / 257`` with clipping, so 65535 -> 255.
    - Float (F): scaled by the image maximum (no fixed range exists); negatives and NaN -> 0.
    - Multi-frame files (GIF, TIFF): the first frame.

    EXIF orientation is applied so phone photos are upright, as the user sees them.

    ``draft``: the caller only needs about ``draft`` x ``draft`` pixels, so a JPEG may be decoded
    at 1/2, 1/4 or 1/8 scale in the DCT domain (never below ``draft`` on either side): 2-8x less
    decoding work for photos that are then shrunk anyway.
    """
    path = Path(path)
    _check_file(path)
    return _open_rgb(path, path, draft=draft, max_pixels=None)


def load_image_bytes(
    data: bytes, *, name: str = "upload", draft: int | None = None, max_pixels: int | None = None
) -> Image.Image:
    """``load_image`` for an image held in memory (an HTTP upload), named ``name`` in errors.

    ``max_pixels``: refuse larger images before decoding them (decompression bombs: a 20,000 x
    20,000 PNG is a few hundred kB but 1.2 GB decoded); PIL's own limit is a warning up to ~179 MP.
    """
    if not data:
        raise BadImageError(name, "empty file (0 bytes)")
    return _open_rgb(io.BytesIO(data), Path(name), draft=draft, max_pixels=max_pixels)


def _open_rgb(
    source: Path | io.BytesIO, path: Path, *, draft: int | None, max_pixels: int | None
) -> Image.Image:
    with _decode_errors(path), warnings.catch_warnings():
        if max_pixels is not None:  # checked below: PIL's warning above 89 MP would repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(source) as opened:
            if max_pixels is not None and opened.width * opened.height > max_pixels:
                raise BadImageError(
                    path,
                    f"image too large: {opened.width} x {opened.height} pixels is over the "
                    f"limit of {max_pixels:,} (possible decompression bomb)",
                )
            if opened.mode not in _SUPPORTED_MODES:
                raise BadImageError(path, f"unsupported image mode {opened.mode}")
            if draft is not None and opened.format == "JPEG" and opened.mode in ("RGB", "L"):
                opened.draft(opened.mode, (draft, draft))
            opened.load()  # decode now, inside the guard, so truncation is detected here
            ImageOps.exif_transpose(opened, in_place=True)  # no copy when nothing to turn
    return _to_rgb(opened, path)


def decode_resized(source: str | Path | bytes, size: int) -> np.ndarray:
    """An image file (or its bytes) as a ``size`` x ``size`` x 3 uint8 array: the unit the image
    cache stores, and what the HTTP server feeds the model (so served answers equal predict's).

    The whole image is resized (no crop), matching evaluation, so nothing at the border is lost;
    training crops come later from this array (``resize_array``).
    """
    if isinstance(source, bytes):
        image = load_image_bytes(source, draft=size)
    else:
        image = load_image(source, draft=size)
    return resize_array(np.asarray(image), size, size)


def resize_array(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 array: whole-pixel box averaging, then bilinear.

    While the image is at least twice the target along both axes it is first shrunk by that
    integer factor with an exact box average (OpenCV's integer ``INTER_AREA`` path), then
    resized bilinearly by the remaining factor (< 2, where bilinear no longer aliases) - the
    "reducing gap" scheme PIL also offers. OpenCV because it is 4-7x faster than PIL's or torch's
    antialiased resize on these 100-600 px images (docs/benchmarks.md).
    """
    rows, cols = array.shape[:2]
    if (rows, cols) == (height, width):
        return array
    factor = min(rows // height, cols // width)
    if factor >= 2:
        rows, cols = rows // factor, cols // factor
        whole = array[: rows * factor, : cols * factor]  # at most factor-1 edge pixels dropped
        array = cv2.resize(whole, (cols, rows), interpolation=cv2.INTER_AREA)
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_LINEAR)


def _to_rgb(image: Image.Image, path: Path) -> Image.Image:
    """Convert a decoded image of any supported mode to 8-bit RGB (see ``load_image``)."""
    mode = image.mode
    if mode == "RGB":
        return image  # already what every caller wants: no copy
    if mode in _WIDE_INT_MODES:
        values = np.asarray(image, dtype=np.float64) / 257.0
        return _grey_array_to_rgb(values)
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(values.max()) if values.size else 0.0
        return _grey_array_to_rgb(values * (255.0 / peak) if peak > 0 else values)
    if mode == "P" and "transparency" not in image.info:
        return image.convert("RGB")
    if mode in _ALPHA_MODES:
        return _composite_on_white(image.convert("RGBA"))
    if mode in _DIRECT_MODES:
        return image.convert("RGB")
    raise BadImageError(path, f"unsupported image mode {mode}")


def _grey_array_to_rgb(values: np.ndarray) -> Image.Image:
    """Round and clip a greyscale array already on a 0..255 scale, then replicate to RGB."""
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    """Blend an RGBA image over a white background (see ``load_image`` for why white)."""
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _jpeg_ends_with_eoi(path: Path) -> bool:
    """Cheap truncation test: a complete JPEG ends with the EOI marker (after padding)."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    return tail.rstrip(b"\x00 \t\r\n").endswith(_JPEG_EOI)


def _check_image(path: Path) -> None:
    """Raise ``BadImageError`` if ``path`` will not decode, doing as little work as possible.

    PNG: ``verify()`` walks the chunks and their CRCs, which catches truncation without decoding.
    JPEG: ``verify()`` checks nothing, so the file must end with the EOI marker; a file that does
    not (cameras sometimes append trailers after EOI) is decoded in full to decide, so valid files
    are never rejected on the cheap test alone. Other formats (GIF, WebP, TIFF, BMP) have no cheap
    check in PIL and are decoded in full; they are rare in training sets.
    """
    _check_file(path)
    with _decode_errors(path), Image.open(path) as opened:
        image_format, mode = opened.format, opened.mode
        if image_format == "PNG":
            opened.verify()
    if mode not in _SUPPORTED_MODES:
        raise BadImageError(path, f"unsupported image mode {mode}")
    if image_format == "PNG" or (image_format == "JPEG" and _jpeg_ends_with_eoi(path)):
        return
    load_image(path)


def scan_images(
    paths: Sequence[Path], *, on_bad_image: str
) -> tuple[list[int], list[tuple[str, str]]]:
    """Check every file before training and apply the bad-image policy once, up front.

    Returns ``(good_indices, bad)`` where ``bad`` is ``[(path, reason), ...]`` in input order.
    ``on_bad_image="error"`` raises ``BadImageError`` for the first bad file; ``"skip"`` returns the
    bad files so the caller can report how many were left out.
    """
    if on_bad_image not in ON_BAD_IMAGE_CHOICES:
        raise UserError(
            f"on_bad_image={on_bad_image!r} is not a valid choice; "
            f"use one of {', '.join(ON_BAD_IMAGE_CHOICES)}"
        )
    good: list[int] = []
    bad: list[tuple[str, str]] = []
    for index, path in enumerate(paths):
        try:
            _check_image(Path(path))
        except BadImageError as error:
            if on_bad_image == "error":
                raise
            bad.append((error.path, error.reason))
        else:
            good.append(index)
    return good, bad


def skipped_notice(
    skipped: int,
    total: int | None,
    listed: str | Path | None,
    *,
    effect: str,
    what: str = "images that could not be read",
) -> str:
    """The one line train, evaluate and predict print when ``on_bad_image=skip`` left files (or
    data rows: ``what``) out: a user must learn it from the console, not from a submission with
    fewer rows."""
    count = f"{skipped} of {total}" if total is not None else f"{skipped}"
    line = f"skipped {count} {what} (on_bad_image=skip); "
    return line + effect + (f"; list: {listed}" if listed else "")
