"""Numerics benchmark (issue 15): the precision probe against the rule, per model, one run.

    python benchmarks/numerics.py [--size 112] [--batch 32] [--rounds 8] [--out /tmp/vf-numerics]
                                  [--models resnet18,tf_efficientnet_lite0,...]

For each model, as ``viewfinder train classify`` builds it (10 classes, channels_last by rule):
1. the rule's choice (``choose_numerics``, what ``precision_probe=false`` uses);
2. the probe's figures and choice (``measure_numerics``: what a run measures once per machine),
   and how long the probe took;
3. the check: full training steps (forward, backward, fused AdamW step) in fp32 and in bf16,
   ``--rounds`` rounds alternating the two after a warm-up, medians in images/s. "faster" is what
   the probe's own rule (``pick_precision``: bf16 only when > 5 % faster) picks from the check's
   figures; the probe is right when it picked that one.
ViTs have a fixed input size: they run at their own (224 px). Prints a JSON line per model and a
Markdown table; writes ``<out>/numerics.json``. Say which CPU a figure came from (printed first).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

DEFAULT_MODELS = (
    "resnet18,resnet50,tf_efficientnet_lite0,efficientnet_b0,mobilenetv3_large_100,"
    "convnext_atto,convnext_tiny,vit_tiny_patch16_224"
)


def build(name: str, size: int, batch: int, cache: Path):
    from viewfinder.config import build_config
    from viewfinder.tasks.classify import ClassifyTask

    if "vit_" in name or "deit_" in name:
        size = int(name.rsplit("_", 1)[-1])  # fixed position embeddings
    overrides = {"model": name, "image_size": size, "batch_size": batch, "cache_dir": str(cache)}
    cfg = build_config("classify", overrides=overrides)
    task = ClassifyTask(cfg, cache / "run")
    task.classes = [f"c{i}" for i in range(10)]
    model, _ = task.build_model()
    return task, model, cfg


def check(task, model, cfg, channels_last: bool, rounds: int) -> dict[str, float]:
    """Median images/s of full training steps, fp32 and bf16 alternating."""
    from viewfinder.training.optim import build_optimizer
    from viewfinder.training.precision import Numerics, autocast, prepare_batch

    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = build_optimizer(model, cfg.train)
    batch = prepare_batch(task.example_batch(cfg.train.batch_size), channels_last)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}

    def step(precision: str) -> float:
        start = time.perf_counter()
        with autocast(torch.device("cpu"), Numerics(precision, channels_last, "")):
            loss = task.step(model, batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    for precision in times:
        step(precision), step(precision)  # warm-up
    for _ in range(rounds):
        for precision in times:
            times[precision].append(step(precision))
    return {p: cfg.train.batch_size / statistics.median(t) for p, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("/tmp/vf-numerics"))
    args = parser.parse_args()
    from viewfinder.models.classifier import backbone_of
    from viewfinder.training.precision import (
        choose_numerics,
        cpu_name,
        cpu_supports_bf16,
        measure_numerics,
        pick_precision,
    )

    print(f"CPU: {cpu_name()}; native bf16: {cpu_supports_bf16()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models.split(","):
        task, model, cfg = build(name, args.size, args.batch, args.out)
        rule = choose_numerics(backbone_of(model), cfg.train, cuda=False)
        start = time.perf_counter()
        probe = measure_numerics(model, task, cfg, rule.channels_last, ("fp32", "bf16"))
        probe_seconds = time.perf_counter() - start
        measured = check(task, model, cfg, rule.channels_last, args.rounds)
        picked, faster = pick_precision(probe), pick_precision(measured)
        row = {
            "model": name, "image_size": cfg.image_size, "batch": args.batch,
            "rule": rule.precision, "probe": picked, "faster": faster,
            "probe_img_s": probe, "probe_seconds": round(probe_seconds, 1),
            "check_img_s": {k: round(v, 1) for k, v in measured.items()},
            "probe_over_rule": round(measured[picked] / measured[rule.precision], 3),
        }  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    (args.out / "numerics.json").write_text(json.dumps(rows, indent=1))
    print("\n| model | px | rule | probe (img/s fp32 / bf16) | probe s | check fp32 | check bf16 |"
          " probe right | probe / rule speed |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        p, c = r["probe_img_s"], r["check_img_s"]
        print(
            f"| {r['model']} | {r['image_size']} | {r['rule']} | {r['probe']} ({p['fp32']:.1f} / "
            f"{p['bf16']:.1f}) | {r['probe_seconds']} | {c['fp32']} | {c['bf16']} | "
            f"{'yes' if r['probe'] == r['faster'] else 'no'} | {r['probe_over_rule']:.2f}x |"
        )


if __name__ == "__main__":
    main()
