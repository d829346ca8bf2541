"""Assemble the report page: header, then per task the comparison, the curves and each run."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from viewfinder.report.page import Raw, document, esc, fmt, key_values, table
from viewfinder.report.runs import ReportRun, find_runs, read_json
from viewfinder.report.sections import SECTIONS, fold_section, generic_section

DEFAULT_OUT = "report.html"
RUN_FACTS = (
    "task", "model", "status", "weights", "parameters", "image_size", "batch_size",
    "learning_rate", "epochs", "epochs_completed", "best_epoch", "monitor", "best_value",
    "train_loss", "precision", "channels_last", "numerics", "time_per_epoch", "total_time",
    "images_per_second", "peak_rss_mb", "skipped_images", "posthoc",
)  # fmt: skip


def _slug(task: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in task)


def _swatch(run: ReportRun) -> str:
    return f'<span class="swatch" style="background:{run.color}"></span>'


def _fit_cell(text: Any) -> Raw:
    if not text:
        return Raw("–", None)
    cls = "fit-ok" if str(text).startswith("ok") else "fit-warn"
    return Raw(f'<span class="{cls}">{esc(text)}</span>', text)


def comparison(runs: Sequence[ReportRun]) -> str:
    """The ``compare`` table of these runs (same rows, columns and ``fit``), sortable."""
    from viewfinder.experiments.compare import compare_runs

    by_path = {str(run.path): run for run in runs}
    table_ = compare_runs([run.path for run in runs])
    rows = []
    for row in table_.rows:
        run = by_path[row["_path"]]
        cells: list[Any] = []
        for key, _ in table_.columns:
            if key == "run":
                link = f'{_swatch(run)}<a href="#{run.anchor}">{esc(run.label)}</a>'
                cells.append(Raw(link, run.label))
            elif key == "fit":
                cells.append(_fit_cell(row.get(key)))
            else:
                cells.append(row.get(key))
        rows.append(cells)
    monitors = sorted({str(run.summary.get("monitor")) for run in runs})
    note = (
        f"<p class='meta'>validation metrics at each run's best epoch (a fold set: the mean of its "
        f"folds), best {esc(' / '.join(monitors))} first; click a header to sort. <b>fit</b> "
        "reads the losses: underfits, overfits or ok.</p>"
    )
    headers = [header for _, header in table_.columns]
    return note + '<div class="scroll">' + table(headers, rows, sortable=True) + "</div>"


def curves(runs: Sequence[ReportRun]) -> str:
    from viewfinder.report.charts import curve_charts

    charts = curve_charts(runs)
    if not charts:
        return "<p class='hint'>no per-epoch metrics (metrics.jsonl) in these runs</p>"
    legend = "".join(f'<span class="item">{_swatch(r)}{esc(r.label)}</span>' for r in runs)
    figures = "".join(
        f'<figure class="chart"><img src="{uri}" alt="{esc(title)} per epoch">'
        f"<figcaption>{esc(title)} per epoch</figcaption></figure>"
        for title, uri in charts
    )
    return f'<p class="legend">{legend}</p><div class="charts">{figures}</div>'


def _evaluate_hint(run: ReportRun) -> str:
    path = shlex.quote(str(run.path))
    extra = (
        f" (or <code>viewfinder evaluate {esc(path)}</code> for the out-of-fold views)"
        if run.is_fold_set
        else ""
    )
    return (
        f'<section class="task-section missing" data-task="{esc(run.task)}"><p class="hint">'
        f"No evaluation views yet: make them with <code>viewfinder evaluate {esc(path)} --split "
        f"test</code>{extra}, then build the report again.</p></section>"
    )


def _evaluation(run: ReportRun, eval_dir: Path) -> str:
    section = SECTIONS.get(run.task, generic_section)
    metrics = read_json(eval_dir / "metrics.json")
    numbers = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
    scores = table(list(numbers), [list(numbers.values())], cls="metrics")
    return (
        f'<section class="task-section" data-task="{esc(run.task)}" data-split="'
        f'{esc(eval_dir.name)}"><h4>{esc(eval_dir.name)} split '
        f'<span class="meta">(eval/{esc(eval_dir.name)})</span></h4>'
        f'<div class="scroll">{scores}</div>{section(run, eval_dir)}</section>'
    )


def run_details(run: ReportRun) -> str:
    """One run, collapsed: its facts, data facts, config, fold table and task views."""
    s = run.summary
    facts = {"path": str(run.path), **{k: s[k] for k in RUN_FACTS if s.get(k) is not None}}
    best = s.get("best_value")
    headline = f"{s.get('monitor')} {fmt(best)}" if isinstance(best, int | float) else ""
    if s.get("best_epoch"):
        headline += f" at epoch {s['best_epoch']} of {s.get('epochs_completed')}"
    kind = f"{s.get('folds')}-fold set" if run.is_fold_set else "run"
    evals = run.eval_dirs()
    body = (
        f"<h4>Run</h4>{key_values(facts)}<h4>Data</h4>{key_values(s.get('data') or {})}"
        f"<details class='config'><summary>resolved config (config.yaml)</summary>"
        f"<pre>{esc(run.config_text() or 'config.yaml missing')}</pre></details>"
        + (fold_section(run) if run.is_fold_set else "")
        + ("".join(_evaluation(run, d) for d in evals) if evals else _evaluate_hint(run))
    )
    return (
        f'<details class="run" id="{run.anchor}" data-task="{esc(run.task)}"><summary>'
        f"{_swatch(run)}<b>{esc(run.label)}</b> · {esc(kind)} · {esc(s.get('model', '?'))} · "
        f"{esc(headline)} · {esc(s.get('status', '?'))}</summary>"
        f'<div class="run-body">{body}</div></details>'
    )


def task_group(task: str, runs: Sequence[ReportRun]) -> str:
    slug = _slug(task)
    count = f"{len(runs)} run{'s' if len(runs) != 1 else ''}"
    return (
        f'<section class="task" id="task-{slug}"><h2>{esc(task)} · {count}</h2>'
        f'<section class="comparison" id="comparison-{slug}"><h3>Comparison</h3>'
        f"{comparison(runs)}</section>"
        f'<section class="curves" id="curves-{slug}"><h3>Curves</h3>{curves(runs)}</section>'
        f'<section class="runs" id="runs-{slug}"><h3>Runs</h3>'
        + "".join(run_details(run) for run in runs)
        + "</section></section>"
    )


def _header(paths: Sequence[Any], groups: dict[str, list[ReportRun]], unfinished: list) -> str:
    from viewfinder import __version__

    total = sum(len(r) for r in groups.values())
    counts = ", ".join(f"{len(r)} {esc(t)}" for t, r in groups.items())
    nav = "".join(f'<a href="#task-{_slug(t)}">{esc(t)}</a>' for t in groups)
    skipped = ""
    if unfinished:
        names = ", ".join(esc(p) for p in unfinished[:5]) + (" ..." if len(unfinished) > 5 else "")
        skipped = f"<p class='hint'>not shown, unfinished (no summary.json): {names}</p>"
    return (
        f"<h1>viewfinder report</h1><p class='meta'>built {datetime.now():%Y-%m-%d %H:%M} by "
        f"viewfinder {esc(__version__)} from {esc(', '.join(str(p) for p in paths))} · "
        f"{total} run{'s' if total != 1 else ''}: {counts}</p>{skipped}"
        f'<nav>{nav}<button id="toggle-runs" type="button">expand all runs</button></nav>'
    )


def _task_rank(run: ReportRun) -> tuple[int, str]:
    """Tasks in the registry's order (classify first), then any other by name."""
    order = list(SECTIONS)
    return (order.index(run.task), "") if run.task in order else (len(order), run.task)


def build_report(paths: Sequence[str | Path], out: str | Path | None = None) -> tuple[Path, int]:
    """Write one self-contained HTML report of every run under ``paths``; (file, run count)."""
    from viewfinder.report.charts import PALETTE

    runs, unfinished = find_runs(paths)
    groups: dict[str, list[ReportRun]] = {}
    for run in sorted(runs, key=_task_rank):  # stable: runs keep their order within a task
        groups.setdefault(run.task, []).append(run)
    for members in groups.values():
        for i, run in enumerate(members):
            run.color = PALETTE[i % len(PALETTE)]
    for i, run in enumerate(r for members in groups.values() for r in members):
        run.anchor = f"run-{i + 1}"
    body = "".join(task_group(task, members) for task, members in groups.items())
    footer = (
        "<p>One self-contained file: charts and views are inlined, nothing is fetched. Made by "
        "<code>viewfinder report</code> from the run folders' files.</p>"
    )
    page = document("viewfinder report", _header(paths, groups, unfinished), body, footer)
    out_path = Path(out) if out is not None else Path(DEFAULT_OUT)
    if out_path.is_dir():
        out_path = out_path / DEFAULT_OUT
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(page, encoding="utf-8")
    return out_path, len(runs)
