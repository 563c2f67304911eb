"""Summary tables of the evaluation: per method, region and metric, as CSV and Markdown.

Input is the evaluation stage's per-subject table of every method, concatenated
by :func:`load_per_subject`: columns ``method, subject, region`` and the metrics
of :data:`lesionseg.evaluation.metrics.METRICS`, one row per method, subject and
region. A *method* is a model, an ensemble, or either followed by
:data:`CRF_SUFFIX` (the same segmentation after the 3D CRF), each optionally
followed by ``+pp`` (after the post-processing chosen on the validation split;
:mod:`lesionseg.inference.methods`).

- :func:`summary_table`: one row per method, the mean, median and quartiles of
  each metric in each region over the subjects with truth (numeric, for CSV);
  :func:`grouped_summary` lays it out like the papers' tables (Kamnitsas et al.
  2017 table 3, Havaei et al. 2017 table 4): one column group per metric, one
  column per region inside it, one number per cell (the mean; or the median
  [IQR] in the table beside it).
- :func:`crf_significance`: paired two-sided Wilcoxon signed-rank test of every
  method against the same method after the CRF, per region and metric.
- :func:`method_comparison`: the same test of every method against the best
  method of another network (``deepmedic`` vs ``nnunet``), per region, for Dice
  and HD95.
- :func:`volume_table`: predicted volumes (ml) of the subjects without truth,
  which are reported but never scored.
- :func:`write_summary`: all of the above as a CSV and a Markdown report,
  written atomically.

Quartiles use linear interpolation between order statistics (numpy's default).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lesionseg.evaluation.lesionwise import LESIONWISE_METRICS
from lesionseg.evaluation.metrics import METRICS
from lesionseg.inference.methods import CRF_SUFFIX, split_method, split_postprocessing
from lesionseg.inference.postprocessing import RegionOperation
from lesionseg.io import atomic_path

PathLike = str | os.PathLike

SUMMARY_METRICS: tuple[str, ...] = (
    "dice", "sensitivity", "specificity", "precision", "hd95", "assd", *LESIONWISE_METRICS,
)
"""Metrics of the numeric summary (CSV), where the per-subject tables have them."""

HEADLINE_METRICS: tuple[str, ...] = ("dice", "sensitivity", "precision", "hd95")
"""Metrics of the headline table (the papers'). Specificity is left out: with true negatives counted over the
whole volume it is 0.999... for every method and tells them apart only in the fifth digit."""

LESION_TABLE_METRICS: tuple[str, ...] = ("lesionwise_dice", "lesionwise_hd95", "lesion_f1")
"""Metrics of the lesion-wise table (BraTS 2023+ ranking metrics, and the ISLES detection F1)."""

SIGNIFICANCE_METRICS: tuple[str, ...] = ("dice", "hd95", "sensitivity", "precision")
"""Metrics whose change by the CRF is tested."""

STATISTICS: tuple[str, ...] = ("mean", "median", "q1", "q3")
"""Statistics of each metric and region in the numeric summary, in column order."""

SIGNIFICANCE_COLUMNS: tuple[str, ...] = (
    "method", "region", "metric", "n", "mean_without", "mean_with", "mean_difference", "statistic", "p_value",
    "smallest_p", "note",
)
"""Columns of :func:`crf_significance`."""

COMPARISON_METRICS: tuple[str, ...] = ("dice", "hd95")
"""Metrics on which the networks are compared: the overlap and the boundary distance the papers rank by."""

COMPARISON_COLUMNS: tuple[str, ...] = (
    "method", "compared_with", "region", "metric", "n", "mean_method", "mean_other", "mean_difference", "statistic",
    "p_value", "smallest_p", "note",
)
"""Columns of :func:`method_comparison`."""


@dataclass(frozen=True)
class MetricDisplay:
    """How a metric is shown in the Markdown report: heading, unit, decimals, and a scale from the CSV's unit."""

    label: str
    unit: str = ""
    decimals: int = 3
    scale: float = 1.0
    lower_is_better: bool = False


DISPLAY: dict[str, MetricDisplay] = {
    "dice": MetricDisplay("Dice"),
    "sensitivity": MetricDisplay("Sensitivity"),
    "specificity": MetricDisplay("Specificity", decimals=5),  # 0.999... for every method: the fifth digit differs
    "precision": MetricDisplay("Precision"),
    "hd95": MetricDisplay("HD95", "mm", 1, lower_is_better=True),
    "assd": MetricDisplay("ASSD", "mm", 1, lower_is_better=True),
    "hausdorff": MetricDisplay("Hausdorff", "mm", 1, lower_is_better=True),
    "volume_truth_mm3": MetricDisplay("Truth volume", "ml", 2, 1e-3),
    "volume_prediction_mm3": MetricDisplay("Predicted volume", "ml", 2, 1e-3),
    "volume_difference_mm3": MetricDisplay("Volume difference", "ml", 2, 1e-3),
    "tp": MetricDisplay("TP", "voxels", 0),
    "fp": MetricDisplay("FP", "voxels", 0, lower_is_better=True),
    "fn": MetricDisplay("FN", "voxels", 0, lower_is_better=True),
    "lesionwise_dice": MetricDisplay("Lesion-wise Dice"),
    "lesionwise_hd95": MetricDisplay("Lesion-wise HD95", "mm", 1, lower_is_better=True),
    "truth_lesions": MetricDisplay("Truth lesions", "", 0),
    "predicted_lesions": MetricDisplay("Predicted lesions", "", 0),
    "detected_lesions": MetricDisplay("Detected lesions", "", 0),
    "missed_lesions": MetricDisplay("Missed lesions", "", 0, lower_is_better=True),
    "false_positive_lesions": MetricDisplay("False-positive lesions", "", 0, lower_is_better=True),
    "lesion_f1": MetricDisplay("Lesion F1"),
    "absolute_volume_difference_mm3": MetricDisplay("Absolute volume difference", "ml", 2, 1e-3,
                                                    lower_is_better=True),
}

_NA = "–"  # shown for a missing value in Markdown


def metric_display(metric: str) -> MetricDisplay:
    return DISPLAY.get(metric, MetricDisplay(metric))


# --------------------------------------------------------------------------------------------------------------
# Loading and selecting rows


def load_per_subject(paths: Mapping[str, PathLike]) -> pd.DataFrame:
    """Concatenate the per-subject CSVs of several methods (method -> path) with a ``method`` column first.

    ``method`` is an ordered categorical in the order of ``paths``, so tables and
    figures list the methods in that order; ``subject`` and ``region`` are read as
    strings (subject ids such as ``007`` keep their zeros).
    """
    if not paths:
        raise ValueError("no per-subject table to load")
    frames = []
    for method, path in paths.items():
        frame = pd.read_csv(path, dtype={"subject": str, "region": str})
        missing = {"subject", "region"} - set(frame.columns)
        if missing:
            raise ValueError(f"{path}: not a per-subject table, columns {sorted(missing)} are missing")
        frames.append(frame.drop(columns="method", errors="ignore").assign(method=method))
    results = pd.concat(frames, ignore_index=True)
    results["method"] = pd.Categorical(results["method"], categories=list(paths), ordered=True)
    return results[["method", *[c for c in results.columns if c != "method"]]]


def method_order(results: pd.DataFrame) -> list[str]:
    """Methods present in ``results``, in category order if ``method`` is categorical, else in order of appearance."""
    present = set(results["method"].astype(str))
    if isinstance(results["method"].dtype, pd.CategoricalDtype):
        return [str(m) for m in results["method"].cat.categories if str(m) in present]
    return [str(m) for m in pd.unique(results["method"].astype(str))]


def _scored_mask(results: pd.DataFrame) -> pd.Series:
    """True for the rows with truth: any metric other than the predicted volume is a number."""
    columns = [c for c in METRICS if c in results.columns and c != "volume_prediction_mm3"]
    if not columns:
        raise ValueError(f"results have none of the metric columns {list(METRICS)}")
    return results[columns].notna().any(axis=1)


def scored_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of subjects with truth (scored); the others hold only the predicted volume."""
    return results[_scored_mask(results)]


def _check_columns(results: pd.DataFrame, regions: Sequence[str], metrics: Sequence[str]) -> None:
    missing = [m for m in ("method", "subject", "region", *metrics) if m not in results.columns]
    if missing:
        raise ValueError(f"results lack the columns {missing} (have {list(results.columns)})")
    known = set(results["region"].astype(str))
    unknown = [r for r in regions if r not in known]
    if unknown:
        raise ValueError(f"regions {unknown} are not in the results (regions there: {sorted(known)})")


# --------------------------------------------------------------------------------------------------------------
# Summary


def _statistics(values: np.ndarray) -> dict[str, float]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return dict.fromkeys(STATISTICS, math.nan)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"mean": float(values.mean()), "median": float(median), "q1": float(q1), "q3": float(q3)}


def present_metrics(results: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """The ``metrics`` that ``results`` has columns for (per-subject tables written before a metric existed
    lack it), in the given order."""
    return [m for m in metrics if m in results.columns]


def summary_table(
    results: pd.DataFrame,
    regions: Sequence[str],
    metrics: Sequence[str] = SUMMARY_METRICS,
) -> pd.DataFrame:
    """One row per method (index ``method``, in method order) over the subjects with truth.

    Numeric form (for CSV): ``n_subjects`` then, for each metric the results
    have and each region, columns ``<metric>_<region>_mean``, ``_median``,
    ``_q1`` and ``_q3``, in the units of the per-subject table. Methods without
    any subject with truth are left out.
    """
    metrics = present_metrics(results, metrics)
    _check_columns(results, regions, metrics)
    scored = scored_rows(results)
    rows: dict[str, dict[str, float]] = {}
    for method in method_order(scored):
        group = scored[scored["method"].astype(str) == method]
        row: dict[str, float] = {"n_subjects": int(group["subject"].nunique())}
        for metric in metrics:
            for region in regions:
                values = group.loc[group["region"].astype(str) == region, metric].to_numpy(dtype=np.float64)
                for name, value in _statistics(values).items():
                    row[f"{metric}_{region}_{name}"] = value
        rows[method] = row
    columns = ["n_subjects", *[f"{m}_{r}_{s}" for m in metrics for r in regions for s in STATISTICS]]
    summary = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    summary["n_subjects"] = summary["n_subjects"].astype(int)
    summary.index.name = "method"
    return summary


def format_value(value: float, metric: str, signed: bool = False) -> str:
    """One value of ``metric`` in its display unit and decimals (``–`` if missing)."""
    if value is None or not np.isfinite(value):
        return _NA
    display = metric_display(metric)
    return f"{value * display.scale:{'+' if signed else ''}.{display.decimals}f}"


def format_spread(median: float, q1: float, q3: float, metric: str) -> str:
    """``median [Q1, Q3]`` in the metric's display unit, e.g. ``0.915 [0.880, 0.930]``."""
    if not np.isfinite(median):
        return _NA
    parts = [format_value(v, metric) for v in (median, q1, q3)]
    return f"{parts[0]} [{parts[1]}, {parts[2]}]"


def metric_heading(metric: str) -> str:
    """``Dice`` or ``HD95 (mm)``: a column group's heading."""
    display = metric_display(metric)
    return display.label + (f" ({display.unit})" if display.unit else "")


def grouped_summary(summary: pd.DataFrame, regions: Sequence[str], metrics: Sequence[str],
                    statistic: str = "mean") -> pd.DataFrame:
    """The numeric :func:`summary_table` laid out like the papers' tables: index the methods, columns a
    two-level index (metric heading, region) after ``("", "n")``, one string per cell in the metric's display
    unit: the mean (``statistic="mean"``) or ``median [Q1, Q3]`` (``statistic="median_iqr"``). Metrics the
    summary lacks are left out."""
    if statistic not in ("mean", "median_iqr"):
        raise ValueError(f"statistic must be 'mean' or 'median_iqr', got {statistic!r}")
    columns: dict[tuple[str, str], list[str]] = {("", "n"): [str(int(n)) for n in summary["n_subjects"]]}
    for metric in metrics:
        if f"{metric}_{regions[0]}_mean" not in summary.columns:
            continue
        for region in regions:
            prefix = f"{metric}_{region}_"
            columns[(metric_heading(metric), region)] = [
                format_value(row[prefix + "mean"], metric) if statistic == "mean"
                else format_spread(row[prefix + "median"], row[prefix + "q1"], row[prefix + "q3"], metric)
                for _, row in summary.iterrows()
            ]
    table = pd.DataFrame(columns, index=summary.index.astype(str))
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "Method"
    return table


def flat_headings(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`grouped_summary` with one header row (``Dice WT``, ``HD95 (mm) ET``) and the methods as the first
    column, for Markdown."""
    flat = table.copy()
    flat.columns = [" ".join(part for part in column if part) for column in table.columns]
    return flat.reset_index()


# --------------------------------------------------------------------------------------------------------------
# CRF significance


def crf_pairs(results: pd.DataFrame) -> list[tuple[str, str]]:
    """``(method, method + '+crf')`` for every method present both without and with the CRF, in method order."""
    methods = method_order(results)
    return [(m, m + CRF_SUFFIX) for m in methods if not m.endswith(CRF_SUFFIX) and m + CRF_SUFFIX in methods]


def _by_subject(scored: pd.DataFrame, method: str, region: str, metric: str) -> pd.Series:
    rows = scored[(scored["method"].astype(str) == method) & (scored["region"].astype(str) == region)]
    duplicated = rows["subject"][rows["subject"].duplicated()].unique()
    if duplicated.size:
        raise ValueError(f"method {method!r}, region {region!r}: subjects {list(duplicated)} appear more than once")
    return rows.set_index("subject")[metric].astype(np.float64)


def paired_values(scored: pd.DataFrame, methods: Mapping[str, str], region: str, metric: str) -> pd.DataFrame:
    """One column per entry of ``methods`` (column name -> method), in its order: ``metric`` of ``region`` for
    the subjects scored by every one of the methods (index: subject). Raises if a subject appears twice for a
    method."""
    return pd.concat({name: _by_subject(scored, method, region, metric) for name, method in methods.items()},
                     axis=1, join="inner").dropna()


def crf_paired_values(scored: pd.DataFrame, method: str, crf_method: str, region: str, metric: str) -> pd.DataFrame:
    """Columns ``without`` and ``with``: ``metric`` of ``region`` for the subjects scored by both ``method`` and
    ``crf_method`` (index: subject); :func:`paired_values`."""
    return paired_values(scored, {"without": method, "with": crf_method}, region, metric)


def paired_wilcoxon(reference: np.ndarray, compared: np.ndarray) -> tuple[float, float, str]:
    """Two-sided Wilcoxon signed-rank test of paired values, on the differences ``compared - reference``:
    ``(statistic, p_value, note)``.

    Degenerate cases are not passed to scipy: fewer than 2 pairs give NaN
    statistic and p-value; differences all zero give p = 1 (no evidence of any
    change) and a NaN statistic. Zero differences are otherwise dropped (scipy's
    ``zero_method='wilcox'``); scipy's warnings (e.g. a normal approximation on
    a small sample) go to the note instead of the console.
    """
    reference = np.asarray(reference, dtype=np.float64)
    compared = np.asarray(compared, dtype=np.float64)
    n = reference.size
    if n < 2:
        return math.nan, math.nan, f"not tested: {n} paired subject{'s' if n != 1 else ''}, need 2 or more"
    differences = compared - reference
    n_zero = int(np.count_nonzero(differences == 0))
    if n_zero == n:
        return math.nan, 1.0, "all differences are zero"
    notes = [f"{n_zero} zero difference{'s' if n_zero > 1 else ''} dropped"] if n_zero else []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = stats.wilcoxon(compared, reference, alternative="two-sided")
    notes += sorted({str(w.message).splitlines()[0] for w in caught})
    return float(result.statistic), float(result.pvalue), "; ".join(notes)


def smallest_p_value(n: int) -> float:
    """The smallest two-sided p the exact Wilcoxon signed-rank test can give with ``n`` pairs (no zero
    differences, no ties): every difference of one sign, ``2 / 2**n`` (0.125 for 4 pairs); NaN below 2 pairs.
    With few subjects nothing below it can be reached, however large the effect."""
    return 2.0 / 2.0**n if n >= 2 else math.nan


def paired_test(pairs: pd.DataFrame) -> dict[str, Any]:
    """The test of a :func:`paired_values` frame of two columns, reference then compared (e.g. ``without`` and
    ``with``): ``n`` pairs, ``mean_<reference>``, ``mean_<compared>``, ``mean_difference`` (mean of compared -
    reference), and the ``statistic``, ``p_value`` and ``note`` of :func:`paired_wilcoxon` with the
    ``smallest_p`` attainable with the pairs that differ (:func:`smallest_p_value`). Means are NaN without
    pairs."""
    reference, compared = pairs.columns
    before, after = pairs[reference].to_numpy(), pairs[compared].to_numpy()
    statistic, p_value, note = paired_wilcoxon(before, after)
    changed = int(np.count_nonzero(after != before))  # zero differences are dropped
    empty = len(pairs) == 0
    return {
        "n": len(pairs),
        f"mean_{reference}": math.nan if empty else float(before.mean()),
        f"mean_{compared}": math.nan if empty else float(after.mean()),
        "mean_difference": math.nan if empty else float((after - before).mean()),
        "statistic": statistic, "p_value": p_value, "smallest_p": smallest_p_value(changed), "note": note,
    }


def crf_significance(
    results: pd.DataFrame, regions: Sequence[str], metrics: Sequence[str] = SIGNIFICANCE_METRICS
) -> pd.DataFrame:
    """Does the CRF change the scores? One row per method with a ``+crf`` twin, region and metric.

    Pairs are the subjects with truth scored by both methods. Columns (see
    :data:`SIGNIFICANCE_COLUMNS`): ``n`` pairs, the means without and with the
    CRF, ``mean_difference`` = mean of (with - without) (positive: the CRF
    raised the metric, which is worse for distances), and the Wilcoxon
    ``statistic`` and two-sided ``p_value`` of :func:`paired_wilcoxon`, the
    ``smallest_p`` attainable with the pairs that differ (:func:`smallest_p_value`), with
    a ``note`` for the degenerate cases. p-values are not corrected for multiple
    comparisons. Methods without a ``+crf`` twin are skipped.
    """
    metrics = present_metrics(results, metrics)
    _check_columns(results, regions, metrics)
    scored = scored_rows(results)
    rows = [{"method": method, "region": region, "metric": metric,
             **paired_test(crf_paired_values(scored, method, crf_method, region, metric))}
            for method, crf_method in crf_pairs(scored) for region in regions for metric in metrics]
    return pd.DataFrame(rows, columns=list(SIGNIFICANCE_COLUMNS))


# --------------------------------------------------------------------------------------------------------------
# Networks compared


def _variant(method: str) -> tuple[bool, bool]:
    """``(with CRF, with post-processing)``: what follows the network in a method's name."""
    return split_method(method)[1], split_postprocessing(method)[1]


def related(network: str, other: str, ensembles: Mapping[str, Sequence[str]]) -> bool:
    """Whether two networks are the same, or one is an ensemble with the other among its members, or both are
    ensembles sharing a member (``ensembles``: ensemble network -> its member networks)."""
    own, theirs = set(ensembles.get(network, ())), set(ensembles.get(other, ()))
    return network == other or network in theirs or other in own or bool(own & theirs)


def best_other(scored: pd.DataFrame, method: str, region: str,
               ensembles: Mapping[str, Sequence[str]] | None = None) -> str | None:
    """The method of another network, after the same steps as ``method`` (CRF, post-processing), with the
    highest mean Dice of ``region`` over the subjects it scored; the first in method order on a tie. A network's
    own ensembles, and ensembles of common members, are not another network (:func:`related`): ``deepmedic``
    is compared with ``nnunet``, not with their average. None if no other network has that variant scored."""
    network = split_method(method)[0]
    candidates = [m for m in method_order(scored) if _variant(m) == _variant(method)
                  and not related(network, split_method(m)[0], ensembles or {})]
    means = {m: _by_subject(scored, m, region, "dice").mean() for m in candidates}
    means = {m: mean for m, mean in means.items() if np.isfinite(mean)}
    return max(means, key=means.__getitem__) if means else None  # max keeps the first of equal values


def method_comparison(
    results: pd.DataFrame, regions: Sequence[str], metrics: Sequence[str] = COMPARISON_METRICS,
    ensembles: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Is a network better than the others? One row per method, region and metric: the method against
    :func:`best_other`, the best method of another network after the same steps (``deepmedic`` against the
    best of ``nnunet`` and ``havaei``, ``deepmedic+crf`` against the best ``+crf`` one), chosen per region by
    mean Dice.

    Like against like keeps the table readable and answers the question asked (which network, with the
    same CRF and post-processing); the effect of the CRF is :func:`crf_significance`'s. A pair is listed
    once: when each method is the other's best (always, with two networks), under the first in method
    order. Pairs are the subjects with truth scored by both. Columns (see :data:`COMPARISON_COLUMNS`):
    ``n`` pairs, their means for the method and the other, ``mean_difference`` = mean of (method - other)
    (positive: the method's scores are higher, which is worse for distances), then the Wilcoxon test of
    :func:`paired_test`; p-values are not corrected for multiple comparisons. Empty (with the columns) with
    fewer than two networks. ``ensembles`` (ensemble network -> member networks) keeps an ensemble from being
    its members' other.
    """
    metrics = present_metrics(results, metrics)
    _check_columns(results, regions, list(dict.fromkeys(["dice", *metrics])))  # Dice chooses the other
    scored = scored_rows(results)
    rows, listed = [], set()
    for method in method_order(scored):
        for region in regions:
            other = best_other(scored, method, region, ensembles)
            if other is None or (other, method, region) in listed:
                continue
            listed.add((method, other, region))
            rows += [{"method": method, "compared_with": other, "region": region, "metric": metric,
                      **paired_test(paired_values(scored, {"other": other, "method": method}, region, metric))}
                     for metric in metrics]
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def format_p_value(p: float) -> str:
    """``0.031``, ``<0.001``, or ``–`` when there is no p-value."""
    if p is None or not np.isfinite(p):
        return _NA
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def formatted_significance(significance: pd.DataFrame) -> pd.DataFrame:
    """:func:`crf_significance` as strings in each metric's display unit, for Markdown."""
    rows = []
    for _, row in significance.iterrows():
        metric = str(row["metric"])
        display = metric_display(metric)
        rows.append({
            "Method": row["method"],
            "Region": row["region"],
            "Metric": display.label + (f" ({display.unit})" if display.unit else ""),
            "n": int(row["n"]),
            "Without CRF": format_value(row["mean_without"], metric),
            "With CRF": format_value(row["mean_with"], metric),
            "Difference": format_value(row["mean_difference"], metric, signed=True),
            "p": format_p_value(row["p_value"]),
            "Smallest p": format_p_value(row["smallest_p"]),
            "Note": row["note"],
        })
    return pd.DataFrame(rows, columns=["Method", "Region", "Metric", "n", "Without CRF", "With CRF", "Difference",
                                       "p", "Smallest p", "Note"])


def better_mean(method: str, other: str, mean_difference: float, metric: str) -> str:
    """Whose mean of ``metric`` is better, given ``mean_difference`` = method - other (lower is better for
    distances); ``–`` when they are equal or there are none."""
    if not np.isfinite(mean_difference) or mean_difference == 0:
        return _NA
    return method if (mean_difference < 0) == metric_display(metric).lower_is_better else other


def formatted_comparison(comparison: pd.DataFrame) -> pd.DataFrame:
    """:func:`method_comparison` as strings in each metric's display unit, for Markdown and HTML, with the
    method whose mean is better named, so that the sign of an HD95 difference need not be decoded."""
    rows = []
    for _, row in comparison.iterrows():
        metric = str(row["metric"])
        rows.append({
            "Method": row["method"],
            "Compared with": row["compared_with"],
            "Region": row["region"],
            "Metric": metric_heading(metric),
            "n": int(row["n"]),
            "Method's mean": format_value(row["mean_method"], metric),
            "Other's mean": format_value(row["mean_other"], metric),
            "Difference": format_value(row["mean_difference"], metric, signed=True),
            "Better mean": better_mean(str(row["method"]), str(row["compared_with"]), row["mean_difference"],
                                       metric),
            "p": format_p_value(row["p_value"]),
            "Smallest p": format_p_value(row["smallest_p"]),
            "Note": row["note"],
        })
    return pd.DataFrame(rows, columns=["Method", "Compared with", "Region", "Metric", "n", "Method's mean",
                                       "Other's mean", "Difference", "Better mean", "p", "Smallest p", "Note"])


# --------------------------------------------------------------------------------------------------------------
# Subjects without truth


def volume_table(results: pd.DataFrame) -> pd.DataFrame:
    """Predicted volumes (ml) of the subjects without truth, which are reported but not scored.

    One row per subject and method (columns ``subject``, ``method``, then one
    column per region, in order of appearance, holding the volume in ml); sorted
    by subject, then method order. Empty (with those columns) if every subject has truth.
    """
    unscored = results[~_scored_mask(results) & results["volume_prediction_mm3"].notna()]
    regions = [str(r) for r in pd.unique(results["region"].astype(str))]
    if unscored.empty:
        return pd.DataFrame(columns=["subject", "method", *regions])
    table = unscored.assign(volume_ml=unscored["volume_prediction_mm3"] * 1e-3, method=unscored["method"].astype(str))
    table = table.pivot_table(index=["subject", "method"], columns="region", values="volume_ml", aggfunc="first",
                              observed=True)
    table = table.reindex(columns=[r for r in regions if r in table.columns]).reset_index()
    table.columns.name = None
    order = {m: i for i, m in enumerate(method_order(results))}
    table = table.sort_values(["subject", "method"], key=lambda c: c.map(order) if c.name == "method" else c)
    return table.reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------------
# Post-processing chosen on the validation split

POSTPROCESSING_COLUMNS: tuple[str, ...] = (
    "method", "region", "operation", "min_component_mm3", "postprocessing", "n_validation", "dice_before",
    "dice_after",
)
"""Columns of :func:`postprocessing_table`."""


def postprocessing_table(choices: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per method and region of the post-processing chosen on the validation split.

    ``choices``: method -> the record written for it by
    :func:`lesionseg.inference.steps.choose_postprocessing_on_validation`. Columns (see
    :data:`POSTPROCESSING_COLUMNS`): the operation (kind, volume in mm^3, and in words), the number of
    validation subjects and their mean Dice of the region without and with the post-processing.
    """
    rows = []
    for method, record in choices.items():
        dice = record["validation_dice"]
        for region, entry in record["choice"].items():
            operation = RegionOperation.from_mapping(entry)
            rows.append({
                "method": method, "region": region, "operation": operation.kind,
                "min_component_mm3": operation.min_component_mm3, "postprocessing": operation.describe(),
                "n_validation": len(record["validation_subjects"]),
                "dice_before": dice["before"][region], "dice_after": dice["after"][region],
            })
    return pd.DataFrame(rows, columns=list(POSTPROCESSING_COLUMNS))


def formatted_postprocessing(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`postprocessing_table` as strings, for Markdown and HTML."""
    return pd.DataFrame({
        "Method": table["method"], "Region": table["region"], "Post-processing": table["postprocessing"],
        "n": table["n_validation"].astype(int),
        "Dice without": [format_value(v, "dice") for v in table["dice_before"]],
        "Dice with": [format_value(v, "dice") for v in table["dice_after"]],
    })


POSTPROCESSING_LEGEND = (
    "Chosen per method on its segmentations of the n labelled validation subjects (preprocessing grid), region "
    "by region in this order: the operation that raises the mean Dice over all regions most, if any; it is "
    "applied to the test subjects' segmentations of method+pp. Dice: mean over the validation subjects of the "
    "region's Dice without and with the post-processing."
)


# --------------------------------------------------------------------------------------------------------------
# Markdown and files


def _markdown_cell(value: object, float_format: str) -> str:
    if value is None or (isinstance(value, float | np.floating) and not np.isfinite(value)):
        return _NA
    if isinstance(value, float | np.floating):
        text = format(float(value), float_format)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


_NUMBER = re.compile(r"^\s*(<|[-+])?\d+(\.\d+)?(\s*\[[-+]?\d+(\.\d+)?, [-+]?\d+(\.\d+)?\])?\s*$")


def looks_numeric(text: str) -> bool:
    """Whether a formatted cell is a number (``0.912``, ``+0.031``, ``<0.001``, ``0.915 [0.880, 0.930]``)."""
    return bool(_NUMBER.match(text))


def _numeric_column(column: pd.Series) -> bool:
    """Right-align numbers, and strings that are formatted numbers (:func:`looks_numeric`)."""
    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column):
        return True
    cells = [v for v in column if isinstance(v, str) and v not in ("", _NA)]
    return bool(cells) and all(looks_numeric(v) for v in cells)


def markdown_table(df: pd.DataFrame, index: bool = False, float_format: str = ".3f") -> str:
    """A GitHub-flavoured Markdown table of ``df``: numeric columns (and columns of formatted numbers)
    right-aligned, floats with ``float_format``, missing values as ``–``, ``|`` escaped; ``index=True`` adds the
    index as the first column(s)."""
    if index:
        df = df.reset_index()
    headers = [_markdown_cell(str(c), float_format) for c in df.columns]
    numeric = [_numeric_column(df.iloc[:, i]) for i in range(df.shape[1])]
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---:" if n else ":---" for n in numeric) + " |",
    ]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_markdown_cell(v, float_format) for v in row) + " |")
    return "\n".join(lines) + "\n"


