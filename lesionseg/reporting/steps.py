"""The reporting rules' work: a dataset's summary (CSV, Markdown, HTML, figures) and its per-subject page."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from lesionseg.inference.methods import split_method
from lesionseg.io import atomic_path
from lesionseg.labels import LabelScheme
from lesionseg.reporting.gallery import Embedding, lowest_dice, shown_subjects
from lesionseg.reporting.pages import (
    SORT_SCRIPT,
    anchor,
    legend,
    page,
    relative_href,
    sortable_table_html,
    table_html,
    thumbnails,
)
from lesionseg.reporting.tables import (
    COMPARISON_LEGEND,
    HEADLINE_METRICS,
    LESION_TABLE_METRICS,
    LESIONWISE_LEGEND,
    POSTPROCESSING_LEGEND,
    SIGNIFICANCE_LEGEND,
    SPREAD_LEGEND,
    SUMMARY_LEGEND,
    crf_significance,
    format_value,
    formatted_comparison,
    formatted_postprocessing,
    formatted_significance,
    grouped_summary,
    load_per_subject,
    method_comparison,
    method_order,
    postprocessing_table,
    summary_table,
    volume_table,
    write_summary,
)

PathLike = str | os.PathLike

SUBJECT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("dice", "Dice"), ("sensitivity", "Sens."), ("precision", "Prec."), ("specificity", "Spec."),
    ("hd95", "HD95"), ("assd", "ASSD"), ("lesionwise_dice", "LW Dice"), ("lesionwise_hd95", "LW HD95"),
    ("lesion_f1", "F1"), ("volume_truth_mm3", "Truth ml"), ("volume_prediction_mm3", "Pred. ml"),
)
"""Metrics of the per-subject table and their (short) headings, so that every metric of every region fits."""


def _section(heading: str, body: str, text: str) -> str:
    return f"<h2>{html.escape(heading)}</h2>\n{body}\n{legend(text)}\n"


def summary_html(results: pd.DataFrame, scheme: LabelScheme, title: str,
                 comparison: pd.DataFrame | None = None) -> str:
    """A standalone HTML page: the headline table (means) and the median [IQR] table beside it, the lesion-wise
    table, the networks compared (with two or more; ``comparison``: :func:`method_comparison`'s table, computed
    here without one), the CRF's effect and the unscored subjects' volumes."""
    regions = list(scheme.regions)
    parts = []
    summary = summary_table(results, regions)
    if summary.empty:
        parts.append("<p>No test subject has truth: nothing is scored.</p>")
    else:
        means = table_html(grouped_summary(summary, regions, HEADLINE_METRICS))
        spread = table_html(grouped_summary(summary, regions, ("dice", "hd95"), "median_iqr"))
        parts.append("<h2>Scores of the test subjects with truth</h2>")
        parts.append(f"<div class='side'><div>{means}</div><div>{spread}</div></div>")
        parts.append(legend(f"{SUMMARY_LEGEND} Second table: {SPREAD_LEGEND} {scheme.region_legend()}"))
        lesionwise = grouped_summary(summary, regions, LESION_TABLE_METRICS)
        if lesionwise.shape[1] > 1:
            parts.append(_section("Lesion-wise scores (BraTS 2023+, ISLES)", table_html(lesionwise),
                                  LESIONWISE_LEGEND))
    if comparison is None:
        comparison = method_comparison(results, regions)
    if not comparison.empty:
        parts.append(_section("Methods compared (paired Wilcoxon signed-rank test)",
                              table_html(formatted_comparison(comparison), index=False), COMPARISON_LEGEND))
    significance = crf_significance(results, regions)
    if not significance.empty:
        parts.append(_section("Effect of the CRF (paired Wilcoxon signed-rank test)",
                              table_html(formatted_significance(significance), index=False), SIGNIFICANCE_LEGEND))
    volumes = volume_table(results)
    if not volumes.empty:
        parts.append(_section("Subjects without truth (not scored)", table_html(volumes.round(2), index=False),
                              "Predicted volume of each region in ml."))
    return page(title, parts)


def subject_rows(results: pd.DataFrame, splits: Mapping[str, str]) -> pd.DataFrame:
    """One row per subject, method and region (subjects in order, then methods, then regions): the subject's
    split and every metric of :data:`SUBJECT_COLUMNS` as display strings (volumes in ml)."""
    order = {m: i for i, m in enumerate(method_order(results))}
    regions = {r: i for i, r in enumerate(pd.unique(results["region"].astype(str)))}
    frame = results.assign(method=results["method"].astype(str), region=results["region"].astype(str))
    frame = frame.sort_values(["subject", "method", "region"], kind="stable",
                              key=lambda c: c.map(order) if c.name == "method" else
                              c.map(regions) if c.name == "region" else c)
    table = pd.DataFrame({"Subject": frame["subject"], "Split": frame["subject"].map(lambda s: splits.get(s, "")),
                          "Method": frame["method"], "Region": frame["region"]})
    for metric, heading in SUBJECT_COLUMNS:
        values = frame[metric] if metric in frame.columns else pd.Series(np.nan, index=frame.index)
        table[heading] = [format_value(v, metric) for v in values]
    if "truth_lesions" in frame.columns:
        table.insert(table.columns.get_loc("F1"), "T/D/FP", [
            "–" if not np.isfinite(t) else f"{t:.0f}/{d:.0f}/{f:.0f}"
            for t, d, f in zip(frame["truth_lesions"], frame["detected_lesions"], frame["false_positive_lesions"],
                               strict=True)])
    return table.reset_index(drop=True)


OVERLAY_COLUMN = "Overlay"
"""The per-subject table's column with the full-size overlay of each row's network family."""


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _shown_html(subject: str, split: str, reasons: Sequence[str], pictures: Sequence[PathLike],
                page_dir: PathLike | None) -> str:
    """One subject's pictures (thumbnails linked to the full-size files) under a heading with why they are shown."""
    why = "".join(f" · {html.escape(r)}" for r in reasons)
    pictures = list(pictures)
    small = thumbnails(pictures, [relative_href(path, page_dir) for path in pictures])
    return (f"<div class='shown' id='{anchor(subject)}'><h3>{html.escape(subject)} <span>({html.escape(split)})"
            f"{why}</span></h3><div class='pictures'>{small}</div></div>")


