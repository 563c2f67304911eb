"""The whole chain on real scans: the six BRATS 2015 cases of the official DeepMedic's examples.

They are read, unmodified, from ``../shared/data/deepmedic-brats2015`` beside the
repository (CC BY-NC-SA 3.0: never copied into it) through the documented entry
``deepmedic_brats15`` of ``config/examples.yaml``, as a user would: ``lesionseg
check``, then Snakemake, then the report. Only the budget is cut to CPU size
(2 mm, a small DeepMedic, a few epochs). Without that folder (a user's clone)
the tests are skipped; under ``CI=true`` they must run.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, data_digests, run
from lesionseg.cli import main as cli
from lesionseg.io import read_image

pytestmark = pytest.mark.integration

DATA_RELATIVE = "../shared/data/deepmedic-brats2015"
DATA = (REPO / DATA_RELATIVE).resolve()
ENTRY = "deepmedic_brats15"
TEST_CASES = ("brats_2013_pat0001_1", "brats_2013_pat0002_1")
CASE_FOLDERS = {"brats_2013_pat0005_1": "train", "brats_2013_pat0006_1": "train",
                "brats_2013_pat0003_1": "validation", "brats_2013_pat0004_1": "validation",
                "brats_2013_pat0001_1": "test", "brats_2013_pat0002_1": "test"}
# A CPU-sized budget: the paper's layers with fewer feature maps, 2 mm voxels, a few short epochs.
MODEL = {
    "architecture": "deepmedic",
    "parameters": {"maps": [15, 15, 20, 20, 20, 20, 25, 25], "fc_maps": [75, 75]},
    "training": {"phases": [1], "epochs": 4, "batches_per_epoch": 15, "samples_per_subject": 400,
                 "lr_halve_at": [3]},
}


# nnU-Net sized for the CPU: its planner's choices for 1 GB of GPU memory with few features, a few short epochs.
NNUNET = {
    "architecture": "nnunet", "plan": {"gpu_memory_gb": 1, "base_features": 8, "max_features": 64},
    "training": {"epochs": 3, "iterations_per_epoch": 5, "val_iterations_per_epoch": 1},
    "inference": {"mirroring": False},
}


def real_data_config() -> dict:
    """The example entry as documented, pointed at the shared data, with the CPU budget."""
    examples = yaml.safe_load((REPO / "config/examples.yaml").read_text())
    entry = copy.deepcopy(examples["datasets"][ENTRY])
    assert entry["root"] == DATA_RELATIVE  # the example names the data where the tests read it
    entry["root"] = str(DATA)
    entry["split"]["file"] = str(REPO / entry["split"]["file"])
    entry["preprocessing"]["resample"] = {"spacing_mm": 2.0}
    entry["models"], entry["ensembles"] = ["dm", "nn"], []
    return {"datasets": {ENTRY: entry}, "models": {"dm": MODEL, "nn": NNUNET},
            "crf": {"parameters": {"iterations": 3}, "tune": {"trials": 3}}}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """The check, the workflow and the report, run once on the six cases."""
    if not DATA.is_dir():
        reason = (f"the six real BRATS 2015 cases are not in {DATA_RELATIVE} (beside the repository; "
                  "see its README): real-data tests skipped")
        if os.environ.get("CI") == "true":
            pytest.fail(reason + ", but they must run under CI=true")
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("real_data")
    before = data_digests(DATA)
    config = yaml.safe_dump(real_data_config(), sort_keys=False)
    (workdir / "config.yaml").write_text(config)
    check_status = cli(["check", "--configfile", str(workdir / "config.yaml")])
    result = run(workdir, config, timeout=2400)
    assert result.returncode == 0, result.stderr[-5000:]
    report = run(workdir, config, "--report", str(workdir / "report.html"))
    assert report.returncode == 0, report.stderr[-3000:]
    return {"workdir": workdir, "check_status": check_status, "digests_before": before}


def case_file(subject: str, name: str):
    return DATA / CASE_FOLDERS[subject] / subject / name


def test_the_example_entry_passes_the_check(real_run, capsys):
    assert real_run["check_status"] == 0


def test_the_given_masks_are_the_brain_masks_unchanged(real_run):
    for subject in CASE_FOLDERS:
        given = read_image(case_file(subject, "brainmask.nii.gz"))
        mask = read_image(real_run["workdir"] / f"results/{ENTRY}/brain_masks/{subject}.nii.gz", dtype=None)
        np.testing.assert_array_equal(mask.data > 0, given.data > 0.5)
        np.testing.assert_array_equal(mask.affine, given.affine)


def test_results_are_on_the_original_grid_and_clearly_better_than_labelling_the_brain(real_run):
    workdir = real_run["workdir"]
    scores = pd.read_csv(workdir / f"results/{ENTRY}/evaluation/dm/per_subject.csv")
    whole = scores[scores["region"] == "WT"].set_index("subject")
    summary = {}
    for subject in TEST_CASES:
        flair = read_image(case_file(subject, "Flair_subtrMeanDivStd.nii.gz"))
        for method in ("dm", "dm+crf", "nn", "nn+crf"):
            segmentation = read_image(workdir / f"results/{ENTRY}/segmentations/{method}/{subject}.nii.gz",
                                      dtype=None)
            assert segmentation.data.shape == (240, 240, 155) == flair.data.shape
            np.testing.assert_array_equal(segmentation.affine, flair.affine)  # diag(-1, -1, 1), origin (0, 239, 0)
            assert set(np.unique(segmentation.data)) <= {0, 1, 2, 3, 4}
        truth = read_image(case_file(subject, "OTMultiClass.nii.gz")).data > 0
        brain = read_image(case_file(subject, "brainmask.nii.gz")).data > 0.5
        trivial = 2 * (truth & brain).sum() / (truth.sum() + brain.sum())  # the whole brain labelled tumour
        summary[subject] = {"dice_wt": float(whole.loc[subject, "dice"]), "trivial_wt": float(trivial)}
    (workdir / "real_data_dice.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    for subject, row in summary.items():
        assert row["dice_wt"] > 2 * row["trivial_wt"] and row["dice_wt"] > 0.3, (subject, row)


def test_nnunet_is_planned_trained_and_applied_by_its_own_package_on_the_pipeline_split(real_run):
    results = real_run["workdir"] / f"results/{ENTRY}"
    dataset = results / "nnunet/nn/preprocessed/Dataset001_lesionseg"
    splits = json.loads((dataset / "splits_final.json").read_text())
    train = sorted(s for s, split in CASE_FOLDERS.items() if split == "train")
    validation = sorted(s for s, split in CASE_FOLDERS.items() if split == "validation")
    assert splits == [{"train": train, "val": validation}]
    labels = json.loads((dataset / "dataset.json").read_text())["labels"]
    assert len(labels) == 5 and "regions_class_order" not in labels  # BraTS 2013: plain labels
    plans = json.loads(next(dataset.glob("nnUNet*Plans.json")).read_text())
    assert plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["features_per_stage"][0] == 8
    scores = pd.read_csv(results / "evaluation/nn/per_subject.csv")
    assert set(scores["subject"]) == set(TEST_CASES) and scores["dice"].notna().all()
    history = pd.read_csv(results / "models/nn/phase1/history.csv")
    assert list(history["epoch"]) == [1, 2, 3]


def test_the_report_shows_the_real_dataset(real_run):
    text = (real_run["workdir"] / "report.html").read_text(errors="replace")
    assert ENTRY in text and "brats_2013_pat0001_1" in text


def test_the_trained_model_exported_and_predict_give_the_workflow_segmentation_of_a_real_case(real_run):
    """A user's way out of the workflow: export the model, segment a real case from the command line."""
    workdir, subject = real_run["workdir"], TEST_CASES[0]
    model_file = workdir / "dm.pt"
    assert cli(["export-model", "--configfile", str(workdir / "config.yaml"), "--dataset", ENTRY, "--model", "dm",
                "--out", str(model_file), "--directory", str(workdir)]) == 0
    images = [f"--image=flair={case_file(subject, 'Flair_subtrMeanDivStd.nii.gz')}",
              f"--image=t1c={case_file(subject, 'T1c_subtrMeanDivStd.nii.gz')}"]
    out = workdir / "predicted" / subject
    done = subprocess.run([sys.executable, "-m", "lesionseg.cli", "predict", "--model", str(model_file), *images,
                           "--mask", str(case_file(subject, "brainmask.nii.gz")), "--crf", "--threads", "2",
                           "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    workflow = read_image(workdir / f"results/{ENTRY}/segmentations/dm+crf/{subject}.nii.gz", dtype=None)
    predicted = read_image(out / "segmentation.nii.gz", dtype=None)
    assert np.allclose(predicted.affine, workflow.affine)
    np.testing.assert_array_equal(predicted.data, workflow.data)


def test_the_real_data_is_never_modified(real_run):
    assert data_digests(DATA) == real_run["digests_before"]
