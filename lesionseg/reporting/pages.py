"""HTML pages of the report: tables with grouped headers, the per-subject table, the run overview.

Each page is standalone (inline style, no external resources), so it reads the
same opened from the results folder and embedded in Snakemake's report, and
fits a 1366 px wide screen: numbers right-aligned, text left-aligned, one
number per cell.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lesionseg.reporting.tables import looks_numeric

PathLike = str | os.PathLike

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em 1.5em; color: #222; font-size: 14px; }
h1 { font-size: 1.35em; margin: 0 0 0.6em 0; }
h2 { font-size: 1.1em; margin: 1.4em 0 0.4em 0; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 12px; }
th, td { padding: 0.25em 0.5em; border-bottom: 1px solid #e3e3e3; white-space: nowrap; }
th { background: #f3f3f3; font-weight: 600; }
thead th { text-align: center; }
thead tr:last-child th { border-bottom: 1px solid #999; }
th.group { border-left: 2px solid #fff; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
td.text, th.text { text-align: left; }
td.text { white-space: normal; max-width: 30em; }
td.start, th.start { border-left: 1px solid #ccc; }
p.legend { color: #555; font-size: 12px; max-width: 75em; margin: 0.3em 0 1em 0; }
.side { display: flex; flex-wrap: wrap; gap: 0 2.5em; align-items: flex-start; }
table.sortable th, table.sortable td { padding: 0.2em 0.3em; }
th.sortable { cursor: pointer; }
th.sortable:hover { background: #e6e6e6; }
tr.first td { border-top: 1px solid #bbb; }
img.overlay { max-width: 100%; border: 1px solid #ddd; }
p.contents { margin: 0.3em 0 0.8em 0; }
div.shown { margin: 0.9em 0 0.3em 0; }
div.shown h3 { font-size: 1em; margin: 0 0 0.3em 0; }
div.shown h3 span { font-weight: normal; color: #555; }
div.pictures { display: flex; flex-wrap: wrap; gap: 0.5em; align-items: flex-start; }
img.thumbnail { display: block; border: 1px solid #ddd; }
div.pager { margin: 0.4em 0; font-size: 12px; }
div.pager span.count { display: inline-block; min-width: 16em; text-align: center; color: #555; }
"""

THUMBNAIL_WIDTH = 480
"""Width (px) of an embedded picture of a subject (:func:`thumbnails`): about 30 KB as JPEG. A four-method overlay
(1650 px) keeps its region colours and its cyan and magenta error rims legible at this size (at 200 px they are
gone); two sit side by side on a 1366 px screen, and the bounded set of a large cohort stays a few MB."""

PAGE_ROWS = 500
"""A sortable table with more rows shows this many at a time (:data:`SORT_SCRIPT`): the browser lays out only the
rows shown, so a table of a large cohort's tens of thousands of rows opens in a second or two, not ten."""

SORT_SCRIPT = """
<script>
// Sortable tables: click a heading to sort the rows by its column (numbers numerically, text alphabetically; click
// again to reverse). A table with a pager shows one page of rows at a time, of those that contain every word typed
// in its filter; the rows of the other pages are hidden, which costs the browser nothing to lay out.
document.querySelectorAll("table.sortable").forEach(function (table) {
  var body = table.tBodies[0], rows = Array.from(body.rows);
  var pager = document.querySelector("div.pager[data-table='" + table.id + "']");
  var size = pager ? Number(pager.dataset.rows) : rows.length, start = 0, words = [];
  var matching = rows, visible = rows.slice(0, size);
  var texts = new Map();
  function render() {
    if (!pager) return;
    visible.forEach(function (row) { row.hidden = true; });
    visible = matching.slice(start, start + size);
    visible.forEach(function (row) { row.hidden = false; });
    var number = function (n) { return n.toLocaleString("en"); };
    pager.querySelector("span.count").textContent = matching.length === 0 ? "no row matches" :
      "rows " + number(start + 1) + "–" + number(start + visible.length) + " of " + number(matching.length) +
      (matching.length < rows.length ? " matching (" + number(rows.length) + " in all)" : "");
  }
  function filter() {
    matching = words.length === 0 ? rows : rows.filter(function (row) {
      if (!texts.has(row)) texts.set(row, row.textContent.toLowerCase());
      return words.every(function (word) { return texts.get(row).indexOf(word) >= 0; });
    });
    start = 0;
    render();
  }
  if (pager) {
    pager.querySelector("input").addEventListener("input", function (event) {
      words = event.target.value.toLowerCase().split(/\\s+/).filter(Boolean);
      filter();
    });
    pager.querySelectorAll("button").forEach(function (button) {
      button.addEventListener("click", function () {
        var next = start + Number(button.dataset.step) * size;
        if (next >= 0 && next < matching.length) { start = next; render(); }
      });
    });
  }
  var collator = new Intl.Collator();
  table.querySelectorAll("th.sortable").forEach(function (th) {
    th.addEventListener("click", function () {
      var column = Number(th.dataset.column);
      var ascending = th.dataset.order !== "ascending";
      th.dataset.order = ascending ? "ascending" : "descending";
      var keyed = rows.map(function (row) {
        var text = row.cells[column].dataset.value || row.cells[column].textContent;
        var number = parseFloat(text);
        return [isNaN(number) ? text : number, row];
      });
      keyed.sort(function (a, b) {
        var x = a[0], y = b[0];
        var order = typeof x === "number" && typeof y === "number" ? x - y : collator.compare(String(x), String(y));
        return ascending ? order : -order;
      });
      rows = keyed.map(function (pair) { return pair[1]; });
      rows.forEach(function (row) { row.classList.remove("first"); body.appendChild(row); });
      filter();
    });
  });
});
</script>
"""

