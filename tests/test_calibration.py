"""Calibration of the probabilities: reliability histograms, ECE, MCE, Brier score, the rule's tables and the
reliability diagram (lesionseg.evaluation.calibration, lesionseg.reporting.calibration)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lesionseg.evaluation.calibration import (
    BIN_COLUMNS,
    N_BINS,
    SUMMARY_COLUMNS,
    ReliabilityHistogram,
    add_subject,
    bin_rows,
    calibrate_method,
    calibration_summary,
    empty_histograms,
    read_reliability_table,
)
from lesionseg.inference.outputs import write_probabilities
from lesionseg.io import write_nifti
from lesionseg.labels import LABEL_SCHEMES

BRATS = LABEL_SCHEMES["brats2021"]  # background, necrotic_non_enhancing (1), edema (2), enhancing (4)


def test_a_perfectly_calibrated_case_has_an_ece_near_zero():
    # Exactly calibrated: in every bin the fraction of truth equals the probability.
    exact = ReliabilityHistogram.empty()
    exact.add(np.array([0.25] * 4 + [0.8] * 5), np.array([1, 0, 0, 0] + [1, 1, 1, 1, 0]))
    assert exact.ece() == pytest.approx(0.0, abs=1e-12) and exact.mce() == pytest.approx(0.0, abs=1e-12)
    # Sampled: truth drawn with the probability itself; the ECE is then only sampling noise, about
    # sqrt(p (1 - p) / n) per bin with n ~ 13,000 voxels per bin (< 0.005): 0.01 leaves room.
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200_000)
    sampled = ReliabilityHistogram.empty()
    sampled.add(p, rng.uniform(size=p.size) < p)
    assert sampled.ece() < 0.01
    assert sampled.brier() == pytest.approx(1 / 6, abs=0.005)  # E[p (1 - p)] for p ~ U(0, 1)


def test_an_over_confident_case_has_the_ece_computed_by_hand():
    histogram = ReliabilityHistogram.empty()
    # 10 voxels at 0.9 (bin 13: 13/15 <= 0.9 < 14/15), 7 in the region: gap 0.2;
    # 30 voxels at 0.1 (bin 1), none in the region: gap 0.1.
    histogram.add(np.array([0.9] * 10 + [0.1] * 30), np.array([1] * 7 + [0] * 3 + [0] * 30, dtype=bool))
    assert histogram.total == 40 and histogram.count[13] == 10 and histogram.count[1] == 30
    assert histogram.ece() == pytest.approx(10 / 40 * 0.2 + 30 / 40 * 0.1)  # 0.125
    assert histogram.mce() == pytest.approx(0.2)
    assert histogram.brier() == pytest.approx((7 * 0.1**2 + 3 * 0.9**2 + 30 * 0.1**2) / 40)  # 0.07
    assert np.isnan(histogram.mean_probability()[0]) and histogram.observed_frequency()[13] == pytest.approx(0.7)


def test_bin_edges_clipping_and_an_empty_histogram():
    histogram = ReliabilityHistogram.empty()
    assert histogram.n_bins == N_BINS == 15 and histogram.edges[[0, -1]].tolist() == [0.0, 1.0]
    assert histogram.bin_of(np.array([0.0, 1 / 15 - 1e-9, 1 / 15 + 1e-9, 1.0, 1.0 + 1e-6, -1e-6])).tolist() == [
        0, 0, 1, 14, 14, 0]
    assert np.isnan(histogram.ece()) and np.isnan(histogram.mce()) and np.isnan(histogram.brier())
    with pytest.raises(ValueError, match="shape"):
        histogram.add(np.zeros(3), np.zeros(4))


def test_bins_accumulate_the_same_subject_by_subject_or_all_at_once():
    rng = np.random.default_rng(1)
    subjects = [(rng.uniform(size=n) ** 3, rng.uniform(size=n) < 0.3) for n in (50, 700, 1)]
    one_by_one, merged = ReliabilityHistogram.empty(), ReliabilityHistogram.empty()
    for p, y in subjects:
        one_by_one.add(p, y)
        single = ReliabilityHistogram.empty()
        single.add(p, y)
        merged.merge(single)
    at_once = ReliabilityHistogram.empty()
    at_once.add(np.concatenate([p for p, _ in subjects]), np.concatenate([y for _, y in subjects]))
    for histogram in (one_by_one, merged):
        assert (histogram.count == at_once.count).all()
        for name in ("sum_probability", "sum_truth", "sum_squared_error"):
            assert np.allclose(getattr(histogram, name), getattr(at_once, name), rtol=1e-12)
        assert histogram.ece() == pytest.approx(at_once.ece()) and histogram.brier() == pytest.approx(at_once.brier())
    with pytest.raises(ValueError, match="bins"):
        at_once.merge(ReliabilityHistogram.empty(10))


def test_regions_sum_their_classes_probabilities_inside_the_brain():
    assert {region: BRATS.region_classes(region) for region in BRATS.regions} == {
        "WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
    # Two voxels: class probabilities (background, necrotic, edema, enhancing).
    probabilities = np.array([[0.1, 0.6], [0.2, 0.1], [0.3, 0.2], [0.4, 0.1]])
    regions = {region: BRATS.region_probability(probabilities, region) for region in BRATS.regions}
    assert np.allclose(regions["WT"], [0.9, 0.4]) and np.allclose(regions["TC"], [0.6, 0.2])
    assert np.allclose(regions["ET"], [0.4, 0.1])
    with pytest.raises(ValueError, match="5 classes"):
        BRATS.region_probability(np.zeros((5, 2)), "WT")

    # A subject of 2 x 2 x 1 voxels, one outside the brain (certain background there: it must not count).
    volume = np.zeros((4, 2, 2, 1))
    volume[:, 0, 0, 0] = probabilities[:, 0]
    volume[:, 1, 0, 0] = probabilities[:, 1]
    volume[:, 0, 1, 0] = (0.0, 0.0, 0.0, 1.0)
    volume[:, 1, 1, 0] = (1.0, 0.0, 0.0, 0.0)
    truth = np.array([[[4], [4]], [[2], [0]]], dtype=np.uint8)
    brain = np.array([[[True], [True]], [[True], [False]]])
    histograms = empty_histograms(BRATS)
    add_subject(histograms, volume, truth, brain, BRATS)
    assert {region: h.total for region, h in histograms.items()} == {"WT": 3, "TC": 3, "ET": 3}
    wt, et = histograms["WT"], histograms["ET"]
    assert wt.sum_probability.sum() == pytest.approx(0.9 + 0.4 + 1.0) and wt.sum_truth.sum() == 3
    assert et.sum_truth.sum() == 2  # the enhancing voxels 4, 4; edema (2) is not ET
    assert et.brier() == pytest.approx(((0.4 - 1) ** 2 + (0.1 - 0) ** 2 + (1.0 - 1) ** 2) / 3)


def test_the_rule_writes_the_tables_from_the_files_one_subject_at_a_time(tmp_path):
    rng = np.random.default_rng(2)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    paths = {"probabilities": [], "truths": [], "masks": []}
    truth_all, probability_all = [], []
    for k in range(2):
        logits = rng.normal(size=(4, 6, 5, 4))
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=0)
        truth = rng.choice(np.array([0, 1, 2, 4], dtype=np.uint8), size=(6, 5, 4))
        mask = np.ones((6, 5, 4), dtype=np.uint8)
        mask[0] = 0
        for kind, data in (("probabilities", None), ("truths", truth), ("masks", mask)):
            path = tmp_path / f"{kind}/s{k}.nii.gz"
            path.parent.mkdir(exist_ok=True)
            if data is None:
                write_probabilities(path, probabilities, affine)
            else:
                write_nifti(path, data, affine)
            paths[kind].append(path)
        probability_all.append(probabilities[:, mask > 0])
        truth_all.append(truth[mask > 0])
    bins, summary = tmp_path / "calibration.csv", tmp_path / "calibration_summary.csv"
    histograms = calibrate_method(["s0", "s1"], paths["probabilities"], paths["truths"], paths["masks"], BRATS,
                                  bins, summary)

    table = pd.read_csv(bins)
    assert list(table.columns) == list(BIN_COLUMNS) and len(table) == 3 * N_BINS
    assert table.groupby("region", sort=False)["count"].sum().to_dict() == {"WT": 200, "TC": 200, "ET": 200}
    rows = pd.read_csv(summary).set_index("region")
    assert list(rows.reset_index().columns) == list(SUMMARY_COLUMNS) and (rows["subjects"] == 2).all()
    expected = ReliabilityHistogram.empty()  # ET from the arrays in memory (float32 as stored)
    expected.add(np.concatenate([p[3] for p in probability_all]).astype(np.float32),
                 np.concatenate(truth_all) == 4)
    assert rows.loc["ET", "ece"] == pytest.approx(expected.ece(), abs=1e-6)
    assert rows.loc["ET", "brier"] == pytest.approx(expected.brier(), abs=1e-6)
    assert rows.loc["WT", "prevalence"] == pytest.approx(np.mean(np.concatenate(truth_all) > 0))
    back = read_reliability_table(bins)
    assert list(back) == ["WT", "TC", "ET"]
    assert all((back[r].count == histograms[r].count).all() and back[r].ece() == pytest.approx(histograms[r].ece())
               for r in back)

    small = write_nifti(tmp_path / "small.nii.gz", np.ones((2, 2, 2), np.uint8), affine)
    with pytest.raises(ValueError, match="differ in shape"):
        calibrate_method(["s0"], paths["probabilities"][:1], paths["truths"][:1], [small], BRATS, bins, summary)


def test_the_reliability_diagram_and_the_dataset_table(tmp_path):
    from lesionseg.reporting.calibration import TABLE_COLUMNS, summarise_calibration

    rng = np.random.default_rng(3)
    bins, summaries = {}, {}
    for method, power in (("net", 1.0), ("net+crf", 3.0)):
        histograms = empty_histograms(LABEL_SCHEMES["binary"])
        p = rng.uniform(size=5000)
        histograms["lesion"].add(p ** power, rng.uniform(size=p.size) < p)  # the +crf twin over-confident
        bins[method], summaries[method] = tmp_path / f"{method}.csv", tmp_path / f"{method}_summary.csv"
        pd.DataFrame(bin_rows(histograms)).to_csv(bins[method], index=False)
        pd.DataFrame(calibration_summary(histograms, 1)).to_csv(summaries[method], index=False)
    table = summarise_calibration("d", bins, summaries, ["lesion"], tmp_path / "table.csv", tmp_path / "diagram.png")
    assert list(table.columns) == list(TABLE_COLUMNS) and list(table["method"]) == ["net", "net+crf"]
    assert table.loc[1, "ece"] > table.loc[0, "ece"]
    assert pd.read_csv(tmp_path / "table.csv").shape == (2, len(TABLE_COLUMNS))
    assert (tmp_path / "diagram.png").stat().st_size > 20_000
