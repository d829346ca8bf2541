"""``viewfinder demo``: the main job on the built-in data set, in a few minutes on a laptop CPU.

Generates the demo data (once), trains ``cnn``, ``resnet18`` and ``resnet18+attn`` from scratch
with one recipe, prints the comparison table, scores the best run on the held-out test split and
writes its submission CSV. Then the quality part: one ``iqa+caption`` model (a MOS head and a
caption head on one backbone) on the demo's distorted images and their quality comments, scored on
the test split with the challenge's two scores, its captions against the best constant caption,
and its ``img_name,mos,comments`` submission. Then the questions part: the answer classifier
(``vqa``) on the demo's questions, on the frozen backbone of the ``cnn`` just trained, with
accuracy per answer type beside the majority answer per question type, and its ``ID,answer``
submission. Everything lands in one folder (default ``./viewfinder-demo``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEMO_MODELS = ("cnn", "resnet18", "resnet18+attn")
# What the comparison table's `fit` column means here, said where the demo prints it.
WHY = {
    "overfits": "training loss fell far below validation loss: millions of parameters trained from "
    "scratch memorise 1,400 images faster than they generalise; on your own data start such "
    "models from pretrained weights, pretrained=true",
    "underfits": "training loss stayed near chance: from scratch this model needs more epochs or "
    "images than the demo's budget; pretrained=true on your own data",
}
# One recipe for all three: 7 epochs (10 until the quality part joined, 8 until the questions
# part's head grew) keep the whole demo, all three parts, under 5 min on a 2-core CPU whose speed
# drifts by 20-40 % between hours (docs/benchmarks.md, "The demo's time budget"). Measured
# (docs/benchmarks.md): at 48 px the from-scratch ResNets learn faster than at 64 or 96 px (their
# stride-4 stem leaves shapes a few pixels wide either way), and without crop augmentation; flips
# keep the label (every shape is mirror-symmetric) and lift resnet18 from 0.43 to 0.55. On 1,400
# images from scratch the ResNets still overfit, whatever the recipe within the time budget (a
# recipe search of 11 settings and 2 seeds; docs/benchmarks.md): the table's `fit` column says so,
# and the demo prints why. This is what from-scratch training looks like on small data, which is
# the point a new user should take to their own data (pretrained=true).
DEMO_RECIPE: dict[str, Any] = {
    "image_size": 48,
    "augment": "flip",
    "epochs": 7,
    "batch_size": 32,
    "learning_rate": 2e-3,
    "warmup_epochs": 0.5,
    "weight_decay": 0.05,
}


# The quality part: measured in docs/benchmarks.md ("Demo quality recipe"; "Issue 11 (2026-12-04,
# second session)"). At the images' native 64 px (stored without a crop margin: a second resize
# blurs the noise and blocking the MOS is about) a plain cnn with a mean+std pooled MOS head and
# mse+plcc (plain mse predicts the mean for many epochs). The demo's distorted shapes have no up
# or down and their comments name no side, so flips both ways keep every label, in training and at
# test (tta: the MOS of the image and its two mirrors averaged): test SRCC 0.901-0.916 over 3
# seeds, against 0.881-0.897 with left-right flips and no TTA, at the same cost per epoch. Photos
# have an up (sky, faces): on yours keep vflip off. 16 epochs keep the whole demo near its 5 min;
# greedy decoding keeps validation cheap.
QUALITY_RECIPE: dict[str, Any] = {
    "model": "cnn",
    "image_size": 64,
    "epochs": 16,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "warmup_epochs": 1,
    "loss": "mse+plcc",
    "mos_range": "0,10",
    "decoding": "greedy",
    "vflip": True,
    "tta": "hflip+vflip",
}


# The questions part (docs/benchmarks.md, "the demo's VQA recipe" and later sections): from
# scratch the answer classifier learns shapes too slowly for the demo (10 end-to-end epochs: test
# accuracy 0.54, "what shape" 0.19); the demo's own cnn classifier already knows shapes, so its
# backbone is frozen and its grid (plus each cell's colour) cached once, and only the head
# trains: the same move a user makes with pretrained=true on their data. The FiLM head reads the
# cell map in place ("is the star on the left?"). Flips with "left"/"right" swapped in the
# questions (the VQA default) stop the head memorising the 5,400 questions; batch 128 and no
# dropout make 20 epochs cost what 16 did. Against the previous recipe (16 epochs, batch 64,
# dropout 0.1, no flips), same data, one run: test accuracy 0.708 vs 0.653, yes/no 0.828 vs
# 0.793, 44 vs 45 s (docs/benchmarks.md, "Issue 12 (2026-12-04)"). image_size=96 epochs=30 (the grid
# read at 1.5x the images, so small shapes come out at the size the classifier learned shapes
# at) reaches yes/no 0.92 in ~85 s: ~40 s more than the demo's 5 minutes have.
VQA_RECIPE: dict[str, Any] = {
    "model": "cnn",
    "image_size": 64,
    "freeze_backbone": True,
    "decoder_dim": 128,
    "decoder_dropout": 0.0,
    "epochs": 20,
    "warmup_epochs": 2,
    "batch_size": 128,
    "learning_rate": 4e-3,
    "min_count": 1,
}


def explain_fit(fit: str) -> str | None:
    """Why a row's ``fit`` verdict (``overfits (1.6x ...)``, ``underfits; still improving``)."""
    verdict = fit.split()[0].rstrip(";") if fit else ""
    return WHY.get(verdict)


