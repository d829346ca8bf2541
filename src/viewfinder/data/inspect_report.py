"""An inspection written out: PNG plots, ``inspect.md`` and ``inspect.json`` in one folder, and the
short console summary (a few tables; the Markdown file holds the long lists).

Plots use a bare ``Figure`` on the Agg canvas, as ``metrics/`` does: headless, and the process-wide
matplotlib backend is never touched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

CONSOLE_CLASSES = 10  # classes in the console table; inspect.md lists them all


# ---------------------------------------------------------------------------- words


def number(value: Any) -> str:
    """1,234 / 3.14 / n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def plural(count: int, word: str) -> str:
    """ "1 group", "3 groups"."""
    return f"{number(count)} {word}{'' if count == 1 else 's'}"


def spread(stats: dict[str, Any]) -> str:
    return f"{number(stats['min'])} / {number(stats['median'])} / {number(stats['max'])}"


def _records(summary: dict) -> str:
    what = "questions" if summary["task"] == "vqa" else "images"
    found = summary["records"]
    return ", ".join(f"{split} {number(n)}" for split, n in found.items() if n) + f" ({what})"


def _sizes_line(sizes: dict) -> str:
    common = ", ".join(f"{c['width']}x{c['height']} ({number(c['images'])})"
                       for c in sizes["most_common"][:3])  # fmt: skip
    return f"most common {common or 'n/a'}"


def _sample_line(images: dict) -> str:
    """Where the sizes come from: every file's header, or a sample's."""
    sizes = images["sizes"]
    if sizes["sampled"]:
        return (f"headers of {number(sizes['checked'])} of {number(sizes['of'])} files, a seeded "
                f"sample (seed {sizes['seed']}; --sample 0 reads all)")  # fmt: skip
    found = f"all {number(sizes['checked'])} files"
    return (
        f"headers of {found}" if sizes["of"] == images["files"] else f"headers of {found} on disk"
    )


def _task_line(summary: dict) -> str:
    if summary["task_guessed"]:
        return f"{summary['task']} (guessed: {summary['task_reason']}; --task overrides)"
    return f"{summary['task']} (given with --task)"


def overview_rows(summary: dict) -> list[tuple[str, str]]:
    """The lines every task shares: task, records, image files, sizes and problems."""
    images = summary["images"]
    sizes, dups = images["sizes"], images["duplicates"]
    duplicates = f"{plural(dups['groups'], 'group')} ({plural(dups['extra_files'], 'extra file')})"
    if dups["across_splits"] or dups["conflicting_labels"]:
        duplicates += (f"; {number(dups['across_splits'])} across splits, "
                       f"{number(dups['conflicting_labels'])} with different labels")  # fmt: skip
    rows = [
        ("task", _task_line(summary)),
        ("records", _records(summary)),
        ("image files", f"{number(images['files'])}; sizes from {_sample_line(images)}"),
        ("width (min / median / max)", spread(sizes["width"])),
        ("height (min / median / max)", spread(sizes["height"])),
        ("aspect w/h (min / median / max)", spread(sizes["aspect"])),
        ("sizes", _sizes_line(sizes)),
        (
            "unreadable files",
            number(images["unreadable"]["count"])
            + (" (headers checked in the sample only)" if sizes["sampled"] else ""),
        ),
        ("duplicate files", duplicates),
    ]
    if dups["files_in_several_splits"]:
        rows.append(("same file in several splits", number(dups["files_in_several_splits"])))
    if summary["skipped_rows"]["count"]:
        rows.append(("skipped rows", number(summary["skipped_rows"]["count"])))
    return rows


def _classify_rows(found: dict) -> list[tuple[str, str]]:
    return [
        ("layout", found["layout"]),
        ("classes", number(found["classes"])),
        ("imbalance (max / min train count)", f"{number(found['imbalance_ratio'])} "
         f"(largest {found['largest']}, smallest {found['smallest']})"),
    ]  # fmt: skip


def _iqa_rows(found: dict) -> list[tuple[str, str]]:
    return [
        ("MOS values", f"{number(found['count'])} ({number(found['distinct'])} distinct; "
                       f"{number(found['without_mos'])} images without)"),
        ("MOS min / median / max", spread(found)),
        ("MOS mean ± std", f"{number(found['mean'])} ± {number(found['std'])}"),
        ("MOS quartiles", f"{number(found['q1'])} / {number(found['q3'])}"),
    ]  # fmt: skip


