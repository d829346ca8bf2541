"""Per-epoch curves of several runs, one chart per quantity, drawn with matplotlib as SVG.

Why SVG in an ``<img src="data:image/svg+xml;base64,...">``: vector lines stay sharp when the page
is zoomed or printed, a chart of a few runs is 15-40 kB, text stays text (``svg.fonttype:
none``), and inside an ``<img>`` the SVG cannot clash with the page's ids or run script. The
legend is the page's (HTML, one colour per run, shared by every chart of a task), so long run
names never squeeze the plots. matplotlib is imported here, lazily, only when a report is built.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from viewfinder.report.page import data_uri
from viewfinder.report.runs import ReportRun

# matplotlib's tab10: the colours people read as "run 1, run 2, ..." in every ML plot.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


@dataclass(frozen=True)
class Series:
    """One line: a run's (or fold's) values of one key per epoch."""

    color: str
    epochs: list[float]
    values: list[float]
    dashed: bool = False
    thin: bool = False


def _series(run: ReportRun, key: str, dashed: bool = False) -> list[Series]:
    lines = []
    logs = run.epoch_logs()
    for _, records in logs:
        points = [
            (float(r["epoch"]), float(r[key]))
            for r in records
            if isinstance(r.get(key), int | float) and isinstance(r.get("epoch"), int | float)
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            lines.append(Series(run.color, list(xs), list(ys), dashed, thin=len(logs) > 1))
    return lines


def _svg(lines: Sequence[Series], ylabel: str, *, log: bool = False, key_note: str = "") -> str:
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "viewfinder"}):
        fig = Figure(figsize=(5.6, 3.0), layout="constrained")
        FigureCanvasSVG(fig)
        ax = fig.add_subplot()
        for line in lines:
            ax.plot(
                line.epochs, line.values, color=line.color, linestyle="--" if line.dashed else "-",
                linewidth=1.0 if line.thin else 1.8, marker="o" if len(line.values) < 12 else None,
                markersize=3, alpha=0.75 if line.thin else 1.0,
            )  # fmt: skip
        if log:
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        if key_note:
            ax.set_title(key_note, fontsize=9, loc="right", color="#5b6475")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return data_uri(buffer.getvalue(), "image/svg+xml")


def _peaks_differ(lines: Sequence[Series]) -> bool:
    """Log scale when runs' peaks are 10x apart (a learning-rate sweep), not for one schedule."""
    peaks = [max(line.values) for line in lines]
    return min(peaks) > 0 and max(peaks) / min(peaks) > 10


def _same(a: Series, b: Series) -> bool:
    if a.epochs != b.epochs:
        return False
    pairs = zip(a.values, b.values, strict=True)
    return all(abs(x - y) <= 1e-9 * max(abs(x), abs(y), 1e-30) for x, y in pairs)


def curve_charts(runs: Sequence[ReportRun]) -> list[tuple[str, str]]:
    """(title, SVG data URI) per chart: loss, each monitored metric, learning rate, images/s."""
    charts: list[tuple[str, Any]] = []
    loss = [s for run in runs for s in _series(run, "train_loss") + _series(run, "val_loss", True)]
    if loss:
        charts.append(("loss", _svg(loss, "loss", key_note="solid: train   dashed: val")))
    monitors = sorted({str(run.summary.get("monitor")) for run in runs} - {"None", "loss"})
    for monitor in monitors:
        lines = [s for run in runs if run.summary.get("monitor") == monitor
                 for s in _series(run, f"val_{monitor}")]  # fmt: skip
        if lines:
            charts.append((f"val {monitor} (monitored)", _svg(lines, f"val {monitor}")))
    for key, title in (("learning_rate", "learning rate"), ("images_per_second", "images/s")):
        lines = [s for run in runs for s in _series(run, key)]
        if len(lines) > 1 and all(_same(line, lines[0]) for line in lines):
            note = "the same for every run"  # one schedule: one grey line, not hidden colours
            charts.append((title, _svg([Series("#5b6475", lines[0].epochs, lines[0].values)],
                                       title, key_note=note)))  # fmt: skip
        elif lines:
            log = key == "learning_rate" and _peaks_differ(lines)
            charts.append((title, _svg(lines, title + (" (log scale)" if log else ""), log=log)))
    return charts
