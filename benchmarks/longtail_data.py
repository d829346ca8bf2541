"""Real, offline data sets for viewfinder's long-tail benchmarks, exported as class-per-folder PNGs.

- ``elpv``: the 2,624 electroluminescence solar-cell images of the elpv-dataset package, classed
  by defect probability (p000, p033, p067, p100: naturally imbalanced, about 58/11/4/27 %).
- ``digits``: scikit-learn's 8x8 digits upscaled, with the TRAIN split cut to an exponential
  long-tail profile of a chosen imbalance ratio; val/test stay balanced so metrics are fair.

Both write root/{train,val,test}/<class>/*.png with a seeded stratified 60/20/20 split and a
marker file, so a second call with the same parameters does nothing.

Usage: python benchmarks/longtail_data.py elpv OUT
       python benchmarks/longtail_data.py digits OUT [--ratio 50] [--size 32]
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
FRACTIONS = (0.6, 0.2, 0.2)
MARKER = ".longtail.json"
_OWN_FILE = re.compile(r"\d{4}(_[a-z]+)?\.png")


def stratified_split(labels: Sequence[str], *, seed: int = 0) -> list[str]:
    """Split name per item: each class shuffled (seeded) and cut 60/20/20."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    assigned = np.empty(len(labels), dtype=object)
    for name in sorted(set(labels.tolist())):
        members = rng.permutation(np.flatnonzero(labels == name))
        n_train = round(FRACTIONS[0] * len(members))
        n_val = round(FRACTIONS[1] * len(members))
        assigned[members[:n_train]] = "train"
        assigned[members[n_train : n_train + n_val]] = "val"
        assigned[members[n_train + n_val :]] = "test"
    return assigned.tolist()


def longtail_counts(available: dict[str, int], *, ratio: float, seed: int = 0) -> dict[str, int]:
    """n_c = n_max * ratio^(-rank/(C-1)), class ranks shuffled by ``seed``, at least 1 each.

    n_max is the smallest available class count, so every class can supply its quota.
    """
    classes = sorted(available)
    order = np.random.default_rng(seed).permutation(len(classes))
    n_max = min(available.values())
    steps = max(1, len(classes) - 1)
    return {
        classes[index]: max(1, int(n_max * ratio ** (-rank / steps)))
        for rank, index in enumerate(order)
    }


def split_counts(root: str | Path) -> dict[str, dict[str, int]]:
    """Images per class per split, read back from the folders."""
    root = Path(root)
    counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        class_dirs = sorted(p for p in (root / split).glob("*") if p.is_dir())
        counts[split] = {d.name: len(list(d.glob("*.png"))) for d in class_dirs}
    return counts


def _is_done(root: Path, params: dict) -> bool:
    marker = root / MARKER
    return marker.is_file() and json.loads(marker.read_text()).get("params") == params


def _clear_own_files(root: Path) -> None:
    """Remove PNGs an earlier run (other seed or ratio) left, so no image is in two splits."""
    for path in root.glob("*/*/*.png"):
        if path.parent.parent.name in SPLITS and _OWN_FILE.fullmatch(path.name):
            path.unlink()


def _export(
    root: Path,
    params: dict,
    items: Sequence[tuple[str, str, str]],
    load: Callable[[int], np.ndarray],
) -> Path:
    """Write items (split, class, file name) as PNGs; ``load(i)`` gives item i's pixels."""
    from PIL import Image

    _clear_own_files(root)
    for index, (split, name, file_name) in enumerate(items):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(load(index)).save(folder / file_name)
    content = {"params": params, "counts": split_counts(root)}
    (root / MARKER).write_text(json.dumps(content, indent=2) + "\n")
    return root


def elpv_class_name(probability: float) -> str:
    """0.0 -> 'p000', 1/3 -> 'p033', 2/3 -> 'p067', 1.0 -> 'p100'."""
    return f"p{round(100 * probability):03d}"


def export_elpv(root: str | Path, *, seed: int = 0) -> Path:
    """The elpv-dataset cells as grayscale PNGs, classed by defect probability, split 60/20/20."""
    root = Path(root)
    params = {"dataset": "elpv", "seed": seed, "fractions": list(FRACTIONS)}
    if _is_done(root, params):
        return root
    from elpv_dataset.utils import load_dataset

    images, probabilities, cell_types = load_dataset()
    labels = [elpv_class_name(float(p)) for p in probabilities]
    splits = stratified_split(labels, seed=seed)
    items = [
        (split, label, f"{index:04d}_{cell_type}.png")
        for index, (split, label, cell_type) in enumerate(
            zip(splits, labels, cell_types, strict=True)
        )
    ]
    return _export(root, params, items, lambda i: np.asarray(images[i], dtype=np.uint8))


def _digit_pixels(image: np.ndarray, size: int) -> np.ndarray:
    """An 8x8 0-16 digit as a size x size RGB uint8 image (bilinear upscaling)."""
    from PIL import Image

    gray = Image.fromarray(np.round(image * (255 / 16)).astype(np.uint8))
    return np.asarray(gray.resize((size, size), Image.Resampling.BILINEAR).convert("RGB"))


def export_longtail_digits(
    root: str | Path, *, ratio: float = 50, size: int = 32, seed: int = 0
) -> Path:
    """scikit-learn digits at ``size`` px; long-tailed train split, balanced val/test."""
    root = Path(root)
    params = {"dataset": "digits", "ratio": ratio, "size": size, "seed": seed}
    if _is_done(root, params):
        return root
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = [str(int(t)) for t in digits.target]
    splits = np.asarray(stratified_split(labels, seed=seed))
    train = np.flatnonzero(splits == "train")
    available = {c: int(sum(labels[i] == c for i in train)) for c in sorted(set(labels))}
    quota = longtail_counts(available, ratio=ratio, seed=seed)
    rng = np.random.default_rng([seed, 1])
    keep = np.ones(len(labels), dtype=bool)
    for name, n_keep in quota.items():
        members = rng.permutation([i for i in train if labels[i] == name])
        keep[members[n_keep:]] = False
    kept = np.flatnonzero(keep)
    items = [(str(splits[i]), labels[i], f"{i:04d}.png") for i in kept]
    return _export(root, params, items, lambda k: _digit_pixels(digits.images[kept[k]], size))


def format_counts(counts: dict[str, dict[str, int]]) -> str:
    """A small table: one row per split, one column per class, with totals."""
    classes = sorted({c for per_split in counts.values() for c in per_split})
    width = max(5, *(len(c) for c in classes))
    lines = [" " * 6 + "".join(f"{c:>{width + 1}}" for c in classes) + "  total"]
    for split, per_class in counts.items():
        cells = "".join(f"{per_class.get(c, 0):>{width + 1}}" for c in classes)
        lines.append(f"{split:<6}{cells}  {sum(per_class.values()):>5}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("elpv", "digits"))
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ratio", type=float, default=50, help="digits: head/tail train ratio")
    parser.add_argument("--size", type=int, default=32, help="digits: image side in pixels")
    args = parser.parse_args(argv)
    if args.dataset == "elpv":
        root = export_elpv(args.out, seed=args.seed)
    else:
        root = export_longtail_digits(args.out, ratio=args.ratio, size=args.size, seed=args.seed)
    print(f"{args.dataset} -> {root}")
    print(format_counts(split_counts(root)))


if __name__ == "__main__":
    main()
