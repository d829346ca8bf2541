"""The demo's VQA recipe (issue 12): answer-classifier recipes on the demo questions, side by side.

Trains the demo's ``cnn`` classifier once (the demo recipe, 48 px), then the answer classifier
from scratch end to end, on a frozen random ``cnn``, and on the classifier's frozen backbone at
several sizes and fusions; prints test accuracy per answer type and per question type beside the
majority-answer-per-question-type baseline, seconds per epoch and total seconds.

    python benchmarks/demo_vqa_search.py OUT [--count 2000] [--skip NAME] [--ablation | --flips]

Without ``--ablation`` a last row fine-tunes the demo recipe's run end to end (backbone and head
from its checkpoint: the head is loaded too, so the second stage starts where the first ended).

``--flips`` runs the demo recipe (flips with "left"/"right" swapped in the questions, batch 128)
beside the same without flips, the previous demo recipe with and without flips, and the grid
read at 96 px (20 epochs with and without flips; 30 epochs, two seeds); the two-stage row
follows.

``--ablation`` runs the demo recipe beside the same recipe with one piece put back as it was
before the FiLM read-out change: the previous head (one FiLM block, colour and position
normalised with the features, mean + max pooling), the previous batches (each image's questions
together; frozen runs now shuffle questions freely), and the previous recipe as a whole (both,
15 epochs without warm-up). These variants exist only here: they patch ``models.vqa.Fusion`` and
``VQATask.train_sampler`` for their own row, so every row runs the same pipeline in one process.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

import viewfinder
import viewfinder.models.vqa as vqa_models
from viewfinder.data.demo import ensure_demo
from viewfinder.data.questions import ImageGroupedSampler
from viewfinder.demo import DEMO_RECIPE, VQA_RECIPE

BASE = {"model": "cnn", "batch_size": 64, "learning_rate": 2e-3, "min_count": 1}
STAGE2 = ("two stages: the demo recipe's run, then end to end from its checkpoint, lr 3e-4, "
          "6 epochs (total s: both stages)")  # fmt: skip


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


class PreviousFilm(vqa_models.Fusion):
    """The FiLM fusion before the in-place read-out: one block, one LayerNorm over every grid
    channel (colour and x, y included), then mean and max pooling over the cells."""

    def __init__(self, kind: str, image_dim: int, dim: int, dropout: float, *a: Any, **k: Any):
        super().__init__(kind, image_dim, dim, dropout)
        if kind == "film":
            self.cell = nn.Linear(image_dim, dim)
            self.gamma_beta = nn.Linear(dim, 2 * dim)
            self.cell2 = nn.Linear(dim, dim)
            self.out = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())
            del self.blocks

    def _film(self, grid, image_of, question, shape):  # noqa: ANN001, ARG002 (as the parent)
        gamma, beta = self.gamma_beta(question)[:, None].chunk(2, dim=-1)
        cells = torch.relu(self.cell(grid)[image_of] * (1 + gamma) + beta)
        cells = torch.relu(self.cell2(cells)) + cells
        pooled = torch.cat([cells.mean(dim=1), cells.amax(dim=1)], dim=1)
        return self.out(self.drop(pooled))


class JointNormFilm(vqa_models.Fusion):
    """Today's FiLM head, but colour and x, y normalised together with the backbone channels."""

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **dict(k, extra=0))


@contextlib.contextmanager
def previous(head: bool | str, grouped: bool) -> Iterator[None]:
    """Put the previous head (``"norm"``: only its joint LayerNorm) and/or the previous
    image-grouped batches back for one row."""
    from viewfinder.tasks.vqa import VQATask

    fusion, sampler = vqa_models.Fusion, VQATask.train_sampler
    if head:
        vqa_models.Fusion = JointNormFilm if head == "norm" else PreviousFilm
    if grouped:
        VQATask.train_sampler = lambda self, d: ImageGroupedSampler(
            d.image_of, seed=self.cfg.train.seed
        )
    try:
        yield
    finally:
        vqa_models.Fusion, VQATask.train_sampler = fusion, sampler


