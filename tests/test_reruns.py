"""Incremental re-runs: what a change of the data or of the config runs again, on a finished run.

Each test changes a copy of one finished run (the session fixture ``finished_run``).
The manifest is a checkpoint that reads every input, so a test first runs it for
real (cheap) and then asks Snakemake, with a dry run, what the rest would run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from conftest import cohort_config, data_digests, jobs_planned, run, write_cohort_subject

pytestmark = pytest.mark.integration
MANIFEST = "results/cohort/subjects.tsv"
TEST_SUBJECT = "SynthTumor_002"
# What one test subject's new or changed scans run: its own chain (preprocessing to its overlay, for the
# network and the network+CRF, each with and without post-processing; the calibration and quality control of
# both), then the tables and pages that gather every subject. No training, no CRF tuning, no new choice of the
# post-processing, no new quality model.
ONE_TEST_SUBJECT = {"skull_strip": 1, "bias_correct": 1, "resample_crop": 1, "normalise": 1, "preprocess_label": 1,
                    "preprocessing_qc": 1, "infer": 1, "crf": 1, "export_results": 2, "postprocess_segmentation": 2,
                    "overlay": 1, "evaluate": 4, "calibrate": 2, "summarise_calibration": 1, "quality_control": 2,
                    "review": 1, "summarise_dataset": 1, "subject_table": 1, "runtimes": 1, "overview": 1, "all": 1}


@pytest.fixture
def workdir(finished_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy, symlinks=True)
    return copy


def planned_after_manifest(workdir: Path, config: str) -> dict[str, int]:
    """Jobs a run would do once the manifest is up to date."""
    result = run(workdir, config, MANIFEST)
    assert result.returncode == 0, result.stderr[-3000:]
    return jobs_planned(run(workdir, config, "--dry-run"))


def test_a_finished_run_has_nothing_to_do(workdir):
    assert jobs_planned(run(workdir, cohort_config(), "--dry-run")) == {}


def test_a_changed_scan_reruns_only_its_subjects_chain_and_the_aggregates(workdir):
    scan = workdir / f"data/{TEST_SUBJECT}/{TEST_SUBJECT}_flair.nii.gz"
    image = nib.load(scan)
    data = image.get_fdata(dtype=np.float32)
    data[data.shape[0] // 2] *= 1.2  # one brighter slice
    nib.save(nib.Nifti1Image(data, image.affine, image.header), scan)
    planned = planned_after_manifest(workdir, cohort_config())
    assert planned == ONE_TEST_SUBJECT, planned


def test_a_new_test_subject_is_segmented_without_retraining(workdir):
    write_cohort_subject(workdir / "data", 4, "test")
    planned = planned_after_manifest(workdir, cohort_config())
    assert planned == ONE_TEST_SUBJECT, planned


def test_a_new_training_subject_retrains_and_resegments(workdir):
    write_cohort_subject(workdir / "data", 4, "train")
    planned = planned_after_manifest(workdir, cohort_config())
    assert planned["sample_subject"] == 1 and planned["train_model"] == 2, planned
    # The new model segments every test and validation subject again; the CRF is tuned for it again and runs on
    # them, and the post-processing is chosen again.
    assert planned["infer"] == 3 and planned["tune_crf"] == 1 and planned["crf"] == 3, planned
    assert planned["choose_postprocessing"] == 2 and planned["postprocess_segmentation"] == 4, planned
    assert planned["normalise"] == 1, planned  # only the new subject is preprocessed


def test_config_edits_that_change_no_result_rerun_nothing_but_the_page_that_shows_the_config(workdir):
    config = yaml.safe_load(cohort_config())
    config["models"]["unused"] = {"architecture": "twopathcnn"}
    config["ensembles"] = {"unused_ensemble": {"members": ["tiny", "unused"]}}
    edited = "# keys sorted, an unused model and ensemble added\n" + yaml.safe_dump(config, sort_keys=True)
    result = run(workdir, edited, "--dry-run")
    assert jobs_planned(result) == {"overview": 1, "all": 1}, result.stdout[-3000:]
    reordered = "# keys sorted\n" + yaml.safe_dump(yaml.safe_load(cohort_config()), sort_keys=True)
    assert jobs_planned(run(workdir, reordered, "--dry-run")) == {}


def test_the_users_data_is_never_modified(finished_run):
    assert data_digests(finished_run / "data") == json.loads((finished_run / "data_digests.json").read_text())
