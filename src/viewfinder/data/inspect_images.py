"""The image files of a data set, whatever the task: sizes, unreadable files, duplicates.

Sizes come from the file headers only (PIL reads the header and never decodes pixels), of at most
``sample`` images, a seeded sample: 50,000 headers still take a while on a network drive. Every
file is ``stat``-ed (missing and empty files are found among all of them), and duplicates are
found among all of them too, cheaply: only files that share a byte size are hashed (the first
64 KiB first). A header
check cannot see a truncated file; training's own check (``on_bad_image``) still will.
"""

from __future__ import annotations

import hashlib
import random
import stat
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LISTED = 50  # files and groups listed in the summary; the counts are always complete
_HEADER_ERRORS = (OSError, SyntaxError, ValueError, EOFError)
_JPEG_FORMATS = ("JPEG", "MPO")
_EXIF_ORIENTATION = 0x0112
_PREFIX = 65536  # bytes hashed first to tell same-size files apart


@dataclass(frozen=True)
class Item:
    """One image of a split, as any task's reader names it (``label``: classification only)."""

    split: str
    path: Path
    label: str | None = None


def _rounded(value: float) -> float:
    return value if isinstance(value, int) else round(value, 4)


def number_stats(values: Sequence[float]) -> dict[str, float | None]:
    """min, median, mean, max (None when there are no values)."""
    if not values:
        return {"min": None, "median": None, "mean": None, "max": None}
    found = (min(values), statistics.median(values), statistics.fmean(values), max(values))
    return dict(zip(("min", "median", "mean", "max"), map(_rounded, found), strict=True))


def histogram(values: Sequence[float], bins: int = 30) -> dict[str, list]:
    """Equal-width bins: ``edges`` (bins + 1) and ``counts``."""
    import numpy as np

    if not values:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(np.asarray(values, dtype=float), bins=bins)
    return {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()}


def distribution(values: Iterable[int]) -> dict[str, list[int]]:
    """Counts of each whole value, ascending (caption lengths, captions per image)."""
    counts = Counter(values)
    ordered = sorted(counts)
    return {"values": ordered, "counts": [counts[v] for v in ordered]}


def _file_sizes(paths: Iterable[Path]) -> tuple[dict[Path, int], list[tuple[Path, str]]]:
    """Byte size of every regular, non-empty file; the others with the reason."""
    sizes: dict[Path, int] = {}
    bad: list[tuple[Path, str]] = []
    for path in paths:
        try:
            info = path.stat()
        except FileNotFoundError:
            bad.append((path, "file not found"))
            continue
        except OSError as error:
            bad.append((path, f"cannot read ({error.strerror})"))
            continue
        if not stat.S_ISREG(info.st_mode):
            bad.append((path, "not a file"))
        elif info.st_size == 0:
            bad.append((path, "empty file (0 bytes)"))
        else:
            sizes[path] = info.st_size
    return sizes, bad


def _digest(path: Path, limit: int | None = None) -> str | None:
    """A hash of the file's first ``limit`` bytes (None: all of it); None when unreadable."""
    try:
        with path.open("rb") as handle:
            if limit is not None:
                return hashlib.blake2b(handle.read(limit)).hexdigest()
            return hashlib.file_digest(handle, "blake2b").hexdigest()
    except OSError:
        return None


def _same_digest(paths: list[Path], limit: int | None) -> list[list[Path]]:
    """The groups (of two or more) among ``paths`` whose digests agree."""
    by_digest: dict[str, list[Path]] = defaultdict(list)
    for path in paths:
        digest = _digest(path, limit)
        if digest is not None:
            by_digest[digest].append(path)
    return [sorted(group) for group in by_digest.values() if len(group) > 1]


def find_duplicates(sizes: dict[Path, int]) -> list[list[Path]]:
    """Groups of files with the same bytes. Only files that share a byte size are read, and
    large ones are first told apart by their first ``_PREFIX`` bytes, so most are read in part."""
    by_size: dict[int, list[Path]] = defaultdict(list)
    for path, size in sizes.items():
        by_size[size].append(path)
    groups: list[list[Path]] = []
    for size, same_size in by_size.items():
        if len(same_size) < 2:
            continue
        candidates = _same_digest(same_size, _PREFIX) if size > _PREFIX else [same_size]
        for candidate in candidates:
            groups += _same_digest(candidate, None)
    return sorted(groups)