def ablation(weights: str) -> dict[str, tuple[dict[str, Any], bool | str, bool]]:
    """name -> (recipe keys, previous head, previous batches)."""
    demo = dict(VQA_RECIPE, weights=weights)
    old = dict(demo, epochs=15, warmup_epochs=0)
    return {
        "demo recipe (FiLM x2, in-place read-out, questions shuffled)": (demo, False, False),
        "the same, 3 FiLM blocks": (dict(demo, fusion_layers=3), False, False),
        "the same, previous head (1 block, joint norm, mean + max)": (demo, True, False),
        "the same, colour and position normalised with the features": (demo, "norm", False),
        "the same, previous batches (an image's questions together)": (demo, False, True),
        "the same, 20 epochs, warm-up 3": (dict(demo, epochs=20, warmup_epochs=3), False, False),
        "the same, 30 epochs, warm-up 5": (dict(demo, epochs=30, warmup_epochs=5), False, False),
        "previous demo recipe (previous head and batches, 15 epochs)": (old, True, True),
    }  # fmt: skip


def flips(weights: str) -> dict[str, tuple[dict[str, Any], bool | str, bool]]:
    """``--flips``: the demo recipe (flips, batch 128) beside what each change gave, and the
    grid read at 96 px."""
    demo = dict(VQA_RECIPE, weights=weights)
    no_flips = {"hflip": False, "feature_flip": False}
    before = dict(demo, epochs=16, batch_size=64, learning_rate=2e-3, decoder_dropout=0.1)
    at96 = dict(demo, image_size=96, epochs=30, warmup_epochs=3)
    return {
        "demo recipe (flips, 64 px, 20 epochs, batch 128, lr 4e-3, no dropout)": (demo, False,
                                                                                  False),
        "the same, no flips": (dict(demo, **no_flips), False, False),
        "previous demo recipe (16 epochs, batch 64, lr 2e-3, dropout 0.1), no flips": (
            dict(before, **no_flips), False, False),
        "previous demo recipe, flips": (before, False, False),
        "demo recipe at 96 px": (dict(demo, image_size=96), False, False),
        "demo recipe at 96 px, no flips": (dict(demo, image_size=96, **no_flips), False, False),
        "demo recipe at 96 px, 30 epochs (3 warm-up)": (at96, False, False),
        "the same, seed 1 (another validation split)": (dict(at96, seed=1), False, False),
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
    parser.add_argument("--ablation", action="store_true", help="the read-out ablation rows")
    parser.add_argument("--flips", action="store_true", help="flips, 96 px and batch 128 rows")
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
    plan = ablation(weights) if args.ablation else flips(weights) if args.flips else {
        name: (keys, False, False) for name, keys in recipes(weights).items()}  # fmt: skip
    for name, (keys, head, grouped) in plan.items():
        if any(word in name for word in args.skip):
            continue
        with previous(head, grouped):
            rows.append(measure(name, keys, paths.vqa, args.out))
        print(json.dumps(rows[-1]), flush=True)
    demo = [r for r in rows if r["recipe"].startswith("demo recipe")]
    if demo and not args.ablation and "stage" not in args.skip:
        # Two stages: the demo recipe's run (head trained on the frozen grid), then the whole
        # model end to end from that run's checkpoint (backbone and head, `weights=`).
        stage2 = dict(VQA_RECIPE, weights=f"{demo[0]['run']}/best.safetensors",
                      freeze_backbone=False, learning_rate=3e-4, epochs=6, warmup_epochs=1,
                      batch_size=32)  # fmt: skip
        rows.append(measure(STAGE2, stage2, paths.vqa, args.out))
        rows[-1]["total_s"] = round(rows[-1]["total_s"] + demo[0]["total_s"], 1)
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "demo_vqa.json").write_text(json.dumps(rows, indent=1))
    print("\n" + table(rows))


if __name__ == "__main__":
    main()
