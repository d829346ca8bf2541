"""Long-tail recipe comparison (issue 4): same backbone and epochs, one run, on real long tails.

    python benchmarks/longtail.py [--data elpv|digits|both] [--out /tmp/vf-longtail] [--epochs N]
                                  [--seeds 0,1,2]

Recipes (each one config switch in viewfinder):
- ``plain_ce``: uniform sampling, cross-entropy;
- ``study``: the defect-competition study's recipe, WeightedRandomSampler + focal loss;
- ``balanced_softmax``: Ren et al. 2020;
- ``posthoc_la``: cross-entropy, then post-hoc logit adjustment with tau tuned on validation;
- ``class_bias``: cross-entropy, then logit adjustment plus per-class bias offsets tuned on
  validation for macro F1 (``posthoc=class_bias``);
- ``study_class_bias``: the study's recipe, then ``posthoc=class_bias`` (can move back to the head);
- ``crt``: cross-entropy, then classifier re-training on frozen features with class-balanced
  sampling (Kang et al. 2020).
The post-hoc recipes start from a trained run of the same seed (a copy of its folder,
resumed with ``posthoc=...``, as ``viewfinder train --resume RUN posthoc=logit_adjust`` does for
a user). Training with ``posthoc=`` set gives the same model, since runs are deterministic per
seed, so this only saves the retraining. ``--reuse`` keeps finished runs of an earlier call with
the same ``--out`` (a long comparison can be continued). Scores on the test split: weighted F1,
macro F1, balanced accuracy, head/medium/tail accuracy.
With several seeds every recipe is trained once per seed (same data split) and the table shows
mean +- standard deviation. Writes ``<out>/longtail.json`` and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import longtail_data  # noqa: E402

RECIPES: dict[str, dict[str, Any]] = {
    "plain_ce": {},
    "study": {"sampler": "inverse", "loss": "focal"},
    "balanced_softmax": {"loss": "balanced_softmax"},
}
# post-hoc recipe -> (the trained recipe it starts from, posthoc method)
POSTHOC = {
    "posthoc_la": ("plain_ce", "logit_adjust"),
    "class_bias": ("plain_ce", "class_bias"),
    "study_class_bias": ("study", "class_bias"),
}
CRT_STAGE2 = {"freeze_backbone": True, "reinit_head": True, "sampler": "inverse"}
SETTINGS = {
    "elpv": {
        "model": "resnet18",
        "image_size": 96,
        "batch_size": 32,
        "learning_rate": 2e-3,
        "augment": "flip",  # whole cells: a crop can cut the crack that sets the label
        "vflip": True,
    },
    "digits": {
        "model": "cnn",
        "image_size": 32,
        "batch_size": 32,
        "learning_rate": 2e-3,
        "augment": "none",
    },
}
REUSE = False  # --reuse: keep finished runs of an earlier call with the same --out
SCORES = (
    "weighted_f1",
    "macro_f1",
    "balanced_accuracy",
    "accuracy",
    "head_accuracy",
    "medium_accuracy",
    "tail_accuracy",
)


def train_recipe(
    data: Path, out: Path, name: str, recipe: dict, base: dict, epochs: int, seed: int
) -> Any:
    import viewfinder

    finished = out / "runs" / "classify" / f"{name}-seed{seed}"
    if REUSE and (finished / "summary.json").is_file():
        return viewfinder.load_run(finished)
    return viewfinder.train(
        "classify",
        data=str(data),
        name=f"{name}-seed{seed}",
        output_dir=str(out / "runs"),
        epochs=epochs,
        seed=seed,
        monitor="macro_f1",
        warmup_epochs=0.5,
        progress=False,
        **base,
        **recipe,
    )


def posthoc_recipe(source: Any, name: str, method: str) -> Any:
    """A trained run's folder copied to ``name`` and resumed with ``posthoc=method``."""
    import viewfinder

    target = source.path.parent / name
    if REUSE and (target / "posthoc.json").is_file():
        return viewfinder.load_run(target)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source.path, target)
    return viewfinder.resume(target, progress=False, posthoc=method)


def score(run: Any) -> dict[str, float]:
    import viewfinder

    result = viewfinder.evaluate(run, split="test")
    return {k: round(float(result[k]), 4) for k in SCORES if k in result}


