"""Snakemake end to end, on tiny datasets in a temporary working directory."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, SNAKEMAKE, jobs_planned, make_prefixed, run
from lesionseg.datasets.manifest import read_manifest

pytestmark = pytest.mark.integration
MODS = ["flair", "t1", "t1ce", "t2"]


MANIFEST = "results/b/subjects.tsv"  # the fake BraTS images are noise: stop before preprocessing


def brats_config(on_invalid: str = "fail") -> str:
    return f"datasets:\n  b:\n    format: brats2021\n    root: data\n    on_invalid: {on_invalid}\n"


def test_lint_is_clean():
    result = subprocess.run([*SNAKEMAKE, "--lint"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_manifest_of_a_real_format_dataset_and_bad_input(tmp_path):
    make_prefixed(tmp_path / "data", [f"BraTS2021_{i:05d}" for i in range(3)], MODS, "_")
    result = run(tmp_path, brats_config(), MANIFEST)
    assert result.returncode == 0, result.stderr
    rows = read_manifest(tmp_path / "results/b/subjects.tsv")
    assert [r["subject"] for r in rows] == ["BraTS2021_00000", "BraTS2021_00001", "BraTS2021_00002"]

    # A broken subject stops the workflow with a message naming subject and file ...
    bad = tmp_path / "data/BraTS2021_00001/BraTS2021_00001_t1.nii.gz"
    bad.unlink()
    result = run(tmp_path, brats_config(), MANIFEST)
    assert result.returncode != 0
    assert "BraTS2021_00001" in result.stderr and "modality 't1' not found" in result.stderr
    assert "BraTS2021_00001_t1.nii.gz" in result.stderr
    assert not (tmp_path / "results/b/subjects.tsv").exists()  # nothing that looks complete

    # ... or, with on_invalid: skip, is left out and listed.
    result = run(tmp_path, brats_config("skip"), MANIFEST)
    assert result.returncode == 0, result.stderr
    assert [r["subject"] for r in read_manifest(tmp_path / "results/b/subjects.tsv")] == [
        "BraTS2021_00000", "BraTS2021_00002"]
    assert "BraTS2021_00001" in (tmp_path / "results/b/invalid_subjects.tsv").read_text()


def test_new_subjects_update_the_manifest_and_keep_splits(tmp_path):
    make_prefixed(tmp_path / "data", [f"BraTS2021_{i:05d}" for i in range(4)], MODS, "_")
    assert run(tmp_path, brats_config(), MANIFEST).returncode == 0
    before = {r["subject"]: r["split"] for r in read_manifest(tmp_path / "results/b/subjects.tsv")}
    make_prefixed(tmp_path / "data", [f"BraTS2021_{i:05d}" for i in range(4, 8)], MODS, "_")
    result = run(tmp_path, brats_config(), MANIFEST)
    assert result.returncode == 0, result.stderr
    after = {r["subject"]: r["split"] for r in read_manifest(tmp_path / "results/b/subjects.tsv")}
    assert len(after) == 8 and all(after[s] == split for s, split in before.items())
    # Nothing changed: nothing to do.
    assert "Nothing to be done" in run(tmp_path, brats_config(), MANIFEST).stderr


def test_synthetic_cohorts_of_both_kinds_are_generated_validated_and_listed(tmp_path):
    config = (
        "datasets:\n"
        "  tumour:\n    format: synthetic\n    synthetic: {kind: tumor, n_subjects: 2, seed: 0, spacing_mm: 4.0}\n"
        "  stroke:\n    format: synthetic\n    synthetic: {kind: stroke, n_subjects: 2, seed: 1, spacing_mm: 4.0}\n"
    )
    result = run(tmp_path, config)
    assert result.returncode == 0, result.stderr
    tumour = read_manifest(tmp_path / "results/tumour/subjects.tsv")
    assert [r["subject"] for r in tumour] == ["SynthTumor_000", "SynthTumor_001"]
    assert tumour[0]["t1ce"] == "results/tumour/raw/SynthTumor_000/SynthTumor_000_t1ce.nii.gz"
    stroke = read_manifest(tmp_path / "results/stroke/subjects.tsv")
    assert "VSD.Brain.XX.O.MR_DWI." in stroke[0]["dwi"] and stroke[0]["label"].endswith(".nii")
    for name, subject in (("tumour", "SynthTumor_001"), ("stroke", "SynthStroke_001")):
        assert (tmp_path / f"results/{name}/qc/synthetic/{subject}.png").stat().st_size > 10_000
        assert "brain" in (tmp_path / f"logs/{name}/synthesize/{subject}.log").read_text()

    # Growing the cohort generates only the new subject; the others are kept as they are.
    result = run(tmp_path, config.replace("n_subjects: 2, seed: 0", "n_subjects: 3, seed: 0"), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^synthesize_tumor_subject\s+1$", result.stdout, re.MULTILINE), result.stdout


PREPROCESSING_CONFIG = """datasets:
  demo:
    format: synthetic
    synthetic: {kind: tumor, n_subjects: 3, seed: 0, spacing_mm: 4.0}
    split: {file: split.tsv}
    models: [tiny]
    ensembles: [both]
    preprocessing:
      coregister: {enabled: true}
      bias_correction: {modalities: [t1, t1ce], iterations: [20, 20]}
      normalisation: {method: percentile-zscore}
