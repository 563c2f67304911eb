"""The evaluation rule's work: per-subject tables from segmentations and truth on disk, and the summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lesionseg.evaluation.lesionwise import LESIONWISE_METRICS
from lesionseg.evaluation.metrics import METRICS
from lesionseg.evaluation.steps import evaluate_method
from lesionseg.io import write_nifti
from lesionseg.labels import LABEL_SCHEMES
from lesionseg.reporting.steps import summarise_dataset

BRATS = LABEL_SCHEMES["brats2021"]
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def label(shift: int = 0) -> np.ndarray:
    data = np.zeros((20, 20, 10), dtype=np.uint8)
    data[5 + shift:12 + shift, 5:12, 3:7] = 2
    data[7 + shift:10 + shift, 7:10, 4:6] = 4
    return data


def test_scored_and_unscored_subjects(tmp_path):
    write_nifti(tmp_path / "truth_a.nii.gz", label(), AFFINE)
    write_nifti(tmp_path / "seg_a.nii.gz", label(shift=1), AFFINE)
    write_nifti(tmp_path / "seg_b.nii.gz", label(), AFFINE)  # subject b has no truth
    table = evaluate_method(["a", "b"], [tmp_path / "seg_a.nii.gz", tmp_path / "seg_b.nii.gz"],
                            [tmp_path / "truth_a.nii.gz", None], BRATS, tmp_path / "per_subject.csv")
    written = pd.read_csv(tmp_path / "per_subject.csv")
    assert list(written["region"]) == ["WT", "TC", "ET"] * 2
    a = written[written.subject == "a"].set_index("region")
    assert a.loc["WT", "dice"] == pytest.approx(2 * 6 * 7 * 4 / (2 * 7 * 7 * 4))
    assert a.loc["WT", "volume_truth_mm3"] == 7 * 7 * 4 * 2.0  # spacing from the header
    b = written[written.subject == "b"].set_index("region")
    assert b["dice"].isna().all() and b.loc["ET", "volume_prediction_mm3"] == 3 * 3 * 2 * 2.0
    assert len(table) == 6


def test_lesionwise_columns_of_scored_and_unscored_rows(tmp_path):
    wider = ((0, 20), (0, 0), (0, 0))
    truth = np.pad(label(), wider)
    truth[30:33, 15:18, 7:9] = 2  # a second, 18-voxel lesion of the whole tumour: not scored (BraTS: > 50 voxels)
    write_nifti(tmp_path / "truth_a.nii.gz", truth, AFFINE)
    write_nifti(tmp_path / "seg_a.nii.gz", np.pad(label(shift=1), wider), AFFINE)
    write_nifti(tmp_path / "seg_b.nii.gz", np.pad(label(), wider), AFFINE)  # subject b has no truth
    evaluate_method(["a", "b"], [tmp_path / "seg_a.nii.gz", tmp_path / "seg_b.nii.gz"],
                    [tmp_path / "truth_a.nii.gz", None], BRATS, tmp_path / "per_subject.csv")
    written = pd.read_csv(tmp_path / "per_subject.csv")
    assert list(written.columns) == ["subject", "region", *METRICS, *LESIONWISE_METRICS]
    a = written[written.subject == "a"].set_index("region")
    assert a[list(LESIONWISE_METRICS)].notna().all().all()
    # WT: the 196-voxel lesion, found (shifted by one voxel); the small lesion left out; no false positive.
    assert a.loc["WT", "truth_lesions"] == 1 and a.loc["WT", "detected_lesions"] == 1
    assert a.loc["WT", "predicted_lesions"] == 1 and a.loc["WT", "false_positive_lesions"] == 0
    assert a.loc["WT", "lesionwise_dice"] == pytest.approx(2 * 6 * 7 * 4 / (2 * 7 * 7 * 4))
    assert a.loc["WT", "lesion_f1"] == 1.0
    assert a.loc["WT", "absolute_volume_difference_mm3"] == 3 * 3 * 2 * 2.0  # the missed small lesion, 2 mm slices
    # ET: an 18-voxel lesion only, not scored, and its match is no false positive: perfect (BraTS).
    assert a.loc["ET", "truth_lesions"] == 0 and a.loc["ET", "false_positive_lesions"] == 0
    assert a.loc["ET", "lesionwise_dice"] == 1.0 and a.loc["ET", "lesionwise_hd95"] == 0.0
    b = written[written.subject == "b"].set_index("region")
    assert b[list(LESIONWISE_METRICS)].isna().all().all()


def test_shape_mismatch_names_the_subject_and_the_files(tmp_path):
    write_nifti(tmp_path / "truth.nii.gz", label(), AFFINE)
    write_nifti(tmp_path / "seg.nii.gz", label()[:, :, :8], AFFINE)
    with pytest.raises(ValueError, match="subject a: segmentation .*seg.nii.gz has shape"):
        evaluate_method(["a"], [tmp_path / "seg.nii.gz"], [tmp_path / "truth.nii.gz"], BRATS, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_dataset_summary_files(tmp_path):
    for i in range(3):
        write_nifti(tmp_path / f"truth{i}.nii.gz", label(), AFFINE)
        write_nifti(tmp_path / f"raw{i}.nii.gz", label(shift=i), AFFINE)
        write_nifti(tmp_path / f"crf{i}.nii.gz", label(shift=max(i - 1, 0)), AFFINE)
    subjects = ["s0", "s1", "s2"]
    truths = [tmp_path / f"truth{i}.nii.gz" for i in range(3)]
    for method, prefix in (("net", "raw"), ("net+crf", "crf")):
        evaluate_method(subjects, [tmp_path / f"{prefix}{i}.nii.gz" for i in range(3)], truths, BRATS,
                        tmp_path / f"{method}.csv")
    out = {name: tmp_path / name
           for name in ("s.csv", "s.md", "s.html", "sig.csv", "cmp.csv", "box.png", "crf.png")}
    summarise_dataset("d", {"net": tmp_path / "net.csv", "net+crf": tmp_path / "net+crf.csv"}, BRATS,
                      *out.values())
    summary = pd.read_csv(out["s.csv"])
    assert list(summary["method"]) == ["net", "net+crf"]
    assert summary.loc[1, "dice_WT_mean"] > summary.loc[0, "dice_WT_mean"]
    html = out["s.html"].read_text()
    assert "net+crf" in html and "Wilcoxon" in html and "<table" in html
    significance = pd.read_csv(out["sig.csv"])
    assert set(significance["region"]) == {"WT", "TC", "ET"} and (significance["n"] == 3).all()
    assert out["box.png"].stat().st_size > 10_000
    comparison = pd.read_csv(out["cmp.csv"])  # one network: the header only
    assert comparison.empty and "compared_with" in comparison.columns


def test_runtimes_per_rule_from_benchmark_files(tmp_path):
    from lesionseg.reporting.runtimes import rule_of, summarise_runtimes

    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    files = []
    for rule, subject, seconds, rss in (("infer", "a", 10.0, 900), ("infer", "b", 20.0, 1100), ("crf", "a", 3.0, 400)):
        path = tmp_path / f"benchmarks/d/{rule}/m/{subject}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"{seconds}\t0:00:10\t{rss}\t1\t1\t1\t0\t0\t90\t{seconds}\n")
        files.append(path)
    table = summarise_runtimes(files, tmp_path / "r.csv", tmp_path / "r.png", "d").set_index("rule")
    assert table.loc["infer", "jobs"] == 2 and table.loc["infer", "total_s"] == 30 and table.loc["infer", "mean_s"] == 15
    assert table.loc["infer", "max_rss_mb"] == 1100 and table.loc["crf", "jobs"] == 1
    assert (tmp_path / "r.png").stat().st_size > 5_000
    with pytest.raises(ValueError, match="not a benchmark file"):
        rule_of(tmp_path / "x.tsv")
