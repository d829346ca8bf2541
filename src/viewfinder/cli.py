"""The ``viewfinder`` (alias ``vf``) command line: a thin layer over ``viewfinder.api``.

Heavy libraries (torch, timm, accelerate) are imported inside commands, so ``--help`` is instant.
Errors a user can cause print one line and exit with status 2; an interrupted training run exits
with 130 after saving a checkpoint it can resume from.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from viewfinder import cli_share
from viewfinder.errors import UserError

app = typer.Typer(
    help="Train, compare, evaluate and submit image models on your own data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(
    help="Data utilities: generate the built-in demo data set.", no_args_is_help=True
)
config_app = typer.Typer(help="Inspect configuration keys.", no_args_is_help=True)
cache_app = typer.Typer(
    help="The decoded-image and feature cache (default ~/.cache/viewfinder).", no_args_is_help=True
)
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")
app.add_typer(cache_app, name="cache")
CACHE_DIR_HELP = "Cache folder (default: $VIEWFINDER_CACHE_DIR or ~/.cache/viewfinder)."

OVERRIDES_HELP = "key=value settings, e.g. data=fruits/ model=resnet50 epochs=10 batch_size=32"


def _console() -> Any:
    from rich.console import Console

    return Console()


def _print_fold_set(fold_set: Any) -> None:
    info = fold_set.info
    console = _console()
    status = info.get("status")
    monitor = info["config"]["train"]["monitor"]
    line = f"[bold]{fold_set.path.name}[/]: {info['folds']}-fold set {status}"
    if status == "completed":
        mean, std = info["mean"].get(monitor), info["std"].get(monitor)
        if mean is not None:
            line += f", {monitor}={mean:.4f} ± {std:.4f}"
        if monitor in info["oof"]:
            line += f", out-of-fold {monitor}={info['oof'][monitor]:.4f}"
    console.print(f"{line} -> {fold_set.path}")
    if status != "completed":
        console.print(f"resume with: viewfinder train --resume {fold_set.path}")
        raise typer.Exit(130)


def _print_run(run: Any) -> None:
    if hasattr(run, "info"):  # a FoldSet
        _print_fold_set(run)
        return
    s = run.summary
    console = _console()
    status = s.get("status", "unknown")
    console.print(
        f"[bold]{s.get('name')}[/]: {status}, best {s.get('monitor')}="
        f"{s.get('best_value') if s.get('best_value') is None else round(s['best_value'], 4)}"
        f" at epoch {s.get('best_epoch')} -> {run.path}"
    )
    if s.get("skipped_images"):
        from viewfinder.data.images import skipped_notice

        data = s.get("data", {})
        found = sum(data.get("split_sizes", {}).values()) + data.get("skipped_images", 0)
        line = skipped_notice(
            s["skipped_images"],
            found,
            run.path / "skipped_images.csv",
            effect="trained without them",
        )
        console.print(f"[yellow]{line}[/]", highlight=False)
    if status == "interrupted":
        console.print(f"resume with: viewfinder train --resume {run.path}")
        raise typer.Exit(130)


@app.command()
def train(
    task: str = typer.Argument(
        None, help="Task to train: classify, iqa, caption, iqa+caption or vqa."
    ),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    config: Path = typer.Option(None, "--config", "-c", help="YAML config file."),
    resume: Path = typer.Option(
        None, "--resume", help="Run (or fold-set) folder to continue from its checkpoint."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a model: viewfinder train classify data=DIR model=resnet50 epochs=10.

    folds=5 trains every fold of a stratified 5-fold split into one fold-set folder.
    """
    from viewfinder import api
    from viewfinder.config import parse_overrides

    items = list(overrides or [])
    if resume is not None:
        if task and "=" in task:
            items.insert(0, task)
        run = api.resume(resume, progress=not quiet, **parse_overrides(items))
    else:
        if not task:
            raise UserError("name a task (e.g. `viewfinder train classify data=DIR`)")
        run = api.train(task, config, progress=not quiet, **parse_overrides(items))
    _print_run(run)


RUNS_HELP = "Run folders and/or fold-set folders; several are averaged (an ensemble)."
TTA_HELP = "Test-time views, e.g. hflip or hflip+vflip+scale; none turns off the runs' data.tta."
WEIGHTS_HELP = "Ensemble weights, one per RUN, e.g. 1,2 (default: equal)."


@app.command()
def evaluate(
    runs: list[Path] = typer.Argument(..., help=RUNS_HELP, metavar="RUN..."),
    data: str = typer.Option(None, "--data", help="Other labelled data to score (default: split)."),
    split: str = typer.Option("val", "--split", help="val or test."),
    tta: str = typer.Option(None, "--tta", help=TTA_HELP),
    weights: str = typer.Option(None, "--weights", help=WEIGHTS_HELP),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for the report files."),
) -> None:
    """Score a run's best checkpoint: metrics, per-class report, confusion matrix PNG.

    A fold set on val is scored out-of-fold; several runs are scored as their ensemble.
    """
    from viewfinder import api

    results = api.evaluate(runs, data=data, split=split, tta=tta, weights=weights, out=out)
    out_dir = api.evaluation_dir(runs, data=data, split=split, out=out)
    report = out_dir / "report.txt"
    console = _console()
    if report.is_file():
        console.print(report.read_text())
    challenge = _challenge_scores(results)
    if challenge:
        console.print(challenge)
    console.print(
        "  ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}=n/a"
            for k, v in results.items()
            if isinstance(v, float) or v is None
        )
    )
    console.print(f"written to {out_dir}")