def run_dataset(name: str, data: Path, out: Path, epochs: int, seed: int) -> list[dict]:
    base = SETTINGS[name]
    rows, trained = [], {}
    for recipe, overrides in RECIPES.items():
        run = train_recipe(data, out, f"{name}-{recipe}", overrides, base, epochs, seed)
        rows.append({"data": name, "recipe": recipe, "seed": seed, **score(run)})
        print(json.dumps(rows[-1]), flush=True)
        trained[recipe] = run
    for recipe, (source, method) in POSTHOC.items():
        run = posthoc_recipe(trained[source], f"{name}-{recipe}-seed{seed}", method)
        rows.append({"data": name, "recipe": recipe, "seed": seed, **score(run)})
        print(json.dumps(rows[-1]), flush=True)
    crt_epochs = max(2, epochs // 3)
    stage2 = {**CRT_STAGE2, "weights": str(trained["plain_ce"].path / "best.safetensors")}
    crt = train_recipe(data, out, f"{name}-crt", stage2, base, crt_epochs, seed)
    rows.append({"data": name, "recipe": "crt", "seed": seed, **score(crt)})
    print(json.dumps(rows[-1]), flush=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """One row per (data, recipe): mean and standard deviation over seeds."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["data"], row["recipe"]), []).append(row)
    summary = []
    for (data, recipe), group in groups.items():
        entry: dict[str, Any] = {"data": data, "recipe": recipe, "seeds": len(group)}
        for key in SCORES:
            values = [r[key] for r in group if key in r]
            if values:
                entry[key] = statistics.mean(values)
                entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def versus_study(rows: list[dict]) -> list[dict]:
    """Each recipe minus the study's recipe, paired by (data, seed): the target's comparison."""
    study = {(r["data"], r["seed"]): r for r in rows if r["recipe"] == "study"}
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in rows:
        base = study.get((row["data"], row["seed"]))
        if base is not None and row["recipe"] != "study":
            diff = (row["macro_f1"] - base["macro_f1"], row["weighted_f1"] - base["weighted_f1"])
            groups.setdefault((row["data"], row["recipe"]), []).append(diff)
    return [
        {
            "data": data,
            "recipe": recipe,
            "seeds": len(diffs),
            "macro_f1_gain": statistics.mean(d[0] for d in diffs),
            "macro_f1_gain_min": min(d[0] for d in diffs),
            "wins": sum(d[0] > 0 for d in diffs),
            "weighted_f1_gain": statistics.mean(d[1] for d in diffs),
        }
        for (data, recipe), diffs in groups.items()
    ]


def versus_markdown(gains: list[dict]) -> str:
    lines = [
        "| data | recipe vs study | macro F1 gain | worst seed | seeds won | weighted F1 gain |",
        "|---|---|---|---|---|---|",
    ]
    for g in gains:
        lines.append(
            f"| {g['data']} | {g['recipe']} | {100 * g['macro_f1_gain']:+.1f} pts "
            f"| {100 * g['macro_f1_gain_min']:+.1f} pts | {g['wins']}/{g['seeds']} "
            f"| {100 * g['weighted_f1_gain']:+.1f} pts |"
        )
    return "\n".join(lines)


def markdown(summary: list[dict]) -> str:
    lines = ["| data | recipe | " + " | ".join(SCORES) + " |", "|---|---|" + "---|" * len(SCORES)]
    for row in summary:
        cells = []
        for key in SCORES:
            if key not in row:
                cells.append("-")
            elif row["seeds"] > 1:
                cells.append(f"{row[key]:.3f} ± {row[key + '_std']:.3f}")
            else:
                cells.append(f"{row[key]:.3f}")
        lines.append(f"| {row['data']} | {row['recipe']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="both", choices=("elpv", "digits", "both"))
    parser.add_argument("--out", default="/tmp/vf-longtail")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--reuse", action="store_true", help="keep finished runs in --out")
    args = parser.parse_args(argv)
    global REUSE
    REUSE = args.reuse
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    sets = {
        "elpv": lambda: longtail_data.export_elpv(out / "elpv"),
        "digits": lambda: longtail_data.export_longtail_digits(out / "digits", ratio=50),
    }
    rows: list[dict] = []
    for name in ("elpv", "digits") if args.data == "both" else (args.data,):
        data = sets[name]()
        for seed in seeds:
            rows += run_dataset(name, data, out, args.epochs, seed)
    summary, gains = summarise(rows), versus_study(rows)
    content = {"runs": rows, "summary": summary, "versus_study": gains}
    (out / "longtail.json").write_text(json.dumps(content, indent=2))
    table = markdown(summary) + "\n\n" + versus_markdown(gains)
    (out / "longtail.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
