"""Reporting: summary tables, CRF significance tests, Markdown, which subjects a page shows, and figures."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from scipy import ndimage, stats

from conftest import REPO
from lesionseg.config import load_config
from lesionseg.evaluation.metrics import METRICS, dice
from lesionseg.io import write_nifti
from lesionseg.labels import LABEL_SCHEMES
from lesionseg.masks import differs_from_background
from lesionseg.reporting import overlays
from lesionseg.reporting.figures import dice_boxplot, method_colours
from lesionseg.reporting.gallery import Embedding, fixed_sample, lowest_dice, most_unusual, shown_subjects
from lesionseg.reporting.overlays import (
    ERROR_ALPHA,
    EXTRA_COLOUR,
    FILL_ALPHA,
    MISSED_COLOUR,
    agreement,
    draw_overlay,
    grey_window,
    lesion_crop,
    lesion_slice,
    overlay_figure,
    overlay_headings,
    overlay_layout,
    overlay_subject,
    radiological,
)
from lesionseg.reporting.tables import (
    crf_pairs,
    crf_significance,
    flat_headings,
    format_p_value,
    grouped_summary,
    load_per_subject,
    markdown_table,
    method_comparison,
    related,
    smallest_p_value,
    summary_markdown,
    summary_table,
    volume_table,
    write_summary,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REGIONS = ["WT", "ET"]


def rows(method, subject, region, **values):
    row = {"method": method, "subject": subject, "region": region, **dict.fromkeys(METRICS, np.nan)}
    row.update(values)
    return row


def results_frame(records, methods=None):
    frame = pd.DataFrame(records)
    order = methods or list(pd.unique(frame["method"]))
    frame["method"] = pd.Categorical(frame["method"], categories=order, ordered=True)
    return frame


@pytest.fixture
def hand_made():
    """Methods A, A+crf and B on 4 subjects with truth and one without, regions WT and ET.

    A WT Dice is 0.2, 0.4, 0.6, 0.8: mean 0.5, median 0.5, Q1 0.35, Q3 0.65 (linear interpolation).
    """
    records = []
    dice = {
        ("A", "WT"): [0.2, 0.4, 0.6, 0.8],
        ("A", "ET"): [0.1, 0.1, 0.3, 0.9],
        ("A+crf", "WT"): [0.3, 0.5, 0.7, 0.9],
        ("A+crf", "ET"): [0.2, 0.2, 0.4, 1.0],
        ("B", "WT"): [0.5, 0.5, 0.5, 0.5],
        ("B", "ET"): [0.0, 1.0, 0.0, 1.0],
    }
    for (method, region), values in dice.items():
        for i, value in enumerate(values):
            records.append(rows(method, f"s{i}", region, dice=value, sensitivity=value, specificity=0.99,
                                hd95=10.0 * (1 - value), volume_truth_mm3=1000.0, volume_prediction_mm3=900.0))
        records.append(rows(method, "nolabel", region, volume_prediction_mm3=2500.0 if region == "WT" else 500.0))
    return results_frame(records, ["A", "A+crf", "B"])


# ---------------------------------------------------------------------------------------------------------------
# Summary


def test_summary_table_numbers(hand_made):
    summary = summary_table(hand_made, REGIONS)
    assert list(summary.index) == ["A", "A+crf", "B"]
    assert summary.loc["A", "n_subjects"] == 4  # the subject without truth is not scored
    assert summary.loc["A", "dice_WT_mean"] == pytest.approx(0.5)
    assert summary.loc["A", "dice_WT_median"] == pytest.approx(0.5)
    assert summary.loc["A", "dice_WT_q1"] == pytest.approx(0.35)
    assert summary.loc["A", "dice_WT_q3"] == pytest.approx(0.65)
    assert summary.loc["A", "dice_ET_mean"] == pytest.approx(0.35)
    assert summary.loc["A", "dice_ET_median"] == pytest.approx(0.2)
    assert summary.loc["A", "dice_ET_q1"] == pytest.approx(0.1)
    assert summary.loc["A", "dice_ET_q3"] == pytest.approx(0.45)
    assert summary.loc["B", "dice_ET_median"] == pytest.approx(0.5)
    assert summary.loc["A", "hd95_WT_mean"] == pytest.approx(5.0)
    assert summary.loc["A", "specificity_ET_q3"] == pytest.approx(0.99)
    # Every metric the per-subject tables have (those without lesion-wise columns get none of those).
    expected = ["n_subjects"] + [f"{m}_{r}_{s}" for m in ("dice", "sensitivity", "specificity", "precision", "hd95",
                                                          "assd")
                                 for r in REGIONS for s in ("mean", "median", "q1", "q3")]
    assert list(summary.columns) == expected


def test_grouped_summary_has_one_number_per_cell_under_metric_and_region_headings(hand_made):
    summary = summary_table(hand_made, REGIONS)
    means = grouped_summary(summary, REGIONS, ("dice", "hd95"))
    assert list(means.index) == ["A", "A+crf", "B"]
    assert list(means.columns) == [("", "n"), ("Dice", "WT"), ("Dice", "ET"), ("HD95 (mm)", "WT"),
                                   ("HD95 (mm)", "ET")]
    assert means.loc["A", ("Dice", "WT")] == "0.500" and means.loc["A", ("HD95 (mm)", "WT")] == "5.0"
    assert means.loc["A", ("", "n")] == "4"
    spread = grouped_summary(summary, REGIONS, ("dice", "lesionwise_dice"), "median_iqr")
    assert spread.loc["A", ("Dice", "WT")] == "0.500 [0.350, 0.650]"
    assert ("Lesion-wise Dice", "WT") not in spread.columns  # the results have no lesion-wise scores
    assert list(flat_headings(means).columns) == ["Method", "n", "Dice WT", "Dice ET", "HD95 (mm) WT",
                                                  "HD95 (mm) ET"]
    with pytest.raises(ValueError, match="statistic"):
        grouped_summary(summary, REGIONS, ("dice",), "max")


def test_summary_rejects_unknown_region(hand_made):
    with pytest.raises(ValueError, match="TC"):
        summary_table(hand_made, ["WT", "TC"])


def test_write_summary_csv_round_trip_and_markdown(hand_made, tmp_path):
    csv_path, md_path = tmp_path / "summary.csv", tmp_path / "out" / "summary.md"
    summary = write_summary(hand_made, REGIONS, csv_path, md_path, significance_csv_path=tmp_path / "crf.csv")
    back = pd.read_csv(csv_path, index_col="method")
    pd.testing.assert_frame_equal(back, summary, check_exact=False, rtol=1e-12)
    markdown = md_path.read_text(encoding="utf-8")
    for name in ["A", "A+crf", "B", *REGIONS, "Dice", "HD95", "Median [IQR]", "Wilcoxon", "Smallest p", "nolabel"]:
        assert name in markdown
    # The CRF table: A vs A+crf only, p formatted to 3 decimals.
    crf = pd.read_csv(tmp_path / "crf.csv")
    assert set(crf["method"]) == {"A"}
    assert format_p_value(crf["p_value"].iloc[0]) in markdown
    assert not list(tmp_path.glob(".*tmp*")) and not list((tmp_path / "out").glob(".*tmp*"))


def test_write_summary_without_significance(hand_made, tmp_path):
    write_summary(hand_made, REGIONS, tmp_path / "s.csv", tmp_path / "s.md", significance=False)
    assert "CRF" not in (tmp_path / "s.md").read_text(encoding="utf-8")


def test_load_per_subject_keeps_method_order_and_subject_ids(tmp_path):
    paths = {}
    for method in ["zeta", "alpha"]:
        frame = pd.DataFrame([{"subject": "007", "region": "lesion", **dict.fromkeys(METRICS, 0.5)}])
        paths[method] = tmp_path / method / "per_subject.csv"
        paths[method].parent.mkdir()
        frame.to_csv(paths[method], index=False)
    results = load_per_subject(paths)
    assert list(results.columns[:3]) == ["method", "subject", "region"]
    assert list(results["method"].cat.categories) == ["zeta", "alpha"] and results["method"].cat.ordered
    assert list(results["subject"]) == ["007", "007"]
    assert list(summary_table(results, ["lesion"]).index) == ["zeta", "alpha"]


def test_volume_table_lists_only_subjects_without_truth(hand_made):
    volumes = volume_table(hand_made)
    assert list(volumes.columns) == ["subject", "method", "WT", "ET"]
    assert list(volumes["method"]) == ["A", "A+crf", "B"]
    assert set(volumes["subject"]) == {"nolabel"}
    assert volumes["WT"].tolist() == pytest.approx([2.5] * 3)
    assert volumes["ET"].tolist() == pytest.approx([0.5] * 3)
    scored_only = hand_made[hand_made["subject"] != "nolabel"]
    assert volume_table(scored_only).empty


def test_markdown_table_escapes_and_aligns():
    table = pd.DataFrame({"name": ["a|b", "c"], "value": [1.23456, math.nan], "p": ["<0.001", "0.031"]})
    text = markdown_table(table)
    lines = text.strip().splitlines()
    assert lines[0] == "| name | value | p |"
    assert lines[1] == "| :--- | ---: | ---: |"
    assert lines[2] == "| a\\|b | 1.235 | <0.001 |"
    assert lines[3] == "| c | – | 0.031 |"


def test_format_p_value():
    assert format_p_value(0.0312) == "0.031"
    assert format_p_value(0.0004) == "<0.001"
    assert format_p_value(1.0) == "1.000"
    assert format_p_value(math.nan) == "–"


# ---------------------------------------------------------------------------------------------------------------
# CRF significance


def paired_results(n=12, gain=0.05, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5, 0.8, size=n)
    improved = base + gain + rng.uniform(0.0, 0.02, size=n)
    records = []
    for method, values in [("m", base), ("m+crf", improved), ("solo", base)]:
        for i, value in enumerate(values):
            records.append(rows(method, f"s{i:02d}", "lesion", dice=value, sensitivity=value, specificity=0.99,
                                hd95=20.0 * (1 - value)))
    return results_frame(records), base, improved


def test_crf_consistently_better_is_significant_with_the_right_sign():
    results, base, improved = paired_results()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = crf_significance(results, ["lesion"], metrics=["dice", "hd95", "specificity"])
    assert crf_pairs(results) == [("m", "m+crf")]
    assert set(table["method"]) == {"m"}  # "solo" has no +crf twin
    dice = table[table["metric"] == "dice"].iloc[0]
    assert dice["n"] == 12 and dice["p_value"] < 0.05 and dice["mean_difference"] > 0
    assert dice["mean_without"] == pytest.approx(base.mean())
    assert dice["mean_with"] == pytest.approx(improved.mean())
    hd95 = table[table["metric"] == "hd95"].iloc[0]
    assert hd95["p_value"] < 0.05 and hd95["mean_difference"] < 0
    expected = stats.wilcoxon(improved, base, alternative="two-sided")
    assert dice["statistic"] == pytest.approx(expected.statistic)
    assert dice["p_value"] == pytest.approx(expected.pvalue)
    assert dice["smallest_p"] == pytest.approx(2 / 2**12)
    specificity = table[table["metric"] == "specificity"].iloc[0]
    assert specificity["p_value"] == 1.0 and "zero" in specificity["note"]


def test_smallest_attainable_p_of_the_signed_rank_test():
    assert smallest_p_value(4) == 0.125  # the demo's 4 test subjects can never reach p < 0.125
    assert smallest_p_value(1) != smallest_p_value(1)  # NaN: no test
    for n in (2, 5, 8):  # every difference of one sign, all ranks distinct: scipy's exact p is the bound
        assert stats.wilcoxon(np.arange(1, n + 1) * 0.1, np.zeros(n)).pvalue == pytest.approx(smallest_p_value(n))


def test_crf_matches_scipy_on_mixed_differences():
    rng = np.random.default_rng(3)
    results, base, _ = paired_results(n=9)
    noisy = base + rng.normal(0, 0.05, size=base.size)
    crf_rows = (results["method"] == "m+crf") & (results["region"] == "lesion")
    results.loc[crf_rows, "dice"] = noisy
    table = crf_significance(results, ["lesion"], metrics=["dice"])
    expected = stats.wilcoxon(noisy, base)
    assert table.loc[0, "statistic"] == pytest.approx(expected.statistic)
    assert table.loc[0, "p_value"] == pytest.approx(expected.pvalue)
    assert table.loc[0, "mean_difference"] == pytest.approx((noisy - base).mean())


def test_crf_identical_results_give_p_one_and_a_note():
    results, base, _ = paired_results()
    results.loc[results["method"] == "m+crf", "dice"] = base
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = crf_significance(results, ["lesion"], metrics=["dice"])
    assert table.loc[0, "p_value"] == 1.0
    assert table.loc[0, "mean_difference"] == 0.0
    assert "zero" in table.loc[0, "note"]


def test_crf_pairs_only_common_subjects_and_too_few_pairs():
    results, _, _ = paired_results(n=3)
    # Keep one subject of the CRF method: a single pair cannot be tested.
    results = results[~((results["method"] == "m+crf") & (results["subject"] != "s00"))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = crf_significance(results, ["lesion"], metrics=["dice"])
    assert table.loc[0, "n"] == 1
    assert math.isnan(table.loc[0, "p_value"]) and "need 2" in table.loc[0, "note"]


def test_crf_without_twins_is_empty():
    results, _, _ = paired_results()
    table = crf_significance(results[results["method"] != "m+crf"], ["lesion"])
    assert table.empty and "p_value" in table.columns


# ---------------------------------------------------------------------------------------------------------------
# Networks compared

NETWORK_DICE = {
    # WT: c is best on its 4 subjects (mean 0.85), then b (0.7); ET: b (0.6) beats c (0.4), a (0.2) is last.
    ("a", "WT"): [0.50, 0.55, 0.60, 0.65, 0.30, 0.90],
    ("b", "WT"): [0.60, 0.70, 0.65, 0.75, 0.70, 0.80],
    ("c", "WT"): [0.80, 0.90, 0.85, 0.85],  # subjects s0-s3 only
    ("a", "ET"): [0.20] * 6,
    ("b", "ET"): [0.60] * 6,
    ("c", "ET"): [0.40] * 4,
    # With the CRF: a+crf and b+crf tie on WT (mean 0.6); c has no CRF variant.
    ("a+crf", "WT"): [0.55, 0.65, 0.55, 0.65, 0.55, 0.65],
    ("b+crf", "WT"): [0.60] * 6,
    ("a+crf", "ET"): [0.30] * 6,
    ("b+crf", "ET"): [0.30] * 6,
}


def network_results(dice=NETWORK_DICE):
    records = [rows(method, f"s{i}", region, dice=value, hd95=10.0 * (1 - value))
               for (method, region), values in dice.items() for i, value in enumerate(values)]
    return results_frame(records, ["a", "b", "c", "a+crf", "b+crf"])


def test_comparison_takes_the_best_other_network_after_the_same_steps_and_lists_a_pair_once():
    table = method_comparison(network_results(), REGIONS)
    pairs = table.drop_duplicates(["method", "region"])
    compared = {(m, r): o for m, o, r in zip(pairs["method"], pairs["compared_with"], pairs["region"], strict=True)}
    assert compared == {
        ("a", "WT"): "c", ("b", "WT"): "c",  # c's best other is b: already listed as b vs c
        ("a", "ET"): "b", ("b", "ET"): "c",  # c's best other is b: already listed as b vs c
        ("a+crf", "WT"): "b+crf",  # a tie: b+crf is the only other with the CRF; c+crf does not exist
        ("a+crf", "ET"): "b+crf",
    }
    assert list(table.columns) == ["method", "compared_with", "region", "metric", "n", "mean_method", "mean_other",
                                   "mean_difference", "statistic", "p_value", "smallest_p", "note"]
    assert set(table["metric"]) == {"dice", "hd95"}
    assert list(table["method"].unique()) == ["a", "b", "a+crf"]  # method order


def test_an_ensemble_is_not_its_members_other_network():
    # c as an ensemble of a and b: a and b are compared with each other, c with no one (its members are its own).
    table = method_comparison(network_results(), REGIONS, ensembles={"c": ["a", "b"]})
    compared = {(m, r): o for m, o, r in zip(table["method"], table["compared_with"], table["region"], strict=True)}
    assert compared == {("a", "WT"): "b", ("a", "ET"): "b", ("a+crf", "WT"): "b+crf", ("a+crf", "ET"): "b+crf"}
    assert related("a", "c", {"c": ["a", "b"]}) and related("c", "d", {"c": ["a"], "d": ["a", "e"]})
    assert not related("a", "b", {"c": ["a", "b"]})


def test_comparison_ties_go_to_the_first_in_method_order():
    dice = {("a", "WT"): [0.5, 0.6], ("b", "WT"): [0.7, 0.8], ("c", "WT"): [0.8, 0.7],
            ("a", "ET"): [0.5, 0.6], ("b", "ET"): [0.5, 0.6], ("c", "ET"): [0.5, 0.6]}
    table = method_comparison(network_results(dice), REGIONS, metrics=["dice"]).set_index(["method", "region"])
    assert table.loc[("a", "WT"), "compared_with"] == "b"  # b and c tie at 0.75: b comes first
    # ET: all three tie. a vs b; b's best other is a (a pair listed already); c's is a.
    assert table.loc[("a", "ET"), "compared_with"] == "b"
    assert ("b", "ET") not in table.index
    assert table.loc[("c", "ET"), "compared_with"] == "a"


def test_comparison_pairs_only_the_subjects_both_scored():
    table = method_comparison(network_results(), REGIONS).set_index(["method", "region", "metric"])
    wt = table.loc[("a", "WT", "dice")]
    assert wt["n"] == 4  # c scored s0-s3 only; a's s4 and s5 are left out
    assert wt["mean_method"] == pytest.approx(np.mean([0.50, 0.55, 0.60, 0.65]))
    assert wt["mean_other"] == pytest.approx(0.85)
    assert wt["mean_difference"] == pytest.approx(0.575 - 0.85)
    assert wt["smallest_p"] == pytest.approx(2 / 2**4)
    assert table.loc[("a", "ET", "dice"), "n"] == 6
    hd95 = table.loc[("a", "WT", "hd95")]
    assert hd95["mean_difference"] == pytest.approx(10 * (0.85 - 0.575))  # worse boundary: a positive difference


def test_comparison_matches_scipy_on_a_hand_made_example():
    ours = [0.81, 0.62, 0.90, 0.55, 0.73, 0.68, 0.77, 0.84]
    theirs = [0.78, 0.66, 0.83, 0.49, 0.75, 0.60, 0.70, 0.86]
    dice = {("deepmedic", "WT"): ours, ("nnunet", "WT"): theirs, ("deepmedic", "ET"): ours,
            ("nnunet", "ET"): theirs}
    records = [rows(m, f"s{i}", r, dice=v, hd95=10.0 * (1 - v)) for (m, r), vs in dice.items()
               for i, v in enumerate(vs)]
    table = method_comparison(results_frame(records), REGIONS, metrics=["dice"])
    assert list(table["method"]) == ["deepmedic", "deepmedic"]  # nnunet vs deepmedic is the same pair
    expected = stats.wilcoxon(ours, theirs, alternative="two-sided")
    assert table.loc[0, "statistic"] == pytest.approx(expected.statistic)
    assert table.loc[0, "p_value"] == pytest.approx(expected.pvalue)
    assert table.loc[0, "mean_difference"] == pytest.approx(np.mean(ours) - np.mean(theirs))


def test_comparison_of_one_network_is_empty():
    results, _, _ = paired_results()  # m, m+crf and solo: two networks
    one = results[results["method"].isin(["m", "m+crf"])]
    table = method_comparison(one, ["lesion"])
    assert table.empty and "compared_with" in table.columns and "p_value" in table.columns
    assert "## Methods compared\n\nNo two networks" in summary_markdown(one, ["lesion"])
    assert set(method_comparison(results, ["lesion"])["compared_with"]) == {"solo"}  # m vs solo; m+crf has none


def test_markdown_and_csv_of_the_comparison(tmp_path):
    results = network_results()
    md_path, csv_path = tmp_path / "s.md", tmp_path / "comparison.csv"
    write_summary(results, REGIONS, tmp_path / "s.csv", md_path, comparison_csv_path=csv_path)
    markdown = md_path.read_text(encoding="utf-8")
    section = markdown.index("## Methods compared")
    assert markdown.index("## Scores of the test subjects") < section < markdown.index("## Effect of the CRF")
    assert "| Method | Compared with | Region | Metric | n |" in markdown
    assert "two-sided Wilcoxon signed-rank" in markdown and "not corrected for multiple comparisons" in markdown
    assert "| a | c | WT | Dice | 4 | 0.575 | 0.850 | -0.275 | c |" in markdown
    assert "| a | c | WT | HD95 (mm) | 4 | 4.2 | 1.5 | +2.8 | c |" in markdown  # lower is better
    written = pd.read_csv(csv_path).fillna({"note": ""})
    pd.testing.assert_frame_equal(written, method_comparison(results, REGIONS), check_dtype=False)
    assert not list(tmp_path.glob(".*tmp*"))


# ---------------------------------------------------------------------------------------------------------------
# Which subjects a page of a whole cohort shows as pictures


def test_the_fixed_sample_is_the_smallest_digests_and_stable_when_subjects_are_added():
    cohort = [f"s{i}" for i in range(10)]
    # SHA-256 of the ids: the same on every machine and run, whatever the cohort's order.
    assert fixed_sample(cohort, 3) == ["s5", "s7", "s8"]
    assert fixed_sample(cohort[::-1], 3) == ["s8", "s7", "s5"]  # in the order given
    assert fixed_sample(cohort[:2], 3) == ["s0", "s1"]
    large = [f"BraTS2021_{i:05d}" for i in range(300)]
    sample = set(fixed_sample(large, 20))
    for added in range(300, 340):  # a new subject takes one member's place, or leaves the sample as it is
        grown = set(fixed_sample([*large, f"BraTS2021_{added:05d}"], 20))
        assert len(grown) == 20 and len(sample - grown) == len(grown - sample) <= 1
        assert grown - sample <= {f"BraTS2021_{added:05d}"}


def test_lowest_dice_per_region_by_the_best_method(hand_made):
    lowest = lowest_dice(hand_made, REGIONS, 2)
    # WT: A+crf has the highest mean (0.6); ET: B (0.5). Ties in Dice go by subject; unscored subjects never count.
    assert [(x.region, x.method, x.subjects) for x in lowest] == [
        ("WT", "A+crf", [("s0", 0.3), ("s1", 0.5)]), ("ET", "B", [("s0", 0.0), ("s2", 0.0)])]
    only = lowest_dice(hand_made, REGIONS, 10, subjects=["s1", "s3", "nolabel"])
    assert only[0].subjects == [("s1", 0.5), ("s3", 0.9)]
    tie = hand_made[hand_made["method"] != "A+crf"]  # WT: A and B both 0.5 on average: the first in method order
    assert lowest_dice(tie, ["WT"], 1)[0].method == "A"
    assert lowest_dice(hand_made, ["TC"], 2) == []  # a region nobody scored


def test_most_unusual_values_are_far_from_the_median_on_a_log_scale():
    volumes = {"a": 1000.0, "b": 1100.0, "c": 2000.0, "d": 500.0, "e": 950.0, "f": float("nan")}
    # Median 1000 ml: twice and half of it are as unusual (ties by subject).
    assert most_unusual(volumes, 3) == ["c", "d", "b"]
    assert most_unusual({}, 3) == []


def test_a_small_cohort_shows_every_subject_a_large_one_the_notable_and_the_sample():
    embedding = Embedding(all_up_to=5, worst=2, sample=3)
    small = [f"s{i}" for i in range(5)]
    assert shown_subjects(small, embedding, [("s4", "lowest")]) == {s: [] for s in small}
    large = [f"s{i}" for i in range(10)]
    shown = shown_subjects(large, embedding, [("s9", "lowest WT"), ("s5", "lowest WT"), ("s9", "lowest ET")])
    assert shown == {"s9": ["lowest WT", "lowest ET"], "s5": ["lowest WT", "fixed sample"],
                     "s7": ["fixed sample"], "s8": ["fixed sample"]}
    assert Embedding.default() == Embedding.from_config(load_config(REPO / "config/config.yaml")["report"])


# ---------------------------------------------------------------------------------------------------------------
# Figures


def ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def test_method_colours_pair_crf_twins():
    colours = method_colours(["a", "a+crf", "b", "b+crf"])
    assert len(set(colours.values())) == 4
    assert method_colours(["b", "b+crf"])["b"] == colours["a"]  # the order decides, not the name
    assert method_colours(["a", "a+crf", "b"])["a+crf"] == colours["a+crf"]


def assert_png(path, min_bytes=10_000):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes
    assert not list(path.parent.glob(".*tmp*"))


def test_dice_boxplot_writes_a_png(hand_made, tmp_path):
    path = tmp_path / "figures" / "dice.png"
    dice_boxplot(hand_made, REGIONS, path)
    assert_png(path)
    dice_boxplot(hand_made, REGIONS, tmp_path / "hd95.png", metric="hd95")
    assert_png(tmp_path / "hd95.png")


# --- Overlays ---------------------------------------------------------------------------------------------------

OVERLAY_MODALITIES = ["flair", "t1", "t1ce", "t2"]
BRATS = LABEL_SCHEMES["brats2021"]
SHAPE = (48, 48, 40)


def overlay_case(background=0.0, brain_centre=(24, 24, 20)):
    """A brain ball (2 mm voxels, RAS+) with a tumour in the patient's right (large x) and anterior (large y):
    oedema (2) around enhancing tumour (4), centred on slice 20; a prediction two voxels further right."""
    rng = np.random.default_rng(0)
    brain = ball(SHAPE, brain_centre, 16)
    images = np.stack([np.where(brain, ndimage.gaussian_filter(rng.normal(100, 30, size=SHAPE), 1.0), background)
                       for _ in OVERLAY_MODALITIES]).astype(np.float32)
    truth = np.zeros(SHAPE, dtype=np.uint8)
    truth[ball(SHAPE, (32, 31, 20), 5)] = 2
    truth[ball(SHAPE, (32, 31, 20), 2)] = 4
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-48.0, -48.0, -40.0)
    return images, truth, np.roll(truth, 2, axis=0), affine


def on_display(layout, x, y):
    """(row, column) of voxel (x, y) in a panel of ``layout`` (radiological: right on the left, anterior up)."""
    crop_x, crop_y = layout.crop
    return crop_y.stop - 1 - y, crop_x.stop - 1 - x


def test_overlay_slice_is_the_largest_section_of_the_lesion_or_the_brains_middle():
    shape = (20, 20, 40)
    lesion = ball(shape, (10, 10, 15), 5) | ball(shape, (10, 10, 30), 2)
    assert lesion_slice(lesion, np.ones(shape, dtype=bool)) == 15
    brain = ball(shape, (10, 10, 25), 6)  # z 19..31
    assert lesion_slice(np.zeros(shape, dtype=bool), brain) == 25
    assert lesion_slice(None, np.zeros(shape, dtype=bool)) == 20
    # In the figure: the largest region (WT) of truth and predictions together, not one method's stray blob.
    images, truth, prediction, affine = overlay_case()
    stray = prediction.copy()
    stray[ball(SHAPE, (16, 16, 30), 2)] = 4
    layout = overlay_layout(images, OVERLAY_MODALITIES, truth, [("net", stray)], BRATS, affine)
    assert layout.z_index == 20 and layout.through_lesion
    assert layout.z_mm == pytest.approx(2.0 * 20 - 40.0)


def test_overlay_crop_is_around_the_lesion():
    plane = np.zeros((100, 100), dtype=bool)
    small = plane.copy()
    small[50:53, 40:43] = True
    crop_x, crop_y = lesion_crop(small, (2.0, 2.0))
    assert (crop_x.stop - crop_x.start, crop_y.stop - crop_y.start) == (30, 30)  # at least 60 mm wide
    assert crop_x.start < 50 and crop_x.stop > 53 and abs((crop_x.start + crop_x.stop) / 2 - 51.5) <= 1
    large = plane.copy()
    large[20:60, 45:55] = True  # 40 mm x 10 mm at 1 mm: a 70 mm square, 15 mm around the lesion
    crop_x, crop_y = lesion_crop(large, (1.0, 1.0))
    assert (crop_x.start, crop_x.stop) == (5, 75) and crop_y.stop - crop_y.start == 70
    assert crop_y.start <= 45 - 15 and crop_y.stop >= 55 + 15
    edge = plane.copy()
    edge[0:3, 97:100] = True  # moved inside the plane rather than cut
    assert lesion_crop(edge, (1.0, 1.0)) == (slice(0, 60), slice(40, 100))
    assert lesion_crop(small, (1.0, 2.0)) == (slice(22, 82), slice(26, 56))  # 60 mm both ways
    assert lesion_crop(small, (5.0, 5.0), min_mm=1000) == (slice(0, 100), slice(0, 100))  # clipped
    assert lesion_crop(plane, (1.0, 1.0)) == (slice(0, 100), slice(0, 100))
    # In the figure the crop holds the truth and the predictions of every region, and the panels are in mm.
    images, truth, prediction, affine = overlay_case()
    layout = overlay_layout(images, OVERLAY_MODALITIES, truth, [("net", prediction)], BRATS, affine)
    union = (truth | prediction)[:, :, layout.z_index] != 0
    assert union[layout.crop].sum() == union.sum()
    assert union.sum() / union[layout.crop].size > 0.08  # the lesion fills the panel, not a corner of it
    width = layout.crop[0].stop - layout.crop[0].start
    assert layout.size_mm[0] == pytest.approx(2.0 * width) and layout.size_mm[0] >= 60.0
    assert layout.rows[0][1][0].image.shape == (layout.crop[1].stop - layout.crop[1].start, width)


def test_overlay_is_in_radiological_convention():
    section = np.zeros((3, 2))
    section[2, 1] = 1.0  # the patient's right (largest x) and anterior (largest y)
    section[0, 0] = 2.0  # left and posterior
    shown = radiological(section)
    assert shown.shape == (2, 3) and shown[0, 0] == 1.0 and shown[-1, -1] == 2.0
    # A lesion in the patient's right hemisphere appears left of the brain's midline (x 24), an anterior one
    # above the brain's centre (y 24).
    images, truth, prediction, affine = overlay_case()
    layout = overlay_layout(images, OVERLAY_MODALITIES, truth, [("net", prediction)], BRATS, affine)
    rows, columns = np.nonzero(layout.rows[0][1][1].fill[..., 3])
    centre_row, midline = on_display(layout, 24, 24)
    assert columns.max() < midline and rows.max() < centre_row
    crop_x, crop_y = layout.crop
    expected = images[0, crop_x, crop_y, layout.z_index][::-1, ::-1].T
    np.testing.assert_array_equal(layout.rows[0][1][0].image, expected)


def test_overlay_agreement_map_colours():
    assert {MISSED_COLOUR, EXTRA_COLOUR}.isdisjoint(
        {c.lower() for s in LABEL_SCHEMES.values() for c in s.region_colours.values()})
    truth = np.array([[True, True, False, False]])
    prediction = np.array([[True, False, True, False]])
    rgba = agreement(truth, prediction, "#3cb44b")
    np.testing.assert_allclose(rgba[0], [to_rgba("#3cb44b", FILL_ALPHA), to_rgba(MISSED_COLOUR, ERROR_ALPHA),
                                         to_rgba(EXTRA_COLOUR, ERROR_ALPHA), (0, 0, 0, 0)], atol=1e-6)
    # In the figure: agreed, missed and extra voxels of each region where the masks put them.
    images, truth, prediction, affine = overlay_case()
    layout = overlay_layout(images, OVERLAY_MODALITIES, truth, [("net", prediction)], BRATS, affine)
    region, panels = layout.rows[0]
    assert region == "WT" and [p.title.split("\n")[0] for p in panels] == ["FLAIR", "truth", "net"]
    fill = panels[2].fill
    for (x, y), colour, alpha in [((32, 31), BRATS.region_colours["WT"], FILL_ALPHA),  # both
                                  ((27, 31), MISSED_COLOUR, ERROR_ALPHA),  # truth's left edge, not predicted
                                  ((38, 31), EXTRA_COLOUR, ERROR_ALPHA)]:  # predicted beyond the truth's right
        np.testing.assert_allclose(fill[on_display(layout, x, y)], to_rgba(colour, alpha), atol=1e-6)
    assert fill[on_display(layout, 20, 20)][3] == 0.0
    et_panels = dict(layout.rows)["ET"]
    assert et_panels[0].title == "T1CE"  # the modality that shows enhancing tumour
    np.testing.assert_allclose(et_panels[1].fill[on_display(layout, 32, 31)],
                               to_rgba(BRATS.region_colours["ET"], FILL_ALPHA), atol=1e-6)


def test_overlay_titles_carry_the_subjects_dice():
    images, truth, shifted, affine = overlay_case()
    # Right on the shown slice but absent elsewhere: the title gives the subject's Dice, not the slice's.
    partial = np.zeros_like(truth)
    partial[:, :, 20] = truth[:, :, 20]
    layout = overlay_layout(images, OVERLAY_MODALITIES, truth, [("net", shifted), ("net+crf", partial)], BRATS,
                            affine)
    for region, panels in layout.rows:
        expected = [dice(BRATS.region_mask(m, region), BRATS.region_mask(truth, region)) for m in (shifted, partial)]
        assert [p.title for p in panels[2:]] == [f"net\nDice {expected[0]:.2f}", f"net+crf\nDice {expected[1]:.2f}"]
    assert dict(layout.rows)["WT"][3].title != "net+crf\nDice 1.00"
    title, subtitle = overlay_headings("s01", ["net", "net+crf"], layout)
    assert title == "s01 — net" and any("whole volume" in s for s in subtitle)
    assert any("z = +0.0 mm" in s for s in subtitle) and any("right (R) on the left" in s for s in subtitle)


def test_overlay_without_truth(tmp_path):
    images, _, prediction, affine = overlay_case()
    path = tmp_path / "figures" / "s01.png"
    layout = overlay_figure("s01", images, OVERLAY_MODALITIES, None, [("net", prediction), ("net+pp", prediction)],
                            BRATS, affine, path)
    assert_png(path)
    assert not layout.has_truth
    assert [label for _, label in layout.legend] == ["WT predicted", "TC predicted", "ET predicted"]
    for region, panels in layout.rows:
        assert [p.title for p in panels] == [panels[0].title, "net", "net+pp"]  # no truth column, no Dice
        rows, columns = np.nonzero(panels[1].fill[..., 3])
        assert rows.size and np.allclose(panels[1].fill[rows, columns], to_rgba(BRATS.region_colours[region],
                                                                                FILL_ALPHA))
    title, subtitle = overlay_headings("s01", ["net", "net+pp"], layout)
    assert "no truth" in title and not any("Dice" in s for s in subtitle)


def test_overlay_shows_each_region_s_uncertainty_where_the_network_doubted(tmp_path):
    images, truth, prediction, affine = overlay_case()
    # The network's probabilities: certain outside its prediction, 60% oedema / 40% enhancing inside it.
    probabilities = np.zeros((BRATS.n_classes, *SHAPE), dtype=np.float32)
    probabilities[0] = 1
    inside = prediction > 0
    probabilities[0, inside] = 0
    probabilities[BRATS.class_names.index("edema"), inside] = 0.6
    probabilities[BRATS.class_names.index("enhancing"), inside] = 0.4
    path = tmp_path / "s01.png"
    layout = overlay_figure("s01", images, OVERLAY_MODALITIES, truth, [("net", prediction)], BRATS, affine, path,
                            uncertainty=("net", probabilities))
    assert_png(path)
    assert layout.has_uncertainty and layout.legend[-1][1] == "uncertain (last column)"
    shown = on_display(layout, 34, 31)  # inside the prediction, on the lesion's slice
    outside = on_display(layout, layout.crop[0].start, layout.crop[1].start)
    for region, panels in layout.rows:
        assert panels[-1].title == "net\nuncertainty"
        alpha = panels[-1].fill[..., 3]
        assert alpha[outside] == 0  # certain: the image shows through
        # WT is certain inside (0.6 + 0.4), TC and ET are 0.4 / 0.6 coin flips: nearly the most uncertain.
        assert (alpha[shown] < 0.01) if region == "WT" else (alpha[shown] > 0.8), region
    assert any("Uncertainty" in s for s in overlay_headings("s01", ["net"], layout)[1])
    with pytest.raises(ValueError, match="not on the images' grid"):
        overlay_layout(images, OVERLAY_MODALITIES, truth, [("net", prediction)], BRATS, affine,
                       ("net", probabilities[:, :-1]))


def test_overlay_z_scored_background_and_no_lesion(tmp_path):
    # z-scored inside the brain: the background is a negative constant, the brain off the grid's centre.
    images, _, _, affine = overlay_case(background=-1.3, brain_centre=(20, 24, 17))
    for image in images:
        low, high = grey_window(image, differs_from_background(images))
        assert low > 0 and high > low  # the brain's range, not the background's
    empty = np.zeros(SHAPE, dtype=np.uint8)
    layout = overlay_figure("s02", images, OVERLAY_MODALITIES, empty, [("net", empty)], BRATS, affine,
                            tmp_path / "empty.png")
    assert_png(tmp_path / "empty.png")
    assert layout.z_index == 17 and not layout.through_lesion  # the brain's middle, not the grid's (20)
    assert [p.title for p in dict(layout.rows)["WT"]] == ["FLAIR", "truth", "net\nDice 1.00"]
    assert any("no lesion" in s for s in overlay_headings("s02", ["net"], layout)[1])


def test_overlay_subject_reads_files_stored_in_any_orientation(tmp_path, monkeypatch):
    images, truth, prediction, affine = overlay_case()
    # Stored left-to-right reversed (LAS): the figure must still show the lesion on the viewer's left.
    flip = np.array([[-1.0, 0, 0, SHAPE[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    stored = affine @ flip
    image_paths = [write_nifti(tmp_path / f"s01_{m}.nii.gz", np.ascontiguousarray(images[c, ::-1]), stored)
                   for c, m in enumerate(OVERLAY_MODALITIES)]
    truth_path = write_nifti(tmp_path / "s01_seg.nii.gz", np.ascontiguousarray(truth[::-1]), stored)
    methods = ["net", "net+crf"]
    segmentation_paths = [write_nifti(tmp_path / f"{m}.nii.gz", np.ascontiguousarray(s[::-1]), stored)
                          for m, s in zip(methods, (prediction, truth), strict=True)]
    drawn = []

    def keep_layout(layout, *args):
        drawn.append(layout)
        draw_overlay(layout, *args)

    monkeypatch.setattr(overlays, "draw_overlay", keep_layout)
    output = tmp_path / "figures" / "s01.png"
    overlay_subject("s01", methods, image_paths, OVERLAY_MODALITIES, truth_path, segmentation_paths, BRATS, output)
    assert_png(output)
    (layout,) = drawn
    assert layout.z_index == 20 and [p.title for p in layout.rows[0][1][2:]][1] == "net+crf\nDice 1.00"
    columns = np.nonzero(layout.rows[0][1][1].fill[..., 3])[1]
    assert columns.max() < on_display(layout, 24, 24)[1]  # right of the patient's midline, so left on screen
    with pytest.raises(ValueError, match="segmentations"):
        overlay_subject("s01", methods, image_paths, OVERLAY_MODALITIES, None, segmentation_paths[:1], BRATS, output)
    with pytest.raises(ValueError, match="one network"):
        overlay_subject("s01", ["net", "other"], image_paths, OVERLAY_MODALITIES, None, segmentation_paths, BRATS,
                        output)
    with pytest.raises(ValueError, match="modalities"):
        overlay_layout(images, ["flair"], None, [("net", prediction)], BRATS, affine)


# --- Runtimes from benchmark files ------------------------------------------------------------------------------

BENCHMARK_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_benchmark(root, rule, job, rows, end):
    """A benchmark file as Snakemake writes it (``rows``: (seconds, max_rss, cpu_time) per repeat), ended at
    Unix time ``end``."""
    import os

    path = root / f"benchmarks/d/{rule}/{job}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BENCHMARK_HEADER + "".join(f"{s}\t0:00:00\t{rss}\t1\t1\t1\t0\t0\t90\t{cpu}\n"
                                               for s, rss, cpu in rows))
    os.utime(path, (end, end))
    return path


def test_runtimes_per_rule_give_every_jobs_spread_and_the_runs_wall_time(tmp_path):
    import yaml

    from lesionseg.reporting.runtimes import read_benchmarks, run_time, runtime_figure, summarise_runtimes

    t0 = 1_700_000_000
    files = [
        write_benchmark(tmp_path, "train_model", "m/phase1", [(541.0, 1600, 900.0)], t0 + 541),
        write_benchmark(tmp_path, "train_model", "m/phase2", [(43.0, 1200, 60.0)], t0 + 600),
        write_benchmark(tmp_path, "infer", "m/a", [(10.0, "NA", 8.0)], t0 + 700),  # too short to measure memory
        write_benchmark(tmp_path, "infer", "m/b", [(5.0, 900, 4.0), (7.0, 950, 6.0)], t0 + 650),  # two repeats
    ]
    jobs = read_benchmarks(files)
    assert list(jobs["seconds"]) == [541, 43, 10, 12] and jobs.loc[3, "start"] == t0 + 638
    run = run_time(jobs)
    assert run["wall_s"] == 700 and run["job_s"] == 606 and run["benchmarked_jobs"] == 4  # t0 to t0 + 700

    out = {name: tmp_path / name for name in ("r.csv", "r.png", "run.yaml")}
    table = summarise_runtimes(files, out["r.csv"], out["r.png"], "d", run_path=out["run.yaml"],
                               unmeasured=["evaluate", "overlay"]).set_index("rule")
    train = table.loc["train_model"]
    assert (train["jobs"], train["total_s"], train["mean_s"], train["min_s"], train["max_s"]) == (2, 584, 292, 43, 541)
    assert train["cpu_s"] == 960 and train["max_rss_mb"] == 1600
    assert table.loc["infer", "max_rss_mb"] == 950 and table.loc["infer", "min_s"] == 10  # NA is not a peak
    assert list(pd.read_csv(out["r.csv"]).columns) == ["rule", "jobs", "total_s", "mean_s", "min_s", "max_s",
                                                        "cpu_s", "max_rss_mb"]
    written = yaml.safe_load(out["run.yaml"].read_text())
    assert written["wall_s"] == 700 and written["start"] < written["end"]
    assert out["r.png"].stat().st_size > 10_000

    # The figure says what each rule's jobs took, not a mean as if all were alike, and names what is not measured.
    from matplotlib.figure import Figure

    drawn = {}
    real_savefig = Figure.savefig

    def keep(figure, *args, **kwargs):
        drawn["texts"] = [t.get_text() for t in figure.axes[0].texts] + [t.get_text() for t in figure.texts]
        drawn["title"] = figure.axes[0].get_title()
        return real_savefig(figure, *args, **kwargs)

    Figure.savefig = keep
    try:
        runtime_figure(table.reset_index(), tmp_path / "f.png", "d", run, ["evaluate", "overlay"])
    finally:
        Figure.savefig = real_savefig
    texts = " | ".join(drawn["texts"])
    assert "2 jobs of 43 s to 9.0 min" in texts and "each" not in texts and "peak 1.6 GB" in texts, texts
    assert "evaluate, overlay" in texts and "11.7 min wall time" in drawn["title"], drawn


def test_runtimes_refuse_what_is_not_a_benchmark_file(tmp_path):
    from lesionseg.reporting.runtimes import read_benchmarks, rule_of

    with pytest.raises(ValueError, match="not a benchmark file"):
        rule_of(tmp_path / "x.tsv")
    empty = tmp_path / "benchmarks/d/infer/m/a.tsv"
    empty.parent.mkdir(parents=True)
    empty.write_text(BENCHMARK_HEADER)
    with pytest.raises(ValueError, match="not a benchmark file"):
        read_benchmarks([empty])