def read_header(path: Path) -> tuple[int, int, str, str]:
    """(width, height, format, mode) from the header, no pixels decoded. A JPEG's EXIF rotation
    is applied, so a phone's portrait photo counts as portrait, as it is seen and trained on."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        if image.format in _JPEG_FORMATS:  # other formats' getexif() may decode the pixels
            if image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                width, height = height, width
        return width, height, image.format or "?", image.mode


def _read_headers(
    paths: Sequence[Path],
) -> tuple[list[tuple[int, int, str, str]], list[tuple[Path, str]]]:
    from PIL import Image

    headers, bad = [], []
    for path in paths:
        try:
            headers.append(read_header(path))
        except Image.DecompressionBombError:
            bad.append((path, "image too large (possible decompression bomb)"))
        except _HEADER_ERRORS as error:  # UnidentifiedImageError is an OSError
            reason = "not an image file" if "cannot identify" in str(error) else str(error)
            bad.append((path, " ".join(reason.split())[:120]))
    return headers, bad


def size_summary(headers: Sequence[tuple[int, int, str, str]]) -> dict[str, Any]:
    """Width, height and aspect (width / height) statistics and histograms; common sizes."""
    widths = [h[0] for h in headers]
    heights = [h[1] for h in headers]
    aspects = [round(w / h, 4) for w, h in zip(widths, heights, strict=True) if h]
    common = Counter(zip(widths, heights, strict=True)).most_common(5)
    return {
        "width": number_stats(widths),
        "height": number_stats(heights),
        "aspect": number_stats(aspects),
        "most_common": [{"width": w, "height": h, "images": n} for (w, h), n in common],
        "formats": dict(Counter(h[2] for h in headers).most_common()),
        "modes": dict(Counter(h[3] for h in headers).most_common()),
        "histograms": {
            "width": histogram(widths),
            "height": histogram(heights),
            "aspect": histogram(aspects),
        },  # fmt: skip
    }


def sample_paths(paths: Sequence[Path], sample: int, seed: int) -> list[Path]:
    """At most ``sample`` of ``paths`` (0: all), a seeded choice, in path order."""
    ordered = sorted(paths)
    if sample == 0 or len(ordered) <= sample:
        return ordered
    return sorted(random.Random(seed).sample(ordered, sample))


def _shown(path: Path, root: Path) -> str:
    """A path relative to the data folder when it is inside it (shorter tables)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _duplicate_summary(groups: list[list[Path]], items: Sequence[Item], root: Path) -> dict:
    """Duplicate groups with their splits and labels: a group across splits leaks test images
    into training; one with several labels is a labelling error."""
    uses: dict[Path, set[tuple[str, str | None]]] = defaultdict(set)
    for item in items:
        uses[item.path].add((item.split, item.label))
    listed, across, conflicting = [], 0, 0
    for group in groups:
        splits = sorted({split for path in group for split, _ in uses[path]})
        labels = sorted({lab for path in group for _, lab in uses[path] if lab is not None})
        across += len(splits) > 1
        conflicting += len(labels) > 1
        entry = {"files": [_shown(p, root) for p in group], "splits": splits, "labels": labels}
        listed.append(entry)
    shared = sum(len({split for split, _ in found}) > 1 for found in uses.values())
    return {"groups": len(groups), "extra_files": sum(len(g) - 1 for g in groups),
            "across_splits": across, "conflicting_labels": conflicting,
            "files_in_several_splits": shared, "listed": listed[:LISTED]}  # fmt: skip


def image_stats(items: Sequence[Item], root: Path, *, sample: int, seed: int) -> dict[str, Any]:
    """Files, sizes (from the headers of a sample), unreadable files and duplicates."""
    files = sorted({item.path for item in items})
    sizes, bad = _file_sizes(files)
    chosen = sample_paths(list(sizes), sample, seed)
    headers, unreadable = _read_headers(chosen)
    bad += unreadable
    sized = {"read": len(headers), "checked": len(chosen), "of": len(sizes),
             "sampled": len(chosen) < len(sizes), "seed": seed}  # fmt: skip
    return {
        "files": len(files),
        "sizes": {**sized, **size_summary(headers)},
        "unreadable": {
            "count": len(bad),
            "listed": [{"path": _shown(p, root), "reason": why} for p, why in bad[:LISTED]],
        },
        "duplicates": _duplicate_summary(find_duplicates(sizes), items, root),
    }
