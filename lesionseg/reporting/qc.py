"""The preprocessing QC page of a run: every subject's brain box in a sortable table, and its QC pictures.

One report item for the whole run, rather than one per subject: in a small cohort every subject's QC picture is
embedded (small); in a large one a bounded set (:mod:`lesionseg.reporting.gallery`): the subjects whose brain
box is most unusual, and a fixed sample. The brain box is the preprocessing grid's extent (the brain mask's
bounding box plus the margin, in ml): a skull-stripping that kept the skull or neck, or lost part of the brain,
shows as a box much larger or smaller than the cohort's median. Every picture stays a file beside the report.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lesionseg.io import atomic_path
from lesionseg.preprocessing.geometry import GridGeometry
from lesionseg.reporting.gallery import Embedding, most_unusual, shown_subjects
from lesionseg.reporting.pages import (
    SORT_SCRIPT,
    anchor,
    legend,
    page,
    relative_href,
    sortable_table_html,
    thumbnails,
)

PathLike = str | os.PathLike


@dataclass(frozen=True)
class QCPictures:
    """A dataset's subjects (in manifest order) with each one's QC picture and preprocessing grid (geometry.json)."""

    dataset: str
    subjects: Sequence[str]
    pictures: Sequence[PathLike]
    grids: Sequence[PathLike]

    def __post_init__(self):
        if not len(self.subjects) == len(self.pictures) == len(self.grids):
            raise ValueError(f"{self.dataset}: {len(self.subjects)} subjects, {len(self.pictures)} QC pictures and "
                             f"{len(self.grids)} grids; expected one of each per subject")


def brain_box_ml(grid_path: PathLike) -> float:
    """Volume (ml) of a subject's preprocessing grid: its brain mask's bounding box plus the margin."""
    grid = GridGeometry.from_json(grid_path)
    return float(np.prod(grid.shape) * np.prod(grid.spacing) / 1000)


def _dataset_html(qc: QCPictures, embedding: Embedding, page_dir: PathLike | None) -> list[str]:
    volumes = {s: brain_box_ml(g) for s, g in zip(qc.subjects, qc.grids, strict=True)}
    median = float(np.median(list(volumes.values()))) if volumes else float("nan")
    unusual = [] if embedding.embeds_all(len(qc.subjects)) else most_unusual(volumes, embedding.worst)
    shown = shown_subjects(list(qc.subjects), embedding,
                           [(s, f"brain box {volumes[s]:,.0f} ml, {volumes[s] / median:.2f} × the median")
                            for s in unusual])
    pictures = dict(zip(qc.subjects, qc.pictures, strict=True))
    ids = {s: f"{anchor(s)}-{qc.dataset}" for s in shown}
    table = pd.DataFrame({"Subject": list(qc.subjects),
                          "Brain box ml": [f"{volumes[s]:.0f}" for s in qc.subjects],
                          "× median": [f"{volumes[s] / median:.2f}" for s in qc.subjects],
                          "QC picture": [Path(p).name for p in qc.pictures]})
    links = {"Subject": {s: "#" + i for s, i in ids.items()},
             "QC picture": {Path(p).name: relative_href(p, page_dir) for p in qc.pictures}}
    folder = Path(qc.pictures[0]).parent.as_posix() + "/" if qc.pictures else ""
    n = len(qc.subjects)
    if embedding.embeds_all(n):
        said = (f"{n:,} subjects (at most {embedding.all_up_to}): every subject's QC picture is below the table, "
                f"small; full size in {folder}.")
    else:
        said = (f"{n:,} subjects: more than {embedding.all_up_to}, so {len(shown)} QC pictures are embedded, small: "
                f"the {len(unusual)} subjects whose brain box is furthest from the median ({median:,.0f} ml; as far "
                "above as below, on a log scale: a failed skull-strip shows here), then a fixed sample of "
                f"{embedding.sample} (the subjects whose id has the smallest SHA-256 digest). Every subject's full-"
                f"size QC picture is in {folder} (the table's last column).")
    name = html.escape(qc.dataset)
    parts = [f"<h2 id='qc-{name}'>{name}</h2>", legend(said),
             f"<p class='contents'><a href='#qc-{name}-pictures'>The {len(shown)} QC pictures</a> (below the "
             "table)</p>" if shown else "",
             sortable_table_html(table, links, table_id=f"qc-table-{name}"),
             legend("One row per subject; click a heading to sort, a subject to see its QC picture (a link where it "
                    "is embedded). Brain box: the preprocessing grid (the brain mask's bounding box plus the "
                    "margin), in ml and over the dataset's median; QC picture: a link when this page is read from "
                    "the results folder.")]
    parts.append(f"<h3 id='qc-{name}-pictures'>QC pictures of {name}</h3>" if shown else "")
    for subject, reasons in shown.items():
        why = "".join(f" · {html.escape(r)}" for r in reasons)
        small = thumbnails([pictures[subject]], [relative_href(pictures[subject], page_dir)])
        parts.append(f"<div class='shown' id='{ids[subject]}'><h3>{html.escape(subject)} <span>{why}</span></h3>"
                     f"<div class='pictures'>{small}</div></div>")
    return parts


def qc_page_html(datasets: Sequence[QCPictures], embedding: Embedding | None = None,
                 page_dir: PathLike | None = None) -> str:
    """The QC page: per dataset, a sortable table of every subject's brain box and the QC pictures
    :func:`~lesionseg.reporting.gallery.shown_subjects` chooses (``embedding``: how many, the config's defaults
    without it; ``page_dir``: the page's folder, for the links)."""
    embedding = embedding or Embedding.default()
    parts = [legend("Each modality on its original grid (brain mask outlined in red) and after preprocessing "
                    "(skull-stripped, N4-corrected, resampled, cropped and normalised), axial and coronal, through "
                    "the brain's centre.")]
    if len(datasets) > 1:
        parts.append("<p class='contents'>" + " · ".join(
            f"<a href='#qc-{html.escape(d.dataset)}'>{html.escape(d.dataset)}</a>" for d in datasets) + "</p>")
    for qc in datasets:
        parts += _dataset_html(qc, embedding, page_dir)
    return page("Preprocessing QC", parts, SORT_SCRIPT)


def write_qc_page(datasets: Sequence[QCPictures], html_path: PathLike, embedding: Embedding | None = None) -> None:
    """Write the QC page atomically (paths relative to the working directory, like ``html_path``)."""
    page_html = qc_page_html(datasets, embedding, os.path.dirname(html_path) or ".")
    with atomic_path(html_path) as tmp:
        tmp.write_text(page_html)