def run_demo(
    directory: str | Path = "viewfinder-demo",
    *,
    epochs: int | None = None,
    progress: bool = True,
    models: tuple[str, ...] = DEMO_MODELS,
    count: int = 2000,
    size: int = 64,
    quality: bool = True,
    questions: bool = True,
) -> Any:
    """Run the demo; returns the comparison table (also written to ``DIR/comparison.md``)."""
    from rich.console import Console

    from viewfinder import api
    from viewfinder.data.demo import demo_is_current, ensure_demo
    from viewfinder.metrics.captions import warm_up_meteor

    console = Console()
    root = Path(directory)
    console.print(f"[bold]viewfinder demo[/]: data in {root / 'data'} (generated once)")
    if quality and not demo_is_current(root / "data", count=count, size=size):
        # METEOR's Java process spends ~7 s of one core loading its tables. Started here, it
        # loads on the core that data generation (one process) leaves idle, instead of slowing
        # the quality part's first epoch (measured: 10.7 s vs 3.5 s for the next ones). When the
        # data is already there it is left to the quality part, so it cannot slow down the
        # classification runs whose s/epoch the comparison table reports.
        warm_up_meteor()
    paths = ensure_demo(root / "data", count=count, size=size)
    recipe = dict(DEMO_RECIPE, epochs=epochs or DEMO_RECIPE["epochs"])
    runs, table = api.sweep(
        "classify",
        grid={"model": list(models)},
        name="demo",
        progress=progress,
        data=str(paths.classify),
        output_dir=str(root / "runs"),
        **recipe,
    )
    table.write(root)
    best = runs[[r.path.name for r in runs].index(table.rows[0]["run"])]
    test = api.evaluate(best, split="test")
    submission = api.predict(best, out=root / "submission.csv")
    print(f"\n{table.markdown()}\n")  # plain print: rich would wrap the wide table
    console.print(
        f"best: {best.path.name}, test accuracy {test['accuracy']:.3f}, "
        f"macro F1 {test['macro_f1']:.3f} ({best.path / 'eval' / 'test'})"
    )
    for row in table.rows:
        reason = explain_fit(str(row.get("fit") or ""))
        if reason:
            console.print(f"{row['run']}: {row['fit']} ({reason})")
    console.print(f"table: {root / 'comparison.md'}; runs: {runs[0].path.parent}")
    console.print(f"submission: {submission}")
    if quality:
        run_quality_demo(paths.iqa, root, epochs=epochs, progress=progress, console=console)
    cnn = [r for r in runs if r.summary.get("model") == "cnn"]
    if questions:
        run_vqa_demo(paths.vqa, root, weights=cnn[0].path / "best.safetensors" if cnn else None,
                     epochs=epochs, progress=progress, console=console)  # fmt: skip
    sweep_dir = runs[0].path.parent.parent
    print(f"\nnext: viewfinder report {sweep_dir}   (an HTML report; every run: {root / 'runs'})")
    print(f"      viewfinder serve {best.path}   (try the best model in a browser)")
    return table