def _clamped(name: str, value: float) -> str:
    """A correlation as the MOS score counts it: a negative one counts as 0, and says so."""
    return f"{name} {value:.4f}" if value >= 0 else f"max(0, {name} {value:.4f})"


def _challenge_scores(results: dict) -> str:
    """The camera-quality challenge's two scores in words, when the task has them."""
    parts = []
    if isinstance(results.get("mos_score"), float):
        plcc, srcc = (_clamped(name, results[name.lower()]) for name in ("PLCC", "SRCC"))
        parts.append(f"MOS score {results['mos_score']:.4f} = ({plcc} + {srcc}) / 2")
    if "caption_score" in results:
        score = results["caption_score"]
        parts.append(f"caption score {score:.4f} = 4 CIDEr-D + 3 METEOR + (BLEU-4 + BLEU-3) "
                     "+ ROUGE-L" if isinstance(score, float) else
                     "caption score n/a: METEOR needs Java (install Java 17)")  # fmt: skip
    return "[bold]" + "; ".join(parts) + "[/]" if parts else ""


@app.command()
def predict(
    runs: list[Path] = typer.Argument(..., help=RUNS_HELP, metavar="RUN..."),
    data: str = typer.Option(None, "--data", help="Images to predict (default: the test split)."),
    out: Path = typer.Option(None, "--out", "-o", help="Submission CSV path."),
    probabilities: bool = typer.Option(False, "--probabilities", help="Add one column per class."),
    tta: str = typer.Option(None, "--tta", help=TTA_HELP),
    weights: str = typer.Option(None, "--weights", help=WEIGHTS_HELP),
) -> None:
    """Write a submission CSV in the input's id format (from a run, a fold set or an ensemble)."""
    from viewfinder import api

    path = api.predict(
        runs, data=data, out=out, probabilities=probabilities, tta=tta, weights=weights
    )
    _console().print(f"wrote {path}")


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="Run folders."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for comparison.md/.csv."),
) -> None:
    """Compare finished runs in one table (Markdown and CSV)."""
    from viewfinder import api

    table = api.compare(runs, out=out)
    print(table.markdown())
    if out:
        _console().print(f"written to {out}/comparison.md and .csv")