def _caption_rows(found: dict) -> list[tuple[str, str]]:
    top = ", ".join(w for w, _ in found["top_words"][:8])
    return [
        ("captions", f"{number(found['captions'])} for {number(found['images'])} images "
                     f"({number(found['images_without_captions'])} images without any)"),
        ("captions per image (min / median / max)", spread(found["per_image"])),
        ("caption words (min / median / max)", spread(found["length_words"])),
        ("vocabulary", f"{number(found['vocabulary'])} words "
                       f"({number(found['words_seen_once'])} seen once)"),
        ("frequent words", top or "n/a"),
    ]  # fmt: skip


def coverage_text(coverage: list[list[float]], limit: int = 5) -> str:
    shown = coverage if len(coverage) <= limit else coverage[: limit - 1] + coverage[-1:]
    return ", ".join(f"top-{number(k)} {share:.1%}" for k, share in shown) or "n/a"


def _vqa_rows(found: dict) -> list[tuple[str, str]]:
    types = ", ".join(f"{t} {n / max(found['questions'], 1):.0%}"
                      for t, n in found["answer_types"].items())  # fmt: skip
    question_types = ", ".join(f"{t or '(none)'} {n}" for t, n in found["question_types"][:5])
    return [
        ("questions", f"{number(found['questions'])} about {number(found['images'])} "
                      f"images; {number(found['unanswered'])} without answers"),
        ("questions per image (min / median / max)", spread(found["questions_per_image"])),
        ("question words (min / median / max)", spread(found["question_length_words"])),
        ("question types", question_types or "n/a"),
        ("answer types", types),
        ("distinct answers", number(found["distinct_answers"])),
        ("frequent answers", ", ".join(a for a, _ in found["top_answers"][:8]) or "n/a"),
        ("answer coverage", coverage_text(found["coverage"])),
    ]  # fmt: skip


_TASK_ROWS: dict[str, Callable[[dict], list[tuple[str, str]]]] = {
    "classify": _classify_rows, "iqa": _iqa_rows, "caption": _caption_rows, "vqa": _vqa_rows,
}  # fmt: skip


def task_rows(summary: dict) -> list[tuple[str, str]]:
    """The task's own lines (both MOS and captions for iqa+caption)."""
    return [row for key, rows in _TASK_ROWS.items() if key in summary for row in rows(summary[key])]


# ---------------------------------------------------------------------------- plots


def _figure(panels: int, width: float = 4.5, height: float = 3.6) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * panels, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def _stairs(ax: Any, found: dict, **labels: str) -> None:
    from matplotlib.ticker import MaxNLocator

    if found["counts"]:
        ax.stairs(found["counts"], found["edges"], fill=True, alpha=0.8)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of images
    ax.set(**labels)