SUMMARY_LEGEND = (
    "Mean over the n test subjects with truth, on each subject's original grid. Dice, sensitivity and precision "
    "are fractions (0-1, higher is better); HD95 is the 95th percentile of the pooled surface distances in mm "
    "(lower is better; 373.13 mm when exactly one of truth and prediction is empty). Specificity (true negatives "
    "over the whole volume, 0.999... for every method) is in summary.csv and the per-subject table."
)
SPREAD_LEGEND = "Median [first quartile, third quartile] over the same subjects."
LESIONWISE_LEGEND = (
    "BraTS 2023+ lesion-wise scores, means over the subjects: per subject, the Dice and HD95 of every truth lesion "
    "(26-connected component; lesions closer than the dilation merged) against the predicted components that "
    "overlap it, every unmatched predicted component scoring Dice 0 and HD95 374 mm, summed and divided by truth "
    "lesions + false positives; truth lesions below the size threshold are not scored. Lesion F1: "
    "2 detected / (2 detected + missed + false positives), as ISLES reports it."
)
SIGNIFICANCE_LEGEND = (
    "Means over the n subjects scored both with and without the CRF; difference = mean of (with CRF - without), "
    "so a positive difference is an improvement for Dice, sensitivity and precision and a deterioration for "
    "HD95; p: two-sided Wilcoxon signed-rank test paired by subject, not corrected for multiple comparisons. "
    "Smallest p: the lowest p the test can give with the n' pairs that differ (2 / 2^n', every subject changing "
    "the same way): "
    "with few subjects no difference can reach a conventional significance level."
)
COMPARISON_LEGEND = (
    "Each method against the best method of another network after the same steps (highest mean Dice of the "
    "region; each pair listed once), paired on the n subjects scored by both: difference = mean of (method - "
    "other), so a positive difference is better for Dice and worse for HD95 (better mean names the method); p: "
    "two-sided Wilcoxon signed-rank test, not corrected for multiple comparisons; smallest p: the lowest p the "
    "test can give with the pairs that differ."
)


