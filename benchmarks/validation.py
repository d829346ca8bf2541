"""Validation cost (issue 15): what ``eval_every`` and the inference batch save, side by side.

    python benchmarks/validation.py DATA [--model resnet18] [--size 112] [--epochs 4]
                                         [--out /tmp/vf-validation]

DATA is a class-per-folder set (e.g. ``python benchmarks/photos.py /tmp/photos --per-class 200``:
JPEG photos, 300-600 px); ``--val-fraction 0.45`` (default) holds out nearly as many images as it
trains on, like the held-out photo set of issue 15 (2,640 train / 2,485 validation). Trains the
same recipe twice, ``eval_every=1`` (validate every
epoch, the default) and ``eval_every=EPOCHS`` (only the last epoch), and reports per run the
summed training seconds, validation seconds and their share, and the wall time. Then times one
validation pass of the trained model at several ``eval_batch_size`` values (``evaluate --split val``
through the API, median of 3). The image cache is warmed first so that both runs read the same
cached pixels.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def train(data: Path, out: Path, name: str, **keys) -> tuple[object, float]:
    import viewfinder

    start = time.perf_counter()
    run = viewfinder.train("classify", data=str(data), name=name, output_dir=str(out),
                           progress=False, **keys)  # fmt: skip
    return run, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--val-fraction", type=float, default=0.45, help="as the issue's set")
    parser.add_argument("--out", type=Path, default=Path("/tmp/vf-validation"))
    args = parser.parse_args()
    import viewfinder
    from viewfinder.training.precision import cpu_name

    keys = {"model": args.model, "image_size": args.size, "batch_size": args.batch,
            "epochs": args.epochs, "cache_dir": str(args.out / "cache"),
            "val_fraction": args.val_fraction}  # fmt: skip
    print(f"CPU: {cpu_name()}", flush=True)
    train(args.data, args.out, "warm-cache", **{**keys, "epochs": 1})  # fills cache and probe
    rows = []
    for every in (1, args.epochs):
        run, wall = train(args.data, args.out, f"every{every}", eval_every=every, **keys)
        train_s = sum(m["epoch_time"] for m in run.metrics)
        eval_s = sum(m.get("eval_time", 0.0) for m in run.metrics)
        row = {"eval_every": every, "wall_s": round(wall, 1), "train_s": round(train_s, 1),
               "eval_s": round(eval_s, 1), "eval_share": round(eval_s / (train_s + eval_s), 3),
               "val_accuracy": run.summary["metrics"].get("accuracy")}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    batches = []
    for size in (args.batch, args.batch * 2, args.batch * 4):
        cfg_path = run.path / "config.yaml"
        text = cfg_path.read_text()
        cfg_path.write_text(text.replace(f"eval_batch_size: {_current(text)}",
                                         f"eval_batch_size: {size}"))  # fmt: skip
        times = []
        for _ in range(3):
            start = time.perf_counter()
            viewfinder.evaluate(run, split="val", out=args.out / "eval")
            times.append(time.perf_counter() - start)
        batches.append({"eval_batch_size": size, "seconds": round(statistics.median(times), 2)})
        print(json.dumps(batches[-1]), flush=True)
    (args.out / "validation.json").write_text(json.dumps({"runs": rows, "batches": batches}))


def _current(config_text: str) -> str:
    line = next(ln for ln in config_text.splitlines() if "eval_batch_size:" in ln)
    return line.split(":", 1)[1].strip()


if __name__ == "__main__":
    main()