def _overlay_column(table: pd.DataFrame, overlays: Mapping[str, Mapping[str, PathLike]],
                    page_dir: PathLike | None) -> tuple[list[str], dict[str, str], str]:
    """For each row of the per-subject table, its network family's overlay as ``<network>/<subject>.png`` (– for
    none); those names' links to the files; and the folder they are in."""
    networks = {m: split_method(m)[0] for m in table["Method"].unique()}
    files = {(s, network): path for s, paths in overlays.items() for network, path in paths.items()}
    names = [f"{networks[m]}/{Path(files[s, networks[m]]).name}" if (s, networks[m]) in files else "–"
             for s, m in zip(table["Subject"], table["Method"], strict=True)]
    links = {f"{network}/{Path(path).name}": relative_href(path, page_dir) for (_, network), path in files.items()}
    folder = Path(next(iter(files.values()))).parent.parent.as_posix() + "/" if files else ""
    return names, links, folder


def subject_table_html(results: pd.DataFrame, splits: Mapping[str, str],
                       overlays: Mapping[str, Mapping[str, PathLike]], scheme: LabelScheme, title: str,
                       embedding: Embedding | None = None, page_dir: PathLike | None = None) -> str:
    """The per-subject page: every metric of every method and region per subject (sortable), with the path of
    each row's full-size overlay (``overlays``: subject -> network family -> its overlay), and the overlays of
    the subjects :func:`~lesionseg.reporting.gallery.shown_subjects` chooses embedded below the table as
    thumbnails: every subject's in a small cohort; in a large one the lowest Dice per region and a fixed
    sample (``embedding``: how many; the config's defaults without it). ``page_dir``: the page's folder, for the
    links to the full-size files."""
    embedding = embedding or Embedding.default()
    table = subject_rows(results, splits)
    subjects = list(overlays)
    n, small = len(subjects), embedding.embeds_all(len(subjects))
    lowest = [] if small else lowest_dice(results, list(scheme.regions), embedding.worst, subjects)
    notable = [(subject, f"lowest {low.region} Dice: {dice:.3f} ({_ordinal(rank)}, {low.method})")
               for low in lowest for rank, (subject, dice) in enumerate(low.subjects, start=1)]
    shown = shown_subjects(subjects, embedding, notable)
    links: dict[str, dict[str, str]] = {"Subject": {s: "#" + anchor(s) for s in shown}}
    table[OVERLAY_COLUMN], links[OVERLAY_COLUMN], folder = _overlay_column(table, overlays, page_dir)
    files = f"{folder}<network>/<subject>.png"
    if not subjects:
        parts = ["<p>No subject has an overlay.</p>"]
    elif small:
        parts = [legend(f"{n:,} subjects with overlays (at most {embedding.all_up_to}): each one's overlays are "
                        f"below the table, one per network family, small; full size in {files} (the table's "
                        "Overlay column; click a picture to open it when this page is read from the results "
                        "folder)."),
                 "<p class='contents'><a href='#table'>Every subject</a> · <a href='#overlays'>Overlays</a></p>"]
    else:
        ranked = ", ".join(f"{low.region}: {low.method}" for low in lowest) or "no subject has truth"
        parts = [legend(f"{n:,} subjects with overlays: more than {embedding.all_up_to}, so this page embeds the "
                        f"overlays of {len(shown)} of them, small: per region the {embedding.worst} with the lowest "
                        f"Dice of the method with the highest mean Dice of the region ({ranked}), and a fixed sample "
                        f"of {embedding.sample} (the subjects whose id has the smallest SHA-256 digest: independent "
                        "of the results, and a new subject changes it only by taking one member's place). Every "
                        f"subject's full-size overlays are in {files}: the table's Overlay column (a link when this "
                        "page is read from the results folder)."),
                 f"<p class='contents'><a href='#table'>Every subject</a> · <a href='#lowest'>Lowest Dice per "
                 f"region ({len({s for s, _ in notable})} subjects)</a> · <a href='#sample'>Fixed sample</a></p>"]
    parts += [f"<h2 id='table'>Every subject, method and region ({len(table):,} rows)</h2>",
              sortable_table_html(table, links, group_column="Subject", table_id="subjects"),
              legend("One row per subject, method and region; click a heading to sort, a subject to see its "
                     "overlays (a link where they are embedded). Overlay: the full-size overlay of the row's "
                     f"network family, in {folder or 'figures/overlays/'}. Sens. sensitivity, Prec. precision, "
                     "Spec. specificity (true negatives over the whole volume), HD95 and ASSD in mm, LW lesion-wise "
                     "(BraTS 2023+; HD95 in mm), T/D/FP: truth lesions / detected / false-positive components, F1: "
                     "lesion detection F1, volumes in ml; – where the subject has no truth. "
                     + scheme.region_legend())]

    def pictures(chosen: Mapping[str, Sequence[str]]) -> list[str]:
        return [_shown_html(s, splits.get(s, ""), reasons, overlays[s].values(), page_dir)
                for s, reasons in chosen.items()]

    if small:
        parts += (["<h2 id='overlays'>Overlays</h2>"] if subjects else []) + pictures(shown)
    else:
        sample_only = ["fixed sample"]
        parts += ["<h2 id='lowest'>Lowest Dice per region</h2>",
                  *pictures({s: r for s, r in shown.items() if r != sample_only}),
                  "<h2 id='sample'>Fixed sample</h2>", *pictures({s: [] for s, r in shown.items() if r == sample_only})]
    return page(title, parts, SORT_SCRIPT)