_NA = "–"


def page(title: str, body: Sequence[str], script: str = "") -> str:
    """A standalone HTML page: the title as heading, then the body's parts."""
    return "\n".join([
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>", *body, script, "</body></html>",
    ])


def legend(text: str) -> str:
    return f"<p class='legend'>{html.escape(text)}</p>" if text else ""


def _is_number(value: object) -> bool:
    text = str(value).strip()
    return text == _NA or looks_numeric(text)


def table_html(table: pd.DataFrame, index: bool = True, css_class: str = "") -> str:
    """A table with one or two header rows: a two-level column index (group, column) becomes grouped headers
    (each group's heading spanning its columns, a rule at each group's start). Cells that read as numbers are
    right-aligned, the index and text cells left-aligned; missing values are ``–``."""
    frame = table if index else table.set_index(table.columns[0])
    two_levels = isinstance(frame.columns, pd.MultiIndex)
    columns = list(frame.columns) if two_levels else [("", str(c)) for c in frame.columns]
    starts = {i for i, c in enumerate(columns) if i == 0 or c[0] != columns[i - 1][0]}
    index_name = html.escape(str(frame.index.name or ""))
    head = []
    if two_levels:
        cells = [f"<th class='text' rowspan='2'>{index_name}</th>"]
        i = 0
        while i < len(columns):
            span = 1
            while i + span < len(columns) and columns[i + span][0] == columns[i][0]:
                span += 1
            group = html.escape(str(columns[i][0]))
            cells.append(f"<th class='group start' colspan='{span}'>{group}</th>" if group
                         else "".join("<th></th>" for _ in range(span)))
            i += span
        head.append("<tr>" + "".join(cells) + "</tr>")
        head.append("<tr>" + "".join(f"<th class='{'start' if i in starts else ''}'>{html.escape(str(c[1]))}</th>"
                                     for i, c in enumerate(columns)) + "</tr>")
    else:
        head.append(f"<tr><th class='text'>{index_name}</th>"
                    + "".join(f"<th>{html.escape(str(c[1]))}</th>" for c in columns) + "</tr>")
    numeric = [all(_is_number(v) for v in frame.iloc[:, i] if str(v) != "") for i in range(frame.shape[1])]
    body = []
    for label, row in zip(frame.index, frame.itertuples(index=False), strict=True):
        cells = [f"<td class='text'>{html.escape(str(label))}</td>"]
        for i, value in enumerate(row):
            text = _NA if value is None or (isinstance(value, float) and not np.isfinite(value)) else str(value)
            classes = ["number" if numeric[i] else "text"] + (["start"] if two_levels and i in starts else [])
            cells.append(f"<td class='{' '.join(classes)}'>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table class='{css_class}'><thead>{''.join(head)}</thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def embedded_image(path: PathLike, width: int = 1300, quality: int = 85, css_class: str = "overlay") -> str:
    """An ``<img>`` holding the picture as a JPEG data URI, scaled to at most ``width`` pixels (never enlarged)."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality, optimize=True)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f"<img class='{css_class}' alt='{html.escape(os.path.basename(str(path)))}' width='{image.width}' "
            f"height='{image.height}' src='data:image/jpeg;base64,{data}'>")


def thumbnails(paths: Sequence[PathLike], hrefs: Sequence[str | None] | None = None,
               width: int = THUMBNAIL_WIDTH) -> str:
    """Small embedded copies of pictures (JPEG) to show side by side, all scaled by one factor, the one that makes
    the widest ``width`` px wide (none is enlarged): their panels and text keep one size. Each links to its
    full-size file at its ``hrefs`` entry, if given (a path relative to the page: it opens when the page is read
    from the results folder)."""
    from PIL import Image

    widths = []
    for path in paths:
        with Image.open(path) as image:  # reads the header only
            widths.append(image.width)
    scale = min(1.0, width / max(widths, default=1))
    out = []
    for path, picture_width, href in zip(paths, widths, hrefs or [None] * len(paths), strict=True):
        image = embedded_image(path, max(1, round(picture_width * scale)), quality=75, css_class="thumbnail")
        out.append(image if href is None else
                   f"<a href='{html.escape(href)}' title='full size: {html.escape(str(path))}'>{image}</a>")
    return "".join(out)


def relative_href(path: PathLike, page_dir: PathLike | None) -> str:
    """A link from a page in ``page_dir`` to ``path`` (both relative to the working directory, or absolute);
    ``path`` itself without ``page_dir``."""
    if page_dir is None:
        return Path(path).as_posix()
    return Path(os.path.relpath(path, page_dir)).as_posix()


def anchor(subject: str) -> str:
    """The id of a subject's pictures on a page."""
    return "overlay-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in subject)


def sortable_table_html(table: pd.DataFrame, links: Mapping[str, Mapping[str, str]] | None = None,
                        group_column: str | None = None, table_id: str = "rows", page_rows: int = PAGE_ROWS) -> str:
    """A flat table whose columns sort on a click (numbers numerically; :data:`SORT_SCRIPT`). ``links``: column
    -> (cell value -> the link's target). Rows where ``group_column`` changes value get a heavier rule (one group
    per subject). Numeric columns are right-aligned by a style on the table's id, not a class on each cell, so
    that a table of tens of thousands of rows stays a few MB. More than ``page_rows`` rows: every row is in the
    table, shown ``page_rows`` at a time, with a filter and previous / next buttons above it."""
    numeric = [all(_is_number(v) for v in table.iloc[:, i] if str(v) not in ("", _NA)) for i in
               range(table.shape[1])]
    columns = [str(c) for c in table.columns]
    column_links = [(links or {}).get(c, {}) for c in columns]
    right = ", ".join(f"#{table_id} td:nth-child({i + 1})" for i, number in enumerate(numeric) if number)
    style = f"<style>{right} {{ text-align: right; font-variant-numeric: tabular-nums; }}</style>" if right else ""
    head = "".join(f"<th class='sortable {'number' if numeric[i] else 'text'}' data-column='{i}' "
                   f"title='sort by {html.escape(c)}'>{html.escape(c)}</th>"
                   for i, c in enumerate(columns))
    rows, previous = [], None
    for values in table.itertuples(index=False):
        group = values[columns.index(group_column)] if group_column else None
        first = group_column is not None and group != previous
        previous = group
        cells = []
        for i, value in enumerate(values):
            text = html.escape(str(value))
            target = column_links[i].get(str(value))
            if target is not None:
                text = f"<a href='{html.escape(target)}'>{text}</a>"
            cells.append(f"<td>{text}</td>")
        hidden = " hidden" if len(rows) >= page_rows else ""
        rows.append(("<tr class='first'" if first else "<tr") + hidden + ">" + "".join(cells) + "</tr>")
    pager = ""
    if len(rows) > page_rows:
        pager = (f"<div class='pager' data-table='{table_id}' data-rows='{page_rows}'><input type='search' size='40' "
                 "placeholder='filter: words each row contains' aria-label='filter the rows'> "
                 "<button data-step='-1'>◀ previous</button> "
                 f"<span class='count'>rows 1–{page_rows:,} of {len(rows):,}</span> "
                 "<button data-step='1'>next ▶</button></div>")
    return (f"{style}{pager}<table class='sortable' id='{table_id}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")
