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
"""

SORT_SCRIPT = """
<script>
// Sort a table's body by the clicked column: numbers numerically, text alphabetically; click again to reverse.
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th.sortable").forEach(function (th) {
    th.addEventListener("click", function () {
      var column = Number(th.dataset.column), body = table.tBodies[0];
      var ascending = th.dataset.order !== "ascending";
      th.dataset.order = ascending ? "ascending" : "descending";
      var rows = Array.from(body.rows);
      var key = function (row) {
        var text = row.cells[column].dataset.value || row.cells[column].textContent;
        var number = parseFloat(text);
        return isNaN(number) ? text : number;
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { row.classList.remove("first"); body.appendChild(row); });
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


def embedded_image(path: PathLike, width: int = 1300) -> str:
    """An ``<img>`` holding the picture as a JPEG data URI, scaled to at most ``width`` pixels (a page with one
    figure per subject stays small enough to open)."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img class='overlay' alt='{html.escape(os.path.basename(str(path)))}' src='data:image/jpeg;base64,{data}'>"


def anchor(subject: str) -> str:
    """The id of a subject's overlays on the per-subject page."""
    return "overlay-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in subject)


def sortable_table_html(table: pd.DataFrame, links: Mapping[str, str] | None = None,
                        group_column: str | None = None) -> str:
    """A flat table whose columns sort on a click (numbers numerically). ``links``: value of the first column ->
    anchor to link it to. Rows where ``group_column`` changes value get a heavier rule (one group per subject)."""
    numeric = [all(_is_number(v) for v in table.iloc[:, i] if str(v) not in ("", _NA)) for i in
               range(table.shape[1])]
    head = "".join(f"<th class='sortable {'number' if numeric[i] else 'text'}' data-column='{i}' "
                   f"title='sort by {html.escape(str(c))}'>{html.escape(str(c))}</th>"
                   for i, c in enumerate(table.columns))
    rows, previous = [], None
    for values in table.itertuples(index=False):
        group = getattr(values, group_column) if group_column else None
        first = group_column is not None and group != previous
        previous = group
        cells = []
        for i, value in enumerate(values):
            text = html.escape(str(value))
            if i == 0 and links and str(value) in links:
                text = f"<a href='#{links[str(value)]}'>{text}</a>"
            cells.append(f"<td class='{'number' if numeric[i] else 'text'}'>{text}</td>")
        rows.append(f"<tr class='{'first' if first else ''}'>" + "".join(cells) + "</tr>")
    return (f"<table class='sortable'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
