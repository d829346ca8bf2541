"""HTML building blocks of the report: escaping, number formatting, tables, inline images, the page.

Everything a run folder contributes (names, paths, class names, captions, questions, config text)
goes through ``esc`` or ``table``: captions and questions are user text. Images are inlined as
``data:`` URIs so the page is one self-contained file: no network, no neighbouring files.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# An eval view larger than this is downscaled before inlining (the task views are 50-250 kB);
# a report stays small enough to mail however large a user's confusion matrix gets.
MAX_IMAGE_BYTES = 1_500_000
MAX_IMAGE_SIDE = 1600  # pixels, longer side, of a downscaled view


def esc(value: Any) -> str:
    """Text from a run folder, safe inside HTML text and quoted attributes."""
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A table cell's text: 4 significant digits, thousands grouped, ``–`` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.2g}" if 0 < abs(value) < 0.01 else f"{value:#.4g}".rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@dataclass(frozen=True)
class Raw:
    """A cell given as ready HTML (a link, a bar), with the value the column sorts by."""

    html: str
    sort: Any = None


def _cell(value: Any) -> str:
    if isinstance(value, Raw):
        sort = "" if value.sort is None else esc(value.sort)
        return f'<td data-v="{sort}">{value.html}</td>'
    if value is None:
        return '<td data-v="">–</td>'
    sort = value if isinstance(value, int | float) else str(value)
    numeric = ' class="num"' if isinstance(value, int | float) else ""
    return f'<td{numeric} data-v="{esc(sort)}">{esc(fmt(value))}</td>'


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    sortable: bool = False,
    cls: str = "",
) -> str:
    """An HTML table; ``sortable`` tables sort by a click on a header (the page's script)."""
    classes = " ".join(c for c in (cls, "sortable" if sortable else "") if c)
    title = ' title="click to sort"' if sortable else ""
    head = "".join(f"<th{title}>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def bar(value: Any, scale: float = 1.0) -> Raw:
    """A number with a horizontal bar of ``value / scale`` (accuracy, recall, error) behind it."""
    if not isinstance(value, int | float) or math.isnan(value):
        return Raw("–", None)
    width = max(0.0, min(100.0, 100.0 * value / scale)) if scale else 0.0
    return Raw(
        f'<span class="bar"><span style="width:{width:.1f}%"></span></span>{esc(fmt(value))}',
        value,
    )


def flatten(facts: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (``split_sizes.train``), lists joined: one row per fact."""
    flat: dict[str, Any] = {}
    for key, value in facts.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = ", ".join(fmt(v) for v in value)
        else:
            flat[name] = value
    return flat


def key_values(facts: Mapping[str, Any]) -> str:
    """Facts as a compact grid of name/value pairs (flattened), several per line."""
    items = "".join(
        f"<div{' class=wide' if len(fmt(value)) > 36 else ''}><dt>{esc(key)}</dt>"
        f"<dd>{esc(fmt(value))}</dd></div>"
        for key, value in flatten(facts).items()
    )
    return f'<dl class="facts">{items}</dl>' if items else "<p class='hint'>none recorded</p>"


def _downscaled(path: Path) -> tuple[bytes, str]:
    from PIL import Image

    with Image.open(path) as image:
        image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
        buffer = io.BytesIO()
        if image.mode in ("RGBA", "LA", "P"):
            image.save(buffer, format="PNG", optimize=True)
            return buffer.getvalue(), "image/png"
        image.convert("RGB").save(buffer, format="JPEG", quality=85)
        return buffer.getvalue(), "image/jpeg"


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image(path: Path, alt: str, caption: str = "") -> str:
    """A view from a run folder, inlined; larger than ``MAX_IMAGE_BYTES`` it is downscaled first."""
    if not path.is_file():
        return ""
    data = path.read_bytes()
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(
        path.suffix.lower(), "image/png"
    )
    note = ""
    if len(data) > MAX_IMAGE_BYTES:
        data, mime = _downscaled(path)
        note = f" (downscaled to at most {MAX_IMAGE_SIDE} px for the report)"
    text = esc(caption or path.name) + esc(note)
    return (
        f'<figure class="view"><img src="{data_uri(data, mime)}" alt="{esc(alt)}">'
        f"<figcaption>{text}</figcaption></figure>"
    )


STYLE = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dde5; --bg:#f6f7f9; --accent:#2f5fb3; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:var(--fg); background:#fff; }
header, main, footer { max-width:1400px; margin:0 auto; padding:0 20px; }
header { padding-top:18px; border-bottom:1px solid var(--line); }
h1 { font-size:22px; margin:0 0 4px; } h2 { font-size:19px; margin:28px 0 8px; }
h3 { font-size:16px; margin:20px 0 8px; } h4 { font-size:14px; margin:16px 0 6px; }
.meta, .hint, figcaption, footer { color:var(--muted); }
.hint { font-style:italic; } code, pre { font:12px/1.4 ui-monospace,Menlo,Consolas,monospace; }
pre { background:var(--bg); padding:10px; overflow:auto; max-height:420px; border-radius:4px; }
nav a { margin-right:14px; } a { color:var(--accent); text-decoration:none; }
table { border-collapse:collapse; margin:6px 0 12px; font-variant-numeric:tabular-nums; }
th, td { border-bottom:1px solid var(--line); padding:4px 8px; text-align:left;
  vertical-align:top; }
th { background:var(--bg); font-weight:600; white-space:nowrap; }
td.num { text-align:right; } td:first-child { white-space:nowrap; }
.comparison table { font-size:13px; } .comparison th, .comparison td { padding:3px 6px; }
.comparison th { white-space:normal; vertical-align:bottom; } .comparison td { white-space:nowrap; }
.comparison td .fit-ok, .comparison td .fit-warn { white-space:normal; display:inline-block;
  min-width:7em; }
table.sortable th { cursor:pointer; user-select:none; }
table.sortable th::after { content:" \\2195"; color:#aab; font-size:11px; }
table.sortable th[aria-sort=ascending]::after { content:" \\25B2"; color:var(--accent); }
table.sortable th[aria-sort=descending]::after { content:" \\25BC"; color:var(--accent); }
dl.facts { display:grid; grid-template-columns:repeat(auto-fill,minmax(250px,1fr));
  gap:2px 18px; margin:4px 0 10px; }
dl.facts div { display:flex; gap:8px; border-bottom:1px solid var(--line); padding:2px 0; }
dl.facts div.wide { grid-column:1 / -1; } dl.facts dt { color:var(--muted); flex:0 0 auto; }
dl.facts dd { margin:0; overflow-wrap:anywhere; }
.scroll { overflow-x:auto; }
.fit-ok { color:#1d7a3a; } .fit-warn { color:#a65b00; }
.bar { display:inline-block; width:90px; height:9px; background:#e8ebf1; margin-right:6px;
  vertical-align:middle; border-radius:2px; }
.bar span { display:block; height:100%; background:var(--accent); border-radius:2px; }
.swatch { display:inline-block; width:12px; height:12px; border-radius:2px; margin-right:6px;
  vertical-align:-1px; }
.legend span.item { margin-right:16px; white-space:nowrap; }
.charts { display:grid; grid-template-columns:repeat(auto-fill,minmax(460px,1fr)); gap:10px; }
figure { margin:0; } figure img { max-width:100%; height:auto; display:block; }
figure.view { margin:8px 0; max-width:min(100%, 1000px); }
.views.pair > figure.view { flex:1 1 400px; max-width:600px; } .views.pair img { width:100%; }
.views { display:flex; flex-wrap:wrap; gap:12px; align-items:flex-start; }
details.run { border:1px solid var(--line); border-radius:6px; margin:8px 0; }
details.run > summary { padding:8px 12px; cursor:pointer; background:var(--bg); }
details.run[open] > summary { border-bottom:1px solid var(--line); }
.run-body { padding:4px 14px 12px; }
.task-section { border-top:1px dashed var(--line); margin-top:10px; }
button { font:inherit; padding:3px 10px; margin:6px 0; cursor:pointer; }
"""

SCRIPT = """
(function () {
  function key(row, col) {
    var v = row.cells[col].getAttribute("data-v");
    if (v === null || v === "") return null;
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var dir = th.getAttribute("aria-sort") === "descending" ? "ascending" : "descending";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a, col), y = key(b, col);
      if (x === null || y === null) return (x === null) - (y === null);  // missing last
      if (typeof x === "number" && typeof y === "number") return sign * (x - y);
      return sign * String(x).localeCompare(String(y));
    }).forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th); });
  });
  var toggle = document.getElementById("toggle-runs");
  if (toggle) toggle.addEventListener("click", function () {
    var open = toggle.textContent.indexOf("expand") === 0;
    document.querySelectorAll("details.run").forEach(function (d) { d.open = open; });
    toggle.textContent = open ? "collapse all runs" : "expand all runs";
  });
})();
"""


def document(title: str, header: str, body: str, footer: str) -> str:
    """The whole page: inline style and script, no external resource of any kind."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<header>{header}</header><main>{body}</main><footer>{footer}</footer>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )
