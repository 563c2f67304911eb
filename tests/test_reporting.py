"""Reporting: summary tables, CRF significance tests, Markdown, and figures."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from lesionseg.evaluation.metrics import METRICS
from lesionseg.labels import LABEL_SCHEMES
from lesionseg.reporting.figures import dice_boxplot, lesion_slices, method_colours, overlay_figure
from lesionseg.reporting.tables import (
    crf_pairs,
    crf_significance,
    format_p_value,
    formatted_summary,
    load_per_subject,
    markdown_table,
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
    expected = ["n_subjects"] + [f"{m}_{r}_{s}" for m in ("dice", "sensitivity", "specificity", "hd95")
                                 for r in REGIONS for s in ("mean", "median", "q1", "q3")]
    assert list(summary.columns) == expected


def test_formatted_summary(hand_made):
    formatted = summary_table(hand_made, REGIONS, formatted=True)
    assert list(formatted["Method"]) == ["A", "A+crf", "B"]
    assert formatted.loc[0, "Dice WT"] == "0.500 (0.500 [0.350, 0.650])"
    assert formatted.loc[0, "HD95 WT (mm)"] == "5.0 (5.0 [3.5, 6.5])"
    assert formatted.equals(formatted_summary(summary_table(hand_made, REGIONS), REGIONS))


def test_summary_rejects_unknown_region(hand_made):
    with pytest.raises(ValueError, match="TC"):
        summary_table(hand_made, ["WT", "TC"])


def test_write_summary_csv_round_trip_and_markdown(hand_made, tmp_path):
    csv_path, md_path = tmp_path / "summary.csv", tmp_path / "out" / "summary.md"
    summary = write_summary(hand_made, REGIONS, csv_path, md_path, significance_csv_path=tmp_path / "crf.csv")
    back = pd.read_csv(csv_path, index_col="method")
    pd.testing.assert_frame_equal(back, summary, check_exact=False, rtol=1e-12)
    markdown = md_path.read_text(encoding="utf-8")
    for name in ["A", "A+crf", "B", *REGIONS, "Dice", "HD95", "mean (median [Q1, Q3])", "Wilcoxon", "nolabel"]:
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
        table = crf_significance(results, ["lesion"])
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
    specificity = table[table["metric"] == "specificity"].iloc[0]
    assert specificity["p_value"] == 1.0 and "zero" in specificity["note"]


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
# Figures


def ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def test_lesion_slices_go_through_the_lesion():
    shape = (20, 20, 40)
    truth = ball(shape, (10, 10, 15), 5)  # z 10..20
    prediction = ball(shape, (10, 10, 17), 5)  # z 12..22
    slices = lesion_slices(truth, prediction, 3)
    assert len(slices) == 3 and slices == sorted(set(slices))
    assert all(10 <= z <= 22 for z in slices)
    assert slices[0] < 16 < slices[-1]
    # Prediction only.
    assert all(12 <= z <= 22 for z in lesion_slices(None, prediction, 3))
    # Every chosen slice holds lesion, even with two blobs far apart.
    two = ball(shape, (10, 10, 5), 2) | ball(shape, (10, 10, 34), 2)
    assert all(two[:, :, z].any() for z in lesion_slices(two, None, 3))
    # A lesion on one slice gives that slice; on two slices, both.
    thin = np.zeros(shape, dtype=np.uint8)
    thin[8:12, 8:12, 7] = 4
    assert lesion_slices(thin, np.zeros(shape), 3) == [7]
    thin[8:12, 8:12, 8] = 1
    assert lesion_slices(thin, None, 3) == [7, 8]
    # A lopsided lesion whose quantiles coincide still gives 3 distinct slices.
    lopsided = np.zeros(shape, dtype=bool)
    lopsided[:, :, 30] = True
    lopsided[0, 0, 29] = lopsided[0, 0, 31] = True
    assert lesion_slices(lopsided, None, 3) == [29, 30, 31]


def test_lesion_slices_without_lesion_use_the_brain_or_the_middle():
    shape = (20, 20, 40)
    empty = np.zeros(shape, dtype=bool)
    brain = ball(shape, (10, 10, 25), 6)
    slices = lesion_slices(empty, empty, 3, fallback=brain)
    assert len(slices) == 3 and all(19 <= z <= 31 for z in slices) and 25 in slices
    assert lesion_slices(empty, None, 3) == [20]


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


def synthetic_subject(shape=(48, 44, 24)):
    rng = np.random.default_rng(0)
    brain = ball(shape, (24, 22, 12), 18)
    images = np.stack([ndimage.gaussian_filter(rng.normal(100, 30, size=shape), 1.0) * brain for _ in range(2)])
    truth = np.zeros(shape, dtype=np.uint8)
    truth[ball(shape, (30, 20, 14), 6)] = 2
    truth[ball(shape, (30, 20, 14), 3)] = 4
    prediction = np.roll(truth, 2, axis=0)
    return images.astype(np.float32), truth, prediction


def test_overlay_figure_writes_a_png_through_the_lesion(tmp_path):
    images, truth, prediction = synthetic_subject()
    path = tmp_path / "overlay.png"
    slices = overlay_figure(images, ["flair", "t1"], truth, prediction, LABEL_SCHEMES["brats2021"], path,
                            title="subject 000", spacing=(1.0, 1.0, 2.0))
    assert_png(path)
    assert slices == lesion_slices(truth, prediction, 3)
    assert all(truth[:, :, z].any() or prediction[:, :, z].any() for z in slices)


def test_overlay_figure_without_truth_or_lesion(tmp_path):
    images, _, prediction = synthetic_subject()
    overlay_figure(images, ["flair", "t1"], None, prediction, LABEL_SCHEMES["brats2021"], tmp_path / "a.png")
    assert_png(tmp_path / "a.png")
    empty = np.zeros_like(prediction)
    slices = overlay_figure(images, ["flair", "t1"], empty, empty, LABEL_SCHEMES["brats2021"], tmp_path / "b.png")
    assert_png(tmp_path / "b.png")
    assert 12 in slices  # the brain's centre
    with pytest.raises(ValueError, match="modalities"):
        overlay_figure(images, ["flair"], None, prediction, LABEL_SCHEMES["brats2021"], tmp_path / "c.png")
