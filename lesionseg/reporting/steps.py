"""The reporting rules' work: a dataset's summary (CSV, Markdown, HTML, boxplot) and per-subject overlays."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from lesionseg.io import atomic_path, read_channels, read_image
from lesionseg.labels import LabelScheme
from lesionseg.preprocessing.geometry import canonical_grid, to_preprocessing_grid
from lesionseg.reporting.figures import dice_boxplot, overlay_figure
from lesionseg.reporting.tables import (
    POSTPROCESSING_LEGEND,
    SIGNIFICANCE_LEGEND,
    SUMMARY_LEGEND,
    crf_significance,
    formatted_postprocessing,
    formatted_significance,
    formatted_summary,
    load_per_subject,
    postprocessing_table,
    summary_table,
    volume_table,
    write_summary,
)

PathLike = str | os.PathLike

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
p.legend { color: #555; font-size: 0.85em; max-width: 60em; }
"""


def _section(heading: str, table: pd.DataFrame, legend: str) -> str:
    body = table.to_html(index=False, border=0, na_rep="–", escape=True)
    return f"<h2>{html.escape(heading)}</h2>\n{body}\n<p class='legend'>{html.escape(legend)}</p>\n"


def _page_start(title: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>")


def summary_html(results: pd.DataFrame, regions: Sequence[str], title: str) -> str:
    """A standalone HTML page of the summary, the CRF's effect and the unscored subjects' volumes."""
    parts = [_page_start(title)]
    summary = summary_table(results, regions)
    if summary.empty:
        parts.append("<p>No test subject has truth: nothing is scored.</p>")
    else:
        parts.append(_section("Scores of the test subjects with truth", formatted_summary(summary, regions),
                              SUMMARY_LEGEND))
    significance = crf_significance(results, regions)
    if not significance.empty:
        parts.append(_section("Effect of the CRF (paired Wilcoxon signed-rank test)",
                              formatted_significance(significance), SIGNIFICANCE_LEGEND))
    volumes = volume_table(results)
    if not volumes.empty:
        parts.append(_section("Subjects without truth (not scored)", volumes.round(2),
                              "Predicted volume of each region in ml."))
    parts.append("</body></html>")
    return "\n".join(parts)


def summarise_dataset(dataset: str, per_subject: Mapping[str, PathLike], scheme: LabelScheme, csv_path: PathLike,
                      markdown_path: PathLike, html_path: PathLike, significance_path: PathLike,
                      boxplot_path: PathLike) -> None:
    """Every summary of one dataset, from each method's per-subject table (methods in the given order)."""
    results = load_per_subject(per_subject)
    regions = list(scheme.regions)
    title = f"{dataset}: evaluation on the test subjects"
    write_summary(results, regions, csv_path, markdown_path, significance_csv_path=significance_path, title=title)
    with atomic_path(html_path) as tmp:
        tmp.write_text(summary_html(results, regions, title))
    dice_boxplot(results, regions, boxplot_path, title=f"{dataset}: Dice per region on the test subjects")


def summarise_postprocessing(dataset: str, choices: Mapping[str, PathLike], csv_path: PathLike,
                             html_path: PathLike) -> pd.DataFrame:
    """The post-processing chosen for each method of a dataset (method -> its choice's YAML), as CSV and HTML."""
    table = postprocessing_table({method: yaml.safe_load(Path(path).read_text()) for method, path in choices.items()})
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    title = f"{dataset}: post-processing chosen on the validation split"
    section = _section("Choice per method and region", formatted_postprocessing(table), POSTPROCESSING_LEGEND)
    with atomic_path(html_path) as tmp:
        tmp.write_text("\n".join([_page_start(title), section, "</body></html>"]))
    return table


def overlay_subject(subject: str, method: str, image_paths: Sequence[PathLike], modalities: Sequence[str],
                    truth_path: PathLike | None, segmentation_path: PathLike, scheme: LabelScheme,
                    output: PathLike) -> None:
    """Every modality of the subject (as given) with the truth and the method's segmentation outlined.

    Shown in canonical (RAS+) axis order whatever the files' storage order, so
    every subject's axial slices look the same way up.
    """
    channels = read_channels(list(image_paths))
    canonical = canonical_grid(channels.data.shape, channels.affine)

    def reoriented(data: np.ndarray) -> np.ndarray:
        return to_preprocessing_grid(data, canonical, order=0)

    images = np.moveaxis(reoriented(channels.data), -1, 0)
    segmentation = reoriented(read_image(segmentation_path, dtype=None).data)
    truth = None if truth_path is None else reoriented(read_image(truth_path, dtype=None).data)
    overlay_figure(images, modalities, truth, segmentation, scheme, output, title=f"{subject} - {method}",
                   spacing=tuple(canonical.spacing))
