"""Progress with ETA for long work outside the training loop: filling the image cache, feature
extraction, evaluate/predict over many images (the loop has its own, ``training/callbacks.py``).

Shown on a terminal and in notebooks (rich renders in both); silent when output is piped or
logged (CI), so logs hold results, not bar redraws. ``VIEWFINDER_PROGRESS=0`` silences it
everywhere, ``=1`` forces it. Bars are transient: the summary lines printed after them remain.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
MIN_ITEMS = 2  # a single batch is over before a bar would draw


def interactive() -> bool:
    """Whether progress bars should draw here (see the module doc)."""
    forced = os.environ.get("VIEWFINDER_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    from rich.console import Console

    console = Console(stderr=True)
    return console.is_terminal or console.is_jupyter


def track(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    """``items`` unchanged, with a bar (done/total, elapsed, ETA) when ``interactive()``."""
    if total < MIN_ITEMS or not interactive():
        yield from items
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
