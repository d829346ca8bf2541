"""KADID-10k-style quality data from any folder of photos: each photo degraded at known levels.

    python benchmarks/degrade.py PHOTOS OUT [--levels 3] [--val-fraction 0.25] [--size 256]

No real human-MOS set is small and redistributable, so quality figures use real photos degraded
by four distortions (Gaussian blur, Gaussian noise, JPEG compression, exposure shift) at
``--levels`` severities each, plus the clean photo. The MOS is derived from the severity, not
from people: clean = 9, and each level lowers it by a distortion-specific step (blur and noise
hurt more than a brightness shift), plus a little per-image jitter (sd 0.25) so ties are rare:
a ranking of severities that a quality model must recover. Split by source photo: every version
of a photo is in train or in val, never both. Writes ``OUT/images/*.jpg`` (quality 95 before any
JPEG distortion), ``OUT/train.csv`` and ``OUT/val.csv`` (``img_name,img_path,mos,comments``) and
``OUT/distortions.csv``; say which photos a figure used.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

STEP = {"blur": 2.2, "noise": 2.0, "jpeg": 1.8, "exposure": 1.4}  # MOS lost per level
WORDS = {"blur": "blurry", "noise": "noisy", "jpeg": "blocky compression artefacts",
         "exposure": "badly exposed"}  # fmt: skip


def distort(image: Image.Image, kind: str, level: int, rng: np.random.Generator) -> Image.Image:
    if kind == "blur":
        return image.filter(ImageFilter.GaussianBlur(radius=0.8 * level))
    if kind == "noise":
        pixels = np.asarray(image, dtype=np.float32)
        noisy = pixels + rng.normal(0, 10 * level, pixels.shape)
        return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    if kind == "jpeg":
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=(30, 12, 5, 3)[min(level, 4) - 1])
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    factor = (1.6, 2.2, 0.35)[(level - 1) % 3]  # brighter, much brighter, darker
    return ImageEnhance.Brightness(image).enhance(factor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--size", type=int, default=256, help="long side of the outputs, px")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sources = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    held = set(rng.permutation(len(sources))[: round(len(sources) * args.val_fraction)].tolist())
    rows = {"train": [], "val": []}
    facts = []
    for index, source in enumerate(sources):
        photo = Image.open(source).convert("RGB")
        photo.thumbnail((args.size, args.size))
        versions = [("clean", 0)] + [(k, lv) for k in STEP for lv in range(1, args.levels + 1)]
        for kind, level in versions:
            name = f"{source.stem}_{kind}{level}"
            image = photo if kind == "clean" else distort(photo, kind, level, rng)
            image.save(args.out / "images" / f"{name}.jpg", quality=95)
            mos = 9.0 - (STEP[kind] * level if kind != "clean" else 0) + rng.normal(0, 0.25)
            comment = "clean and sharp" if kind == "clean" else f"{WORDS[kind]} (level {level})"
            split = "val" if index in held else "train"
            rows[split].append([name, f"images/{name}.jpg", round(float(np.clip(mos, 0, 10)), 3),
                                comment])  # fmt: skip
            facts.append([name, source.name, kind, level, split])
    for split, split_rows in rows.items():
        with open(args.out / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["img_name", "img_path", "mos", "comments"])
            writer.writerows(split_rows)
    with open(args.out / "distortions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["img_name", "source", "distortion", "level", "split"])
        writer.writerows(facts)
    print(f"{len(sources)} photos -> {len(facts)} images ({len(rows['train'])} train, "
          f"{len(rows['val'])} val) in {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