def read_splits(manifest_path: PathLike) -> dict[str, str]:
    """Subject -> split (train, val, test, fold<k>) from a dataset's manifest."""
    manifest = pd.read_csv(manifest_path, sep="\t", dtype=str, keep_default_na=False)
    return dict(zip(manifest["subject"], manifest["split"], strict=True))


def summarise_dataset(dataset: str, per_subject: Mapping[str, PathLike], scheme: LabelScheme, csv_path: PathLike,
                      markdown_path: PathLike, html_path: PathLike, significance_path: PathLike,
                      comparison_path: PathLike, boxplot_path: PathLike, crf_effect_path: PathLike,
                      ensembles: Mapping[str, Sequence[str]] | None = None) -> None:
    """Every summary of one dataset, from each method's per-subject table (methods in the given order):
    ``comparison_path`` is the networks' comparison (:func:`~lesionseg.reporting.tables.method_comparison`,
    ``ensembles``: the dataset's ensemble networks -> their members), with a header only when the dataset has
    fewer than two networks."""
    from lesionseg.reporting.figures import crf_effect_figure, dice_boxplot  # matplotlib: only this rule draws

    results = load_per_subject(per_subject)
    regions = list(scheme.regions)
    title = f"{dataset}: evaluation on the test subjects"
    comparison = method_comparison(results, regions, ensembles=ensembles)
    write_summary(results, regions, csv_path, markdown_path, significance_csv_path=significance_path, title=title,
                  region_legend=scheme.region_legend(), comparison=comparison, comparison_csv_path=comparison_path)
    with atomic_path(html_path) as tmp:
        tmp.write_text(summary_html(results, scheme, title, comparison))
    colours = dict(scheme.region_colours)
    dice_boxplot(results, regions, boxplot_path, title=f"{dataset}: Dice per region on the test subjects")
    crf_effect_figure(results, regions, crf_effect_path, colours, title=f"{dataset}: effect of the CRF per subject")


def write_subject_table(dataset: str, per_subject: Mapping[str, PathLike], manifest_path: PathLike,
                        overlays: Mapping[str, Mapping[str, PathLike]], scheme: LabelScheme, html_path: PathLike,
                        embedding: Embedding | None = None) -> None:
    """The per-subject page of one dataset (overlays: subject -> network family -> its overlay figure; paths
    relative to the working directory, like ``html_path``)."""
    results = load_per_subject(per_subject)
    page_html = subject_table_html(results, read_splits(manifest_path), overlays, scheme,
                                   f"{dataset}: every subject, method and region", embedding,
                                   os.path.dirname(html_path) or ".")
    with atomic_path(html_path) as tmp:
        tmp.write_text(page_html)


def summarise_postprocessing(dataset: str, choices: Mapping[str, PathLike], csv_path: PathLike,
                             html_path: PathLike) -> pd.DataFrame:
    """The post-processing chosen for each method of a dataset (method -> its choice's YAML), as CSV and HTML."""
    table = postprocessing_table({method: yaml.safe_load(Path(path).read_text()) for method, path in choices.items()})
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    title = f"{dataset}: post-processing chosen on the validation split"
    section = _section("Choice per method and region", table_html(formatted_postprocessing(table), index=False),
                       POSTPROCESSING_LEGEND)
    with atomic_path(html_path) as tmp:
        tmp.write_text(page(title, [section]))
    return table

