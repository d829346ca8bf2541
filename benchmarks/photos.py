"""Deterministic class-per-folder set of full-size JPEG "photos" for speed benchmarks.

Each class is one of scikit-image's bundled sample photos; every image is a random crop, resize,
flip and mild colour jitter of it, saved as a JPEG of realistic size (long side 300-600 px), so
that data loading costs what it costs on a user's own photos (JPEG decode + resize), unlike the
tiny generated demo set.

Usage: python benchmarks/photos.py OUT [--per-class N]
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np

# Candidates in order; those not bundled offline with the installed scikit-image are skipped.
SOURCES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "camera",
    "hubble_deep_field",
    "immunohistochemistry",
)
MIN_CLASSES = 6
MARKER = ".photos.json"


def load_sources() -> dict[str, np.ndarray]:
    """Return the bundled sample photos as RGB uint8 arrays, keyed by class name."""
    import skimage.data

    photos: dict[str, np.ndarray] = {}
    for name in SOURCES:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            image = np.asarray(loader())
        except (ModuleNotFoundError, OSError, ValueError):
            continue  # not bundled: this version needs pooch and a download to fetch it
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        photos[name] = np.ascontiguousarray(image[..., :3].astype(np.uint8))
    if len(photos) < MIN_CLASSES:
        raise RuntimeError(
            f"only {len(photos)} of scikit-image's sample photos are available offline "
            f"({sorted(photos)}); need {MIN_CLASSES}. Reinstall scikit-image with its data."
        )
    return photos


def _random_crop_box(rng: np.random.Generator, width: int, height: int) -> tuple[int, ...]:
    """Crop box covering 50-100 % of the area with an aspect ratio in [3/4, 4/3]."""
    area = rng.uniform(0.5, 1.0) * width * height
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    crop_w = min(width, max(1, round(math.sqrt(area * ratio))))
    crop_h = min(height, max(1, round(math.sqrt(area / ratio))))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    return left, top, left + crop_w, top + crop_h


def make_variant(
    source: np.ndarray, rng: np.random.Generator, *, min_size: int, max_size: int
) -> np.ndarray:
    """One augmented copy of ``source``: crop, resize (long side in range), flip, colour."""
    from PIL import Image

    image = Image.fromarray(source)
    image = image.crop(_random_crop_box(rng, image.width, image.height))
    long_side = int(rng.integers(min_size, max_size + 1))
    scale = long_side / max(image.size)
    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(new_size, Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.float32)
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    gain = rng.uniform(0.85, 1.15) * rng.uniform(0.93, 1.07, size=3)  # brightness x colour
    return np.clip(pixels * gain.astype(np.float32), 0, 255).astype(np.uint8)


def _read_marker(root: Path) -> dict | None:
    path = root / MARKER
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _remove_stale(class_dir: Path, name: str, per_class: int) -> None:
    """Delete this script's own files beyond ``per_class`` left by an earlier, larger run."""
    pattern = re.compile(rf"{re.escape(name)}_(\d{{4,}})\.jpg")
    for path in class_dir.glob(f"{name}_*.jpg"):
        match = pattern.fullmatch(path.name)
        if match and int(match.group(1)) >= per_class:
            path.unlink()


def make_photos(
    root: str | Path,
    *,
    per_class: int = 300,
    seed: int = 0,
    min_size: int = 300,
    max_size: int = 600,
    quality: int = 90,
) -> Path:
    """Write root/<class>/<class>_NNNN.jpg; skipped when a marker says it is already there."""
    from PIL import Image

    root = Path(root)
    params = {
        "per_class": per_class,
        "seed": seed,
        "min_size": min_size,
        "max_size": max_size,
        "quality": quality,
    }
    marker = _read_marker(root)
    if marker is not None and marker.get("params") == params and _count_ok(root, marker):
        return root
    sources = load_sources()
    for index, (name, source) in enumerate(sources.items()):
        class_dir = root / name
        class_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale(class_dir, name, per_class)
        rng = np.random.default_rng([seed, index])
        for number in range(per_class):
            pixels = make_variant(source, rng, min_size=min_size, max_size=max_size)
            Image.fromarray(pixels).save(class_dir / f"{name}_{number:04d}.jpg", quality=quality)
    content = {"params": params, "classes": list(sources), "count": per_class * len(sources)}
    (root / MARKER).write_text(json.dumps(content, indent=2) + "\n")
    return root


def _count_ok(root: Path, marker: dict) -> bool:
    """True if every class folder named in the marker holds its expected number of JPEGs."""
    per_class = marker["params"]["per_class"]
    return all(len(list((root / c).glob("*.jpg"))) == per_class for c in marker["classes"])


def summarize(root: str | Path) -> dict:
    """File count, total size and classes of a photos folder."""
    files = sorted(Path(root).glob("*/*.jpg"))
    return {
        "files": len(files),
        "megabytes": sum(f.stat().st_size for f in files) / 1e6,
        "classes": sorted({f.parent.name for f in files}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = make_photos(args.out, per_class=args.per_class, seed=args.seed)
    info = summarize(root)
    print(
        f"{root}: {info['files']} files in {len(info['classes'])} classes "
        f"({', '.join(info['classes'])}), {info['megabytes']:.1f} MB"
    )


if __name__ == "__main__":
    main()