def run_vqa_demo(
    data: Path, root: Path, *, weights: Path | None, epochs: int | None, progress: bool,
    console: Any,
) -> dict[str, Any]:  # fmt: skip
    """Train the answer classifier on the demo's questions (on the demo ``cnn`` classifier's
    frozen backbone when there is one); print accuracy per answer type on the test split beside
    the majority-answer-per-question-type baseline."""
    from viewfinder import api

    console.print("\n[bold]visual question answering[/]: image + question -> one of the "
                  "training answers")  # fmt: skip
    recipe = dict(VQA_RECIPE, epochs=epochs or VQA_RECIPE["epochs"])
    if weights is None:  # no demo cnn to start from: end to end from scratch
        recipe.update(freeze_backbone=False)
    else:
        recipe.update(weights=str(weights))
    run = api.train("vqa", data=str(data), output_dir=str(root / "runs"), name="questions",
                    progress=progress, **recipe)  # fmt: skip
    test = api.evaluate(run, split="test")
    submission = api.predict(run, out=root / "vqa_submission.csv")
    report = run.path / "eval" / "test" / "report.txt"
    print(report.read_text())
    console.print(
        f"test accuracy {test['accuracy']:.3f} (majority answer per question type: "
        f"{test.get('baseline_accuracy', float('nan')):.3f}); {report.parent}"
    )
    console.print(f"submission: {submission}")
    return test


def run_quality_demo(
    data: Path, root: Path, *, epochs: int | None, progress: bool, console: Any
) -> dict[str, Any]:
    """Train ``iqa+caption`` on the demo's quality images; print both challenge scores on the
    test split and the caption score of the best single training caption (the floor)."""
    from viewfinder import api
    from viewfinder.data.quality import read_quality_split
    from viewfinder.metrics.captions import constant_caption_floor

    console.print("\n[bold]quality + captions[/]: one backbone, a MOS head and a caption head")
    recipe = dict(QUALITY_RECIPE, epochs=epochs or QUALITY_RECIPE["epochs"])
    run = api.train("iqa+caption", data=str(data), output_dir=str(root / "runs"),
                    name="quality", progress=progress, **recipe)  # fmt: skip
    test = api.evaluate(run, split="test")
    splits = read_quality_split(run.path / "split.csv")
    references = {r.id: list(r.comments) for r in splits["test"] if r.comments}
    candidates = [c for r in splits["train"] for c in r.comments]
    best, floor = constant_caption_floor(candidates, references, most=100)  # comments repeat
    submission = api.predict(run, out=root / "quality_submission.csv")
    key = "caption_score" if test.get("caption_score") is not None else "cider_d"
    ratio = test[key] / floor[key] if floor[key] else float("inf")
    tta = run.config.data.tta  # what api.evaluate averaged over
    views = f"; MOS averaged over the test-time views {tta}" if tta != "none" else ""
    console.print(
        f"test MOS score {test['mos_score']:.3f} (SRCC {test['srcc']:.3f}, PLCC "
        f"{test['plcc']:.3f}{views}); "
        f"{key.replace('_', ' ')} {test[key]:.3f}, {ratio:.1f}x the best "
        f'single caption\'s {floor[key]:.3f} ("{best}"); {run.path / "eval" / "test"}'
    )
    console.print(f"submission: {submission}")
    return {"test": test, "floor": floor, "floor_caption": best}
