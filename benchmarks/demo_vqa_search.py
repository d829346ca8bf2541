"""The demo's VQA recipe (issue 12): answer-classifier recipes on the demo questions, side by side.

Trains the demo's ``cnn`` classifier once (the demo recipe, 48 px), then the answer classifier
from scratch end to end, on a frozen random ``cnn``, and on the classifier's frozen backbone at
several sizes and fusions; prints test accuracy per answer type and per question type beside the
majority-answer-per-question-type baseline, seconds per epoch and total seconds.

    python benchmarks/demo_vqa_search.py OUT [--count 2000] [--skip NAME]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import viewfinder
from viewfinder.data.demo import ensure_demo
from viewfinder.demo import DEMO_RECIPE, VQA_RECIPE

BASE = {"model": "cnn", "batch_size": 64, "learning_rate": 2e-3, "min_count": 1}


def recipes(weights: str) -> dict[str, dict[str, Any]]:
    frozen = {**BASE, "freeze_backbone": True, "weights": weights}
    return {
        "scratch, end to end, 64 px, 10 epochs": {**BASE, "image_size": 64, "epochs": 10,
                                                  "batch_size": 32},
        "frozen random cnn, 64 px, 25 epochs": {**BASE, "freeze_backbone": True,
                                               "image_size": 64, "epochs": 25},
        "demo classifier, end to end, 64 px, lr 5e-4, 8 epochs": {
            **BASE, "weights": weights, "image_size": 64, "epochs": 8, "batch_size": 32,
            "learning_rate": 5e-4},
        "demo recipe (frozen demo classifier, 64 px, 128-wide head)": dict(VQA_RECIPE,
                                                                          weights=weights),
        "frozen demo classifier, 64 px, 256-wide head": dict(VQA_RECIPE, weights=weights,
                                                              decoder_dim=256),
        "frozen demo classifier, 96 px, 15 epochs": {**frozen, "image_size": 96, "epochs": 15},
        "frozen demo classifier, 128 px, 25 epochs": {**frozen, "image_size": 128, "epochs": 25},
        "frozen demo classifier, 128 px, attention": {**frozen, "image_size": 128, "epochs": 20,
                                                      "fusion": "attention"},
    }  # fmt: skip


def question_types(run_path: Path) -> dict[str, float]:
    with open(run_path / "eval" / "test" / "per_question_type.csv", newline="") as f:
        return {r["question_type"]: round(float(r["accuracy"]), 3) for r in csv.DictReader(f)}


def measure(name: str, keys: dict[str, Any], data: Path, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    slug = "".join(c if c.isalnum() else "-" for c in name)[:60]
    run = viewfinder.train("vqa", data=str(data), output_dir=str(out / "runs"), name=slug,
                           progress=False, **keys)  # fmt: skip
    test = run.evaluate(split="test")
    records = [json.loads(line) for line in open(run.path / "metrics.jsonl")]
    steady = [r["epoch_time"] for r in records[1:]] or [records[0]["epoch_time"]]
    return {"recipe": name, "total_s": round(time.perf_counter() - start, 1),
            "s_per_epoch": round(sum(steady) / len(steady), 2), "run": str(run.path),
            **{k: round(v, 3) for k, v in test.items() if isinstance(v, float)},
            "question_types": question_types(run.path)}  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    types = list(rows[0]["question_types"])
    head = ["recipe", "test acc", "yes/no", "number", "other", *types, "s/epoch", "total s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = rows[0]
    lines.append(
        f"| majority answer per question type | {base['baseline_accuracy']:.3f} | "
        f"{base['baseline_accuracy_yes_no']:.3f} | {base['baseline_accuracy_number']:.3f}"
        f" | {base['baseline_accuracy_other']:.3f} |" + " |" * (len(types) + 2)
    )
    for r in rows:
        cells = [r["recipe"], r["accuracy"], r["accuracy_yes_no"], r["accuracy_number"],
                 r["accuracy_other"], *(r["question_types"].get(t, "") for t in types),
                 r["s_per_epoch"], r["total_s"]]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=2000, help="demo images (the demo's 2000)")
    parser.add_argument("--skip", action="append", default=[], help="skip recipes naming this")
    args = parser.parse_args()
    paths = ensure_demo(args.out / "data", count=args.count, size=64)
    start = time.perf_counter()
    classifier = viewfinder.train("classify", data=str(paths.classify), model="cnn",
                                  output_dir=str(args.out / "runs"), name="demo-cnn",
                                  progress=False, **DEMO_RECIPE)  # fmt: skip
    print(json.dumps({"demo cnn classifier s": round(time.perf_counter() - start, 1),
                      "accuracy": classifier.summary["metrics"]["accuracy"]}))  # fmt: skip
    weights = str(classifier.path / "best.safetensors")
    rows = []
    for name, keys in recipes(weights).items():
        if any(word in name for word in args.skip):
            continue
        rows.append(measure(name, keys, paths.vqa, args.out))
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "demo_vqa.json").write_text(json.dumps(rows, indent=1))
    print("\n" + table(rows))


if __name__ == "__main__":
    main()
