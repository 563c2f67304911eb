"""The subjects to review first: one page per dataset from its quality-control tables
(:mod:`lesionseg.evaluation.quality`), the flagged and lowest-scoring segmentations on top, each with its reasons
and its overlay (which ends with the network's uncertainty), then every subject and method in a sortable table.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping

import pandas as pd

from lesionseg.inference.methods import split_method
from lesionseg.io import atomic_path
from lesionseg.reporting.pages import SORT_SCRIPT, anchor, page, relative_href, sortable_table_html, thumbnails

PathLike = str | os.PathLike

REVIEW_SHOWN = 20
"""Subjects shown with their overlays at the top of the page (the table below has them all)."""
REVIEW_LEGEND = (
    "Score: the lowest predicted Dice over the regions, from the method's own probabilities and a fit on the "
    "validation subjects. A subject is flagged, with its reasons, where a predicted Dice is below 0.5, its "
    "uncertainty or the disagreement of its averaged predictions is well above the validation subjects', a "
    "predicted volume lies outside the training range, a region the training data always had is empty, or an "
    "input's texture is unlike the training images'. The score ranks subjects for a look; it does not "
    "replace one (README 'Quality control')."
)


def review_order(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every method's quality table in one, with a ``method`` column: flagged rows first, then by score."""
    frames = [table.assign(method=method) for method, table in tables.items() if not table.empty]
    if not frames:
        return pd.DataFrame(columns=["subject", "method", "score", "flagged", "reasons"])
    combined = pd.concat(frames, ignore_index=True)
    combined["flagged"] = combined["flagged"].astype(bool)
    columns = ["subject", "method", "score", "flagged", "reasons"]
    combined = combined[columns + [c for c in combined.columns if c not in columns]]
    return combined.sort_values(["flagged", "score", "subject", "method"], ascending=[False, True, True, True],
                                kind="stable", ignore_index=True)


def review_html(dataset: str, tables: Mapping[str, pd.DataFrame], overlays: Mapping[str, Mapping[str, PathLike]],
                page_dir: PathLike | None, shown: int = REVIEW_SHOWN) -> str:
    """The page (see the module's description); ``overlays``: subject -> network family -> its overlay."""
    order = review_order(tables)
    flagged = order[order["flagged"]]
    parts = [f"<p>{len(flagged)} of {len(order)} segmentations flagged "
             f"({order['subject'].nunique()} subjects, {order['method'].nunique()} methods).</p>",
             f"<p class='legend'>{html.escape(REVIEW_LEGEND)}</p>", "<h2>Review first</h2>"]
    seen: set[str] = set()
    for row in order.itertuples(index=False):
        if len(seen) >= shown:
            break
        if row.subject in seen:  # one entry per subject: its worst method's
            continue
        seen.add(row.subject)
        network = split_method(row.method)[0]
        overlay = overlays.get(row.subject, {}).get(network)
        reasons = html.escape(row.reasons) if isinstance(row.reasons, str) and row.reasons else "not flagged"
        parts.append(f"<h3 id='{anchor(row.subject)}'>{html.escape(row.subject)} — {html.escape(row.method)}, "
                     f"score {row.score:.2f}</h3><p>{reasons}</p>")
        if overlay is not None and os.path.exists(overlay):
            parts.append(thumbnails([overlay], [relative_href(overlay, page_dir)], width=900))
    parts.append("<h2>Every subject and method</h2>")
    parts.append(sortable_table_html(order.round(3), table_id="quality"))
    return page(f"{dataset}: segmentations to review first", parts, SORT_SCRIPT)


def write_review_page(dataset: str, table_paths: Mapping[str, PathLike],
                      overlays: Mapping[str, Mapping[str, PathLike]], html_path: PathLike,
                      shown: int = REVIEW_SHOWN) -> None:
    """Write :func:`review_html` from the quality tables' CSV files (method -> path)."""
    tables = {method: pd.read_csv(path) for method, path in table_paths.items()}
    text = review_html(dataset, tables, overlays, os.path.dirname(html_path) or ".", shown)
    with atomic_path(html_path) as tmp:
        tmp.write_text(text)