@app.command()
def sweep(
    task: str = typer.Argument(..., help="Task: classify, iqa, caption, iqa+caption or vqa."),
    overrides: list[str] = typer.Argument(
        None, help="Comma lists are swept: model=cnn,resnet18 (mos_range=0,10 stays one value)"
    ),
    config: Path = typer.Option(None, "--config", "-c", help="YAML config file."),
    name: str = typer.Option(None, "--name", help="Sweep folder name."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train every combination (e.g. model=cnn,resnet18 learning_rate=1e-3,1e-4); compare."""
    from viewfinder import api
    from viewfinder.config import parse_overrides

    raw = {}
    for item in overrides or []:  # keep comma lists as text: parse_overrides reads YAML scalars
        key, _, value = item.partition("=")
        raw[key] = value if "," in value else parse_overrides([item])[key]
    runs, table = api.sweep(task, config, name=name, progress=not quiet, **raw)
    print(table.markdown())
    _console().print(f"{len(runs)} runs in {runs[0].path.parent}")


@app.command("zeroshot")
def zeroshot(
    overrides: list[str] = typer.Argument(None, help="data=PATH model=clip:ARCH@TAG ..."),
    config: Path = typer.Option(None, "--config", "-c", help="YAML config file."),
    split: str = typer.Option("val", "--split", help="Split to score: val or test."),
) -> None:
    """CLIP zero-shot baseline from class names (no training), saved as a run folder."""
    from viewfinder.api import zero_shot
    from viewfinder.config import parse_overrides

    run = zero_shot(config, split=split, **parse_overrides(overrides or []))
    s = run.summary
    _console().print(
        f"[bold]{s['name']}[/]: zero-shot {s['model']}, {split} {s['monitor']}="
        f"{s['best_value']:.4f} -> {run.path}"
    )


@app.command()
def demo(
    directory: Path = typer.Option(
        Path("viewfinder-demo"), "--dir", help="Where data and runs go."
    ),
    epochs: int = typer.Option(None, "--epochs", help="Override the demo's epochs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """The main job on built-in data: compare cnn / resnet18 / resnet18+attn, then quality +
    captions, then questions; tables, scores and submissions."""
    from viewfinder.demo import run_demo

    run_demo(directory, epochs=epochs, progress=not quiet)


@app.command("inspect")
def inspect_command(
    data: Path = typer.Argument(..., help="Data folder, or a CSV / JSONL / JSON file."),
    settings: list[str] = typer.Argument(
        None,
        help="images=DIR and task=T may also be given as train takes them.",
        metavar="[KEY=VALUE]...",
    ),
    task: str = typer.Option(
        None, "--task", "-t", help="classify, iqa, caption, iqa+caption or vqa (default: guessed)."
    ),
    images: Path = typer.Option(
        None, "--images", help="Folder of the images rows name by id (caption, vqa)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the JSON summary (for scripts) instead of tables."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="Folder for plots, inspect.md/.json (default: ./inspect-NAME)."
    ),
    sample: int = typer.Option(
        2000, "--sample", help="Images whose headers are read for sizes (seeded; 0 = all)."
    ),
) -> None:
    """Look at the data before training: sizes, duplicates, unreadable files, classes, MOS,
    captions, questions and answers; plots and inspect.md in one folder."""
    import json

    from viewfinder.data.inspect import default_out_dir, inspect_data
    from viewfinder.data.inspect_report import print_summary, write_inspection
    from viewfinder.errors import UserError

    for item in settings or []:
        key, sep, value = item.partition("=")
        if not sep or key not in ("images", "task"):
            raise UserError(f"inspect takes images=DIR and task=T, not {item!r}")
        images, task = (Path(value), task) if key == "images" else (images, value)
    found = inspect_data(data, task=task, images=str(images) if images else None, sample=sample)
    summary = write_inspection(found, out or default_out_dir(data))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        print_summary(summary, _console())


@app.command()
def models(pattern: str = typer.Argument("*", help="Filter, e.g. 'resnet*'.")) -> None:
    """List model names: cnn, and every timm architecture (add +attn for the attention head)."""
    import timm

    names = ["cnn", *timm.list_models(pattern)] if pattern == "*" else timm.list_models(pattern)
    print("\n".join(names))


@data_app.command("demo")
def data_demo(
    directory: Path = typer.Argument(..., help="Output folder."),
    seed: int = typer.Option(0, "--seed"),
    size: int = typer.Option(96, "--size", help="Image side in pixels (64-128 recommended)."),
    count: int = typer.Option(1500, "--count", help="Number of clean images."),
    long_tail: float = typer.Option(
        None, "--long-tail", help="Imbalance ratio of the train split."
    ),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Generate the built-in demo data set (all tasks) in DIRECTORY."""
    from viewfinder.data.demo import generate_demo

    paths = generate_demo(
        directory, seed=seed, size=size, count=count, long_tail=long_tail, overwrite=overwrite
    )
    _console().print(f"demo data written to {paths.root} (see {paths.root / 'README.md'})")


def _cache_root(path: Path | None) -> Path:
    from viewfinder.data.cache import default_cache_dir

    return path.expanduser() if path else default_cache_dir()


@cache_app.command("info")
def cache_info(cache_dir: Path = typer.Option(None, "--dir", help=CACHE_DIR_HELP)) -> None:
    """Show what the cache holds and its size on disk."""
    from viewfinder.data.cache import cache_info as info

    root = _cache_root(cache_dir)
    rows = info(root)
    echo = typer.echo  # plain lines: paths must not be wrapped
    echo(f"cache: {root}")
    if not rows:
        echo("  empty")
    for row in rows:
        echo(
            f"  {row['kind']:<9} {row['name']:<24} {row['items']:>8} items"
            f" {row['bytes'] / 2**20:>10.1f} MB"
        )
    total = sum(row["bytes"] for row in rows)
    echo(f"  total {total / 2**20:.1f} MB")


@cache_app.command("clear")
def cache_clear(
    kind: str = typer.Argument("all", help="What to delete: all, images or features."),
    cache_dir: Path = typer.Option(None, "--dir", help=CACHE_DIR_HELP),
) -> None:
    """Delete cached images and/or features (they are rebuilt on the next run)."""
    from viewfinder.data.cache import clear_cache

    if kind not in ("all", "images", "features"):
        raise UserError(f"cache clear {kind!r}: choose all, images or features")
    root = _cache_root(cache_dir)
    freed = clear_cache(root, kind)
    typer.echo(f"cleared {kind} from {root}: {freed / 2**20:.1f} MB freed")


@config_app.command("keys")
def config_keys() -> None:
    """Every config key with its default."""
    from viewfinder.config import SECTIONS, TOP_LEVEL, RunConfig

    for key in TOP_LEVEL:
        print(f"{key} = {RunConfig.model_fields[key].default}")
    for section, model in SECTIONS.items():
        for field, info in model.model_fields.items():
            print(f"{section}.{field} = {info.default}")


# the commands that share a run's results (cli_share.py keeps this file short)
app.command("export")(cli_share.export_command)
app.command("report")(cli_share.report)
app.command("serve")(cli_share.serve)
app.command("runs")(cli_share.runs_command)


def main() -> None:
    try:
        app()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