def _bars(ax: Any, found: dict, **labels: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.bar(found["values"], found["counts"], width=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(**labels)


def _barh(ax: Any, pairs: list, **labels: str) -> None:
    names = [str(name) or "(none)" for name, _ in pairs][::-1]
    ax.barh(names, [n for _, n in pairs][::-1])
    ax.tick_params(axis="y", labelsize=8)
    ax.set(**labels)


def _plot_sizes(summary: dict, path: Path) -> None:
    sizes = summary["images"]["sizes"]
    fig, (width, height, aspect) = _figure(3)
    note = f" (sample of {sizes['checked']:,})" if sizes["sampled"] else ""
    found = sizes["histograms"]
    _stairs(width, found["width"], xlabel="width (px)", ylabel="images", title="width" + note)
    _stairs(height, found["height"], xlabel="height (px)", title="height" + note)
    _stairs(aspect, found["aspect"], xlabel="width / height", title="aspect ratio" + note)
    fig.savefig(path, dpi=100)


def _plot_classes(summary: dict, path: Path) -> None:
    rows = summary["classify"]["counts"]
    fig, (ax,) = _figure(1, width=max(6.0, min(0.3 * len(rows), 24.0)), height=4.5)
    names, bottom = [r["class"] for r in rows], [0] * len(rows)
    for split in ("train", "val", "test"):
        counts = [r[split] for r in rows]
        if any(counts):
            ax.bar(names, counts, bottom=bottom, label=split)
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    ratio = number(summary["classify"]["imbalance_ratio"])
    ax.set(ylabel="images", title=f"images per class (train max/min = {ratio})")
    ax.tick_params(axis="x", labelrotation=90, labelsize=7 if len(rows) > 30 else 9)
    if len(rows) > 80:
        ax.set_xticks([])
    ax.legend()
    fig.savefig(path, dpi=100)


def _plot_mos(summary: dict, path: Path) -> None:
    fig, (ax,) = _figure(1, width=6.0)
    found = summary["iqa"]
    _stairs(ax, found["histogram"], xlabel="MOS", ylabel="images",
            title=f"MOS ({found['count']:,} images)")  # fmt: skip
    fig.savefig(path, dpi=100)


def _plot_captions(summary: dict, path: Path) -> None:
    found = summary["caption"]
    fig, (lengths, per_image) = _figure(2)
    _bars(lengths, found["length_words"]["distribution"], xlabel="words per caption",
          ylabel="captions", title=f"caption length ({found['captions']:,} captions)")  # fmt: skip
    _bars(per_image, found["per_image"]["distribution"], xlabel="captions per image",
          ylabel="images", title="captions per image")  # fmt: skip
    fig.savefig(path, dpi=100)


def _plot_questions(summary: dict, path: Path) -> None:
    found = summary["vqa"]
    fig, (types, lengths) = _figure(2, height=4.5)
    _barh(types, found["question_types"], xlabel="questions", title="question types (2 words)")
    _bars(lengths, found["question_length_words"]["distribution"], xlabel="words per question",
          ylabel="questions", title="question length")  # fmt: skip
    fig.savefig(path, dpi=100)


def _plot_answers(summary: dict, path: Path) -> None:
    from matplotlib.ticker import ScalarFormatter

    found = summary["vqa"]
    fig, (types, top, curve) = _figure(3, height=4.5)
    types.bar(list(found["answer_types"]), list(found["answer_types"].values()))
    types.set(ylabel="questions", title="answer types (most common answer)")
    _barh(top, found["top_answers"], xlabel="questions", title="most frequent answers")
    if found["coverage"]:
        ks, shares = zip(*found["coverage"], strict=True)
        curve.plot(ks, [100 * s for s in shares], marker="o")
        curve.set_xscale("log")
        curve.xaxis.set_major_formatter(ScalarFormatter())
    curve.set(xlabel="K most frequent answers", ylabel="% of questions", ylim=(0, 101),
              title="top-K answer coverage")  # fmt: skip
    curve.grid(True, alpha=0.3)
    fig.savefig(path, dpi=100)


_PLOTS: tuple[tuple[str, str, Callable[[dict, Path], None]], ...] = (
    ("images", "image_sizes.png", _plot_sizes),
    ("classify", "classes.png", _plot_classes),
    ("iqa", "mos.png", _plot_mos),
    ("caption", "captions.png", _plot_captions),
    ("vqa", "questions.png", _plot_questions),
    ("vqa", "answers.png", _plot_answers),
)


def draw_plots(summary: dict, out_dir: Path) -> list[str]:
    """Every plot the summary has data for; returns the file names."""
    names = []
    for key, name, draw in _PLOTS:
        if key in summary:
            draw(summary, out_dir / name)
            names.append(name)
    return names


# ---------------------------------------------------------------------------- Markdown


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        text = value if isinstance(value, str) else number(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows] + [""]


def _problem_lines(summary: dict) -> list[str]:
    images = summary["images"]
    lines: list[str] = []
    bad, dups, skipped = images["unreadable"], images["duplicates"], summary["skipped_rows"]
    if bad["count"]:
        lines += [f"### Unreadable files ({bad['count']:,})", ""]
        lines += _table(["file", "reason"], [[b["path"], b["reason"]] for b in bad["listed"]])
    if dups["groups"]:
        lines += [f"### Duplicate files ({plural(dups['groups'], 'group')})", ""]
        rows = [[", ".join(g["files"]), ", ".join(g["splits"]), ", ".join(g["labels"])]
                for g in dups["listed"]]  # fmt: skip
        lines += _table(["same bytes", "splits", "labels"], rows)
    if skipped["count"]:
        lines += [f"### Skipped rows ({skipped['count']:,})", ""]
        lines += _table(["where", "why"], [[s["where"], s["why"]] for s in skipped["listed"]])
    shown = max(len(bad["listed"]), len(dups["listed"]), len(skipped["listed"]))
    if shown and shown < max(bad["count"], dups["groups"], skipped["count"]):
        lines += [f"(the first {shown} of each are listed here and in inspect.json)", ""]
    return lines


def _task_tables(summary: dict) -> list[str]:
    lines: list[str] = []
    if "classify" in summary:
        rows = [[r["class"], r["train"], r["val"], r["test"], r["total"]]
                for r in summary["classify"]["counts"]]  # fmt: skip
        lines += ["### Images per class", ""]
        lines += _table(["class", "train", "val", "test", "total"], rows)
    if "caption" in summary:
        lines += ["### Frequent caption words (without stop words)", ""]
        lines += _table(["word", "count"], summary["caption"]["top_words"])
    if "vqa" in summary:
        found = summary["vqa"]
        lines += ["### Question types", "", *_table(["first words", "questions"],
                                                   found["question_types"])]  # fmt: skip
        lines += ["### Frequent answers", "", *_table(["answer", "questions"],
                                                     found["top_answers"])]  # fmt: skip
        rows = [[k, f"{share:.2%}"] for k, share in found["coverage"]]
        lines += ["### Top-K answer coverage", "", *_table(["K", "questions covered"], rows)]
    return lines


def markdown(summary: dict) -> str:
    """The whole inspection as one Markdown page (plots linked beside it)."""
    lines = [f"# Data inspection: `{summary['data']}`", ""]
    lines += _table(["", ""], [list(row) for row in overview_rows(summary)])
    sizes = summary["images"]["sizes"]
    formats, modes = (", ".join(f"{k} {v:,}" for k, v in sizes[key].items()) or "n/a"
                      for key in ("formats", "modes"))  # fmt: skip
    plots = summary.get("plots", [])
    lines += [f"Formats: {formats}; modes: {modes}.", ""]
    lines += [f"![{name}]({name})\n" for name in plots if name == "image_sizes.png"]
    lines += _problem_lines(summary)
    lines += [f"## {summary['task']}", ""]
    lines += _table(["", ""], [list(row) for row in task_rows(summary)])
    lines += [f"![{name}]({name})\n" for name in plots if name != "image_sizes.png"]
    lines += _task_tables(summary)
    return "\n".join(lines)


# ---------------------------------------------------------------------------- writing


def write_inspection(summary: dict, out_dir: Path) -> dict:
    """Write the plots, ``inspect.json`` and ``inspect.md`` to ``out_dir`` (marked as viewfinder
    output, so that a folder inside the data is never read as a class); the summary with them."""
    from viewfinder.data.outputs import mark_output_folder

    out = mark_output_folder(Path(out_dir))
    summary = {**summary, "out_dir": str(out), "plots": draw_plots(summary, out)}
    (out / "inspect.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "inspect.md").write_text(markdown(summary), encoding="utf-8")
    return summary


def print_summary(summary: dict, console: Any) -> None:
    """A few short tables: the data, the task's numbers, the largest classes."""
    from rich.table import Table

    for title, rows in (("data", overview_rows(summary)), (summary["task"], task_rows(summary))):
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in rows:
            table.add_row(key, value)
        console.print(table)
    if "classify" in summary:
        counts = summary["classify"]["counts"]
        more = len(counts) > CONSOLE_CLASSES
        caption = f"largest {CONSOLE_CLASSES} of {len(counts)}; all in inspect.md" if more else None
        table = Table(title="images per class", caption=caption, title_justify="left")
        for column in ("class", "train", "val", "test"):
            table.add_column(column, justify="left" if column == "class" else "right")
        for row in counts[:CONSOLE_CLASSES]:
            table.add_row(row["class"], *(number(row[s]) for s in ("train", "val", "test")))
        console.print(table)
    console.print(f"plots and inspect.md in {summary['out_dir']}", highlight=False)