models:
  tiny:
    architecture: deepmedic
    parameters: {maps: [4, 4, 4, 4, 4, 4, 4, 4], fc_maps: [8, 8]}
    training: {phases: [1, 2], epochs: 2, batches_per_epoch: 2, batch_size: 2, samples_per_subject: 50,
               phase2: {epochs: 1}}
  flat:
    architecture: twopathcnn
    training: {phases: [1], epochs: 1, batches_per_epoch: 2, batch_size: 8, samples_per_subject: 50}
ensembles:
  both: {members: [tiny, flat]}
inference: {min_component_mm3: 200}
crf:
  parameters: {iterations: 2}
  tune: {trials: 2}
"""
SPLIT = "subject\tsplit\nSynthTumor_000\ttrain\nSynthTumor_001\ttest\nSynthTumor_002\tval\n"


def test_preprocessing_and_training_end_to_end_with_incremental_reruns(tmp_path):
    from lesionseg.io import read_image

    (tmp_path / "split.tsv").write_text(SPLIT)
    result = run(tmp_path, PREPROCESSING_CONFIG)
    assert result.returncode == 0, result.stderr[-3000:]
    subject = "SynthTumor_001"
    raw = read_image(tmp_path / f"results/demo/raw/{subject}/{subject}_t1.nii.gz")
    mask = read_image(tmp_path / f"results/demo/brain_masks/{subject}.nii.gz", dtype=None)
    assert mask.data.shape == raw.data.shape  # on the subject's original grid
    assert (mask.data.astype(bool) == mask.data).all() and (mask.affine == raw.affine).all()
    true_mask = read_image(tmp_path / f"results/demo/raw/{subject}/{subject}_brainmask.nii.gz").data > 0
    overlap = 2 * (true_mask & (mask.data > 0)).sum() / (true_mask.sum() + (mask.data > 0).sum())
    assert overlap > 0.9

    out = tmp_path / f"results/demo/preprocessed/{subject}"
    image = read_image(out / "image.nii.gz")
    assert image.data.shape[-1] == 4 and image.spacing[:3] == pytest.approx((4.0, 4.0, 4.0))
    brain = read_image(out / "brain_mask.nii.gz").data > 0
    assert np.all(image.data[~brain] == 0) and abs(image.data[brain].mean()) < 0.05
    label = read_image(out / "label.nii.gz", dtype=None).data
    assert label.shape == image.data.shape[:3] and set(np.unique(label)) <= {0, 1, 2, 3, 4}

    provenance = json.loads((out / "provenance.json").read_text())
    assert [s["step"] for s in provenance["steps"]] == [
        "coregister", "skull_strip", "bias_correction", "resample", "normalisation"]
    assert provenance["steps"][2]["corrected"] == ["t1", "t1ce"]
    assert len(provenance["inputs"]) == 4 and all(len(v["sha256"]) == 64 for v in provenance["inputs"].values())
    assert provenance["preprocessing_fingerprint"] and "antspyx" in provenance["versions"]
    assert (tmp_path / f"results/demo/qc/preprocessing/{subject}.png").stat().st_size > 20_000
    assert "skull_strip (template) done" in (tmp_path / f"logs/demo/skull_strip/{subject}.log").read_text()
    assert (tmp_path / f"benchmarks/demo/bias_correct/{subject}.tsv").is_file()

    # Changing the normalisation re-runs normalisation (and what shows it) only.
    changed = PREPROCESSING_CONFIG.replace("percentile-zscore", "zscore")
    planned = jobs_planned(run(tmp_path, changed, "--dry-run"))
    downstream = {"infer": 4, "ensemble": 2, "tune_crf": 3, "crf": 6, "export_results": 6,
                  "choose_postprocessing": 6, "postprocess_segmentation": 6, "evaluate": 12, "overlay": 3, "review": 1,
                  "calibrate": 6, "summarise_calibration": 1, "summarise_dataset": 1, "subject_table": 1,
                  "summarise_postprocessing": 1, "runtimes": 1, "overview": 1, "fit_quality_model": 6,
                  "quality_control": 6}
    assert planned == {"normalise": 3, "preprocessing_qc": 3, "train_model": 3, "learning_curves": 2, **downstream,
                       "all": 1}, planned
    # Changing which modalities N4 corrects re-runs from N4 on, not skull-stripping.
    changed = PREPROCESSING_CONFIG.replace("modalities: [t1, t1ce]", "modalities: all")
    planned = jobs_planned(run(tmp_path, changed, "--dry-run"))
    assert "skull_strip" not in planned and planned["bias_correct"] == 3, planned

    # Training: both phases ran, on the train subject, validated on the val subject.
    model_dir = tmp_path / "results/demo/models/tiny"
    history = (model_dir / "phase1/history.csv").read_text().splitlines()
    assert len(history) == 3 and "val_dice_WT" in history[0]
    assert (model_dir / "phase2/model.pt").is_file() and (model_dir / "phase2/learning_curve.png").is_file()
    assert "1 training subjects" in (tmp_path / "logs/demo/train_model/tiny/phase1.log").read_text()
    assert (tmp_path / "results/demo/samples/SynthTumor_000.npz").is_file()
    assert not (tmp_path / "results/demo/samples/SynthTumor_001.npz").exists()  # test subjects are not sampled
    # A training setting re-runs that model's training only, not preprocessing or sampling.
    changed = PREPROCESSING_CONFIG.replace("epochs: 2, batches_per_epoch: 2", "epochs: 2, batches_per_epoch: 3")
    planned = jobs_planned(run(tmp_path, changed, "--dry-run"))
    assert planned == {"train_model": 2, "learning_curves": 1, "infer": 2, "ensemble": 2, "tune_crf": 2, "crf": 4,
                       "export_results": 4, "choose_postprocessing": 4, "postprocess_segmentation": 4, "evaluate": 8,
                       "overlay": 2, "review": 1, "calibrate": 4, "summarise_calibration": 1, "fit_quality_model": 4,
                       "quality_control": 4, "summarise_dataset": 1, "subject_table": 1,
                       "summarise_postprocessing": 1, "runtimes": 1, "overview": 1, "all": 1}, planned

    # Every method's results for the test subject, on its original grid, in raw label values.
    methods = ["tiny", "flat", "both", "tiny+crf", "flat+crf", "both+crf"]
    for method in methods:
        segmentation = read_image(tmp_path / f"results/demo/segmentations/{method}/{subject}.nii.gz", dtype=None)
        assert segmentation.data.shape == raw.data.shape and np.allclose(segmentation.affine, raw.affine)
        assert set(np.unique(segmentation.data)) <= {0, 1, 2, 3, 4}, method  # BRATS 2013 labels
        probabilities = read_image(tmp_path / f"results/demo/probabilities/{method}/{subject}.nii.gz")
        assert probabilities.data.shape == (*raw.data.shape, 5)
        assert np.allclose(probabilities.data.sum(axis=-1), 1, atol=1e-3)
        # Its uncertainty maps on the same grid: the network's (or ensemble's) predictions disagree only where
        # there are several (the ensemble both; tiny and flat are one network each).
        for kind in ("entropy", "mutual_information"):
            uncertainty = read_image(tmp_path / f"results/demo/{kind}/{method}/{subject}.nii.gz")
            assert uncertainty.data.shape == raw.data.shape and np.allclose(uncertainty.affine, raw.affine)
            assert 0 <= uncertainty.data.min() and uncertainty.data.max() <= 1, (kind, method)
        disagreement = read_image(tmp_path / f"results/demo/mutual_information/{method}/{subject}.nii.gz").data
        assert (disagreement.max() > 0) == method.startswith("both"), method
        # Its post-processed twin: the same segmentation, some components set to background.
        postprocessed = read_image(tmp_path / f"results/demo/segmentations/{method}+pp/{subject}.nii.gz", dtype=None)
        assert np.allclose(postprocessed.affine, raw.affine), method
        assert ((postprocessed.data == segmentation.data) | (postprocessed.data == 0)).all(), method
        assert not (tmp_path / f"results/demo/probabilities/{method}+pp").exists()
        choice = yaml.safe_load((tmp_path / f"results/demo/postprocessing/{method}.yaml").read_text())
        assert list(choice["choice"]) == ["WT", "TC", "ET"] and choice["validation_subjects"] == ["SynthTumor_002"]
        assert len(choice["candidates"]) == 3 * (1 + 7 + 1)  # per region: none, 7 sizes, the largest component
    # Every method with probabilities has its quality table: the test subject's predicted Dice per region, score
    # and flags, under a quality model from the validation subject (one is too few to fit: the expected Dice).
    for method in methods:
        quality = pd.read_csv(tmp_path / f"results/demo/qc/{method}.csv")
        assert list(quality["subject"]) == [subject], method
        assert {"score", "flagged", "reasons", "predicted_dice_WT", "uncertainty_ET", "volume_ml_TC"} <= set(quality)
        assert 0 <= quality["score"].iloc[0] <= 1 and quality["flagged"].dtype == bool
        model = yaml.safe_load((tmp_path / f"results/demo/quality/{method}.yaml").read_text())
        assert model["validation_subjects"] == ["SynthTumor_002"] and not model["dice"]["WT"]["fitted"]
        assert model["training_subjects"] == 1 and set(model["intensity_range"]) == {"flair", "t1", "t1ce", "t2"}
    assert set(json.loads((tmp_path / f"results/demo/qc/preprocessing/{subject}.json").read_text())) == {
        "flair", "t1", "t1ce", "t2"}
    choices = pd.read_csv(tmp_path / "results/demo/postprocessing/summary.csv")
    assert list(choices["method"]) == [m for m in methods for _ in range(3)]
    inference = tmp_path / "results/demo/inference"
    members = [read_image(inference / f"{m}/{subject}.nii.gz").data for m in ("tiny", "flat")]
    assert np.allclose(read_image(inference / f"both/{subject}.nii.gz").data, (members[0] + members[1]) / 2,
                       atol=1e-6)
    assert not (inference / "tiny/SynthTumor_000.nii.gz").exists()  # training subjects are not segmented
    tuned = yaml.safe_load((tmp_path / "results/demo/crf/tiny/parameters.yaml").read_text())
    assert tuned["validation_subjects"] == ["SynthTumor_002"] and tuned["parameters"]["iterations"] == 2
    assert len((tmp_path / "results/demo/crf/tiny/search.csv").read_text().splitlines()) == 1 + 1 + 2
    # A CRF parameter re-runs the CRF and what follows it, nothing upstream.
    planned = jobs_planned(run(tmp_path, PREPROCESSING_CONFIG.replace("iterations: 2}", "iterations: 3}"),
                               "--dry-run"))
    assert planned == {"tune_crf": 3, "crf": 6, "export_results": 3, "choose_postprocessing": 3,
                       "postprocess_segmentation": 3, "evaluate": 6, "overlay": 3, "review": 1, "calibrate": 3,
                       "summarise_calibration": 1, "fit_quality_model": 3, "quality_control": 3, "summarise_dataset": 1,
                       "subject_table": 1, "summarise_postprocessing": 1, "runtimes": 1, "overview": 1,
                       "all": 1}, planned
    # Removing small components re-runs the export and what starts from it.
    planned = jobs_planned(run(tmp_path, PREPROCESSING_CONFIG.replace("min_component_mm3: 200",
                                                                      "min_component_mm3: 0"), "--dry-run"))
    assert planned == {"export_results": 6, "choose_postprocessing": 6, "postprocess_segmentation": 6, "evaluate": 12,
                       "overlay": 3, "review": 1, "calibrate": 6, "summarise_calibration": 1, "summarise_dataset": 1,
                       "subject_table": 1, "summarise_postprocessing": 1, "runtimes": 1, "overview": 1,
                       "all": 1}, planned
    # The sizes the post-processing tries re-run its choice and the post-processed methods only.
    planned = jobs_planned(run(tmp_path, PREPROCESSING_CONFIG + "postprocessing: {min_component_mm3: [20]}\n",
                               "--dry-run"))
    assert planned == {"choose_postprocessing": 6, "postprocess_segmentation": 6, "evaluate": 6, "overlay": 3,
                       "review": 1, "summarise_dataset": 1, "subject_table": 1, "summarise_postprocessing": 1, "overview": 1,
                       "all": 1}, planned

    # Scores per method, the dataset's summaries and an overlay per method and test subject.
    evaluation = tmp_path / "results/demo/evaluation"
    rows = pd.read_csv(evaluation / "both+crf/per_subject.csv")
    assert list(rows["region"]) == ["WT", "TC", "ET"] and (rows["subject"] == subject).all()
    assert rows["dice"].between(0, 1).all() and (rows["hd95"] >= 0).all()
    summary = pd.read_csv(evaluation / "summary.csv")
    methods += [f"{m}+pp" for m in methods]
    assert list(summary["method"]) == methods
    assert "Effect of the CRF" in (evaluation / "summary.md").read_text()
    assert {c for c in rows.columns if c.startswith("lesion")} == {"lesionwise_dice", "lesionwise_hd95", "lesion_f1"}
    networks = ["tiny", "flat", "both"]  # one overlay per network, its variants side by side
    assert sorted(p.name for p in (tmp_path / "results/demo/figures/overlays").iterdir()) == sorted(networks)
    assert all((tmp_path / f"results/demo/figures/overlays/{n}/{subject}.png").is_file() for n in networks)
    page = (evaluation / "per_subject.html").read_text()
    assert page.count(f">{subject}</a>") == len(methods) * 3 and page.count("data:image/jpeg;base64,") == 3
    assert (tmp_path / "results/demo/models/tiny/learning_curves.png").is_file()
    overview = (tmp_path / "results/overview.html").read_text()
    assert "train 1 · val 1 · test 1" in overview and "tuned on 1 validation subjects" in overview
    runtimes = pd.read_csv(tmp_path / "results/demo/runtimes.csv").set_index("rule")
    # The CRF ran on the test and the validation subject (the post-processing is chosen on the latter).
    assert runtimes.loc["train_model", "jobs"] == 3 and runtimes.loc["crf", "jobs"] == 6, runtimes
    report = tmp_path / "report.html"
    result = run(tmp_path, PREPROCESSING_CONFIG, "--report", str(report))
    assert result.returncode == 0 and report.stat().st_size > 100_000, result.stderr[-2000:]
    assert "RuntimeWarning" not in result.stderr, result.stderr[-2000:]  # none from --report


def test_a_label_scheme_keeps_its_class_order_through_the_workflow(tmp_path):
    """The config's keys are sorted when loaded, but not a label scheme's: its order is the network's outputs."""
    make_prefixed(tmp_path / "data", ["sub-01", "sub-02"], ["t1", "flair"], "_", label_values=(0, 1))
    config = (
        "datasets:\n  mine:\n    format: generic\n    root: data\n"
        "    images: '{subject}/{subject}_{modality}.nii.gz'\n    label: '{subject}/{subject}_seg.nii.gz'\n"
        "    modalities: [t1, flair]\n"
        "    labels: {classes: {normal: [0], lesion: [1]}, regions: {lesion: [1]}}\n"
    )
    result = run(tmp_path, config, "results/mine/subjects.tsv")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["subject"] for r in read_manifest(tmp_path / "results/mine/subjects.tsv")] == ["sub-01", "sub-02"]