def _write_text(path: PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def _write_csv(path: PathLike, table: pd.DataFrame, index: bool) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=index)


def _test_section(heading: str, formatted: pd.DataFrame, legend: str, when_empty: str) -> list[str]:
    """A Markdown section of paired tests: its heading, then the table and its legend, or why there is none."""
    if formatted.empty:
        return [f"## {heading}\n", when_empty + "\n"]
    return [f"## {heading}\n", markdown_table(formatted), legend + "\n"]


def summary_markdown(
    results: pd.DataFrame,
    regions: Sequence[str],
    significance: bool | pd.DataFrame = True,
    title: str = "Evaluation summary",
    region_legend: str = "",
    comparison: bool | pd.DataFrame = True,
) -> str:
    """The Markdown report: the headline table (means), the median [IQR] table, the lesion-wise table, the
    networks compared, the CRF significance table, then the predicted volumes of the subjects without truth
    (if any); each with its legend, ``region_legend`` (the regions' labels) under the first. ``significance``
    and ``comparison`` are True (compute it), False (leave the section out) or a precomputed
    :func:`crf_significance` / :func:`method_comparison` table."""
    summary = summary_table(results, regions)
    parts = [f"# {title}\n"]
    parts.append("## Scores of the test subjects with truth\n")
    if summary.empty:
        parts.append("No test subject has truth: nothing is scored.\n")
    else:
        parts.append(markdown_table(flat_headings(grouped_summary(summary, regions, HEADLINE_METRICS))))
        parts.append(" ".join(filter(None, [SUMMARY_LEGEND, region_legend])) + "\n")
        parts.append("### Median [IQR]\n")
        parts.append(markdown_table(flat_headings(grouped_summary(summary, regions, HEADLINE_METRICS,
                                                                  "median_iqr"))))
        lesionwise = grouped_summary(summary, regions, LESION_TABLE_METRICS)
        if lesionwise.shape[1] > 1:
            parts.append("### Lesion-wise\n")
            parts.append(markdown_table(flat_headings(lesionwise)))
            parts.append(LESIONWISE_LEGEND + "\n")
    if comparison is not False:
        table = method_comparison(results, regions) if comparison is True else comparison
        parts += _test_section("Methods compared", formatted_comparison(table), COMPARISON_LEGEND,
                               "No two networks were scored after the same steps: there is nothing to compare.")
    if significance is not False:
        table = crf_significance(results, regions) if significance is True else significance
        parts += _test_section("Effect of the CRF", formatted_significance(table), SIGNIFICANCE_LEGEND,
                               "No method was evaluated both with and without the CRF.")
    volumes = volume_table(results)
    if not volumes.empty:
        parts.append("## Subjects without truth (not scored)\n")
        headings = {c: f"{c} (ml)" for c in volumes.columns if c not in ("subject", "method")}
        parts.append(markdown_table(volumes.rename(columns=headings), float_format=".2f"))
        parts.append("Predicted volume of each region in ml (1 ml = 1000 mm³).\n")
    return "\n".join(parts)


