"""``viewfinder report``: one self-contained HTML file of runs, fold sets and sweeps.

Reads run folders only (``summary.json``, ``metrics.jsonl``, ``config.yaml``, ``eval/<split>/``,
``folds.json``) and writes nothing into them. The page, per task: the ``compare`` table (sortable),
per-epoch curves of every run on one chart per quantity, and per run a collapsible section with
its facts, data facts, resolved config, fold table and the task's evaluation views.

- ``runs.py``: finding runs under the given folders (recursively).
- ``page.py``: escaping, tables, inline images, the page's style and script.
- ``charts.py``: the curves (matplotlib SVG, inlined).
- ``sections.py``: one function per task (``SECTIONS``): **a new task adds its section there**.
- ``build.py``: the page, put together.
"""

from __future__ import annotations

from viewfinder.report.build import build_report

__all__ = ["build_report"]