def write_summary(
    results: pd.DataFrame,
    regions: Sequence[str],
    csv_path: PathLike,
    markdown_path: PathLike,
    significance: bool | pd.DataFrame = True,
    significance_csv_path: PathLike | None = None,
    title: str = "Evaluation summary",
    region_legend: str = "",
    comparison: bool | pd.DataFrame = True,
    comparison_csv_path: PathLike | None = None,
) -> pd.DataFrame:
    """Write the numeric summary as CSV (column ``method`` first) and the Markdown report, atomically.

    ``significance`` and ``comparison`` as in :func:`summary_markdown`; ``significance_csv_path`` and
    ``comparison_csv_path`` also write the CRF significance table and the networks' comparison as CSV.
    Returns the numeric summary.
    """
    summary = summary_table(results, regions)
    if significance is True:
        significance = crf_significance(results, regions)
    if comparison is True:
        comparison = method_comparison(results, regions)
    markdown = summary_markdown(results, regions, significance, title, region_legend, comparison)
    _write_csv(csv_path, summary, index=True)
    if significance_csv_path is not None:
        table = significance if isinstance(significance, pd.DataFrame) else crf_significance(results, regions)
        _write_csv(significance_csv_path, table, index=False)
    if comparison_csv_path is not None:
        table = comparison if isinstance(comparison, pd.DataFrame) else method_comparison(results, regions)
        _write_csv(comparison_csv_path, table, index=False)
    _write_text(markdown_path, markdown)
    return summary
