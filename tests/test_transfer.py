"""Trained models that travel: applied to other datasets, exported, imported and used by `lesionseg predict`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import data_digests, jobs_planned, run
from lesionseg.cli import main as cli
from lesionseg.crf import CRFParameters
from lesionseg.datasets.cohort import write_synthetic_subject
from lesionseg.io import read_image, write_nifti
from lesionseg.training.checkpoints import read_model_file

# Two more datasets beside the finished run's `cohort`, each applying its trained `tiny` without training:
# one without any truth (its modalities in another order), one whose truth uses the BraTS 2021 labels and
# calls t1ce 't1c'. Both ship brain masks.
TARGETS = """
  unlabelled:
    format: generic
    root: unlabelled
    images: "{{subject}}/{{subject}}_{{modality}}.nii.gz"
    mask: "{{subject}}/{{subject}}_brainmask.nii.gz"
    modalities: [t2, t1ce, flair, t1]
    models: [{{model: tiny, trained_on: cohort}}]
  relabelled:
    format: generic
    root: relabelled
    images: "{{subject}}/{{subject}}_{{modality}}.nii.gz"
    label: "{{subject}}/{{subject}}_seg.nii.gz"
    mask: "{{subject}}/{{subject}}_brainmask.nii.gz"
    modalities: [flair, t1, t1c, t2]
    labels: brats2021
    split: {{train: 0.0, val: 0.0, test: 1.0}}
    models: [{{model: tiny, trained_on: cohort, modality_map: {{t1ce: t1c}}}}]
{extra}"""


def write_target_subjects(root: Path, indices, relabel: bool) -> None:
    for index in indices:
        files = write_synthetic_subject("tumor", 0, index, 4.0, root)
        if relabel:  # BraTS 2021: necrosis and non-enhancing core are both 1; t1ce is called t1c
            files.images["t1ce"].rename(files.images["t1ce"].with_name(f"{files.subject}_t1c.nii.gz"))
            label = read_image(files.label, dtype=None)
            write_nifti(files.label, np.where(label.data == 3, 1, label.data).astype(np.uint8), label.affine)
        else:
            files.label.unlink()


def with_targets(workdir: Path, extra: str = "") -> str:
    config = (workdir / "config.yaml").read_text()
    head, rest = config.split("models:\n  tiny:", 1)
    return head.rstrip("\n") + "\n" + TARGETS.format(extra=extra).strip("\n") + "\nmodels:\n  tiny:" + rest


@pytest.fixture(scope="module")
def applied_run(finished_run, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("applied") / "run"
    shutil.copytree(finished_run, workdir, symlinks=True)
    write_target_subjects(workdir / "unlabelled", [4], relabel=False)
    write_target_subjects(workdir / "relabelled", [5], relabel=True)
    config = with_targets(workdir)
    manifests = run(workdir, config, "results/unlabelled/subjects.tsv", "results/relabelled/subjects.tsv")
    assert manifests.returncode == 0, manifests.stderr[-3000:]
    planned = jobs_planned(run(workdir, config, "-n"))
    assert "train_model" not in planned and "sample_subject" not in planned and "tune_crf" not in planned, planned
    assert planned["infer"] == 2, planned  # one subject per target dataset
    result = run(workdir, config)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_a_model_is_applied_to_datasets_it_never_saw(applied_run):
    results = applied_run / "results"
    for dataset, subject in (("unlabelled", "SynthTumor_004"), ("relabelled", "SynthTumor_005")):
        for method in ("tiny@cohort", "tiny@cohort+crf"):
            segmentation = read_image(results / f"{dataset}/segmentations/{method}/{subject}.nii.gz", dtype=None)
            raw = read_image(applied_run / dataset / subject / f"{subject}_flair.nii.gz")
            assert segmentation.data.shape == raw.data.shape and np.allclose(segmentation.affine, raw.affine)
        # One overlay per network: tiny@cohort and tiny@cohort+crf side by side.
        assert [p.name for p in (results / f"{dataset}/figures/overlays").iterdir()] == ["tiny@cohort"]
        assert (results / f"{dataset}/figures/overlays/tiny@cohort/{subject}.png").is_file()
    # Without truth: volumes, no scores. With BraTS 2021 truth: scored in its labels (no raw value 3 written).
    unlabelled = pd.read_csv(results / "unlabelled/evaluation/tiny@cohort/per_subject.csv")
    assert unlabelled["dice"].isna().all() and unlabelled["volume_prediction_mm3"].notna().all()
    relabelled = pd.read_csv(results / "relabelled/evaluation/tiny@cohort/per_subject.csv")
    assert set(relabelled["region"]) == {"WT", "TC", "ET"} and relabelled["dice"].notna().all()
    segmentation = read_image(results / "relabelled/segmentations/tiny@cohort/SynthTumor_005.nii.gz", dtype=None)
    assert set(np.unique(segmentation.data)) <= {0, 1, 2, 4}
    # The CRF uses the parameters tuned on the training dataset.
    tuned = yaml.safe_load((results / "cohort/crf/tiny/parameters.yaml").read_text())["parameters"]
    log = (applied_run / "logs/relabelled/crf/tiny@cohort/SynthTumor_005.log").read_text()
    assert repr(CRFParameters.from_mapping(tuned)) in log
    # Preprocessed as the model was trained: the source's spacing and N4 settings, the dataset's own mask.
    provenance = (results / "unlabelled/preprocessed/SynthTumor_004/provenance.json").read_text()
    assert '"method": "given"' in provenance and '"spacing_mm": 4.0' in provenance


def test_an_exported_model_imported_and_predict_give_the_workflow_segmentation(applied_run, tmp_path, capsys):
    workdir = tmp_path / "run"
    shutil.copytree(applied_run, workdir, symlinks=True)
    model_file = workdir / "tiny.lsm.pt"
    assert cli(["export-model", "--configfile", str(workdir / "config.yaml"), "--dataset", "cohort",
                "--model", "tiny", "--out", str(model_file), "--directory", str(workdir)]) == 0
    saved = read_model_file(model_file)  # everything needed elsewhere, provenance included
    tuned = yaml.safe_load((workdir / "results/cohort/crf/tiny/parameters.yaml").read_text())
    assert saved["crf_parameters"] == tuned["parameters"]
    # ... and the quality models fitted on its validation subject, for predict's score.
    fitted = yaml.safe_load((workdir / "results/cohort/quality/tiny+crf.yaml").read_text())
    assert saved["quality_models"]["crf"] == fitted and set(saved["quality_models"]) == {"network", "crf"}
    assert saved["modalities"] == ["flair", "t1", "t1ce", "t2"] and saved["scheme"]["name"] == "brats2013"
    assert saved["preprocessing"]["resample"]["spacing_mm"] == 4.0
    network = saved["networks"][0]
    assert network["provenance"]["train_subjects"] == ["SynthTumor_000"] and network["history"]
    assert saved["provenance"]["dataset"] == "cohort" and "torch" in saved["provenance"]["versions"]
    subject = "SynthTumor_004"
    workflow = read_image(workdir / f"results/unlabelled/segmentations/tiny@cohort+crf/{subject}.nii.gz",
                          dtype=None).data
    workflow_probabilities = read_image(workdir / f"results/unlabelled/probabilities/tiny@cohort+crf/{subject}.nii.gz")

    # Imported into a config: applied with no training, as a model trained elsewhere.
    extra = """  imported:
    format: generic
    root: unlabelled
    images: "{subject}/{subject}_{modality}.nii.gz"
    mask: "{subject}/{subject}_brainmask.nii.gz"
    modalities: [flair, t1, t1ce, t2]
    models: [colleague]"""
    config = with_targets(workdir, extra).replace(
        "models:\n  tiny:", f"models:\n  colleague: {{pretrained: {model_file}}}\n  tiny:")
    planned = jobs_planned(run(workdir, config, "-n"))
    assert "train_model" not in planned and "tune_crf" not in planned, planned
    result = run(workdir, config)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = read_image(workdir / f"results/imported/segmentations/colleague+crf/{subject}.nii.gz", dtype=None).data
    assert np.array_equal(imported, workflow)

    # predict: the same subject outside Snakemake, network + CRF, from the command line (its own
    # process: ITK takes its thread count at its first use, and N4's last bits depend on it; the workflow's
    # bias_correct ran on 2 threads).
    raw = workdir / "unlabelled" / subject
    images = [f"--image={m}={raw / f'{subject}_{m}.nii.gz'}" for m in ("flair", "t1", "t1ce", "t2")]
    common = ["--model", str(model_file), *images, "--mask", str(raw / f"{subject}_brainmask.nii.gz"),
              "--threads", "2"]
    before = data_digests(workdir / "unlabelled")
    predict = [sys.executable, "-m", "lesionseg.cli", "predict"]
    done = subprocess.run([*predict, *common, "--out", str(tmp_path / "crf"), "--crf"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "dense inference" in done.stderr  # progress on the terminal
    # Its quality score under the model file's quality model, printed and written, as the workflow scores it.
    assert "quality: score" in done.stdout and ("FLAGGED for review" in done.stdout or "not flagged" in done.stdout)
    scored = json.loads((tmp_path / "crf/quality.json").read_text())
    assert scored["quality_model"] == "fitted" and 0 <= scored["score"] <= 1
    in_workflow = pd.read_csv(workdir / "results/unlabelled/qc/tiny@cohort+crf.csv").set_index("subject").loc[subject]
    assert scored["score"] == pytest.approx(in_workflow["score"], abs=1e-4)
    reasons = in_workflow["reasons"] if isinstance(in_workflow["reasons"], str) else ""
    assert set(scored["reasons"].split("; ")) == set(reasons.split("; "))  # the modalities in another order
    assert np.array_equal(read_image(tmp_path / "crf/segmentation.nii.gz", dtype=None).data, workflow)
    assert np.array_equal(read_image(tmp_path / "crf/probabilities.nii.gz").data, workflow_probabilities.data)
    for kind in ("entropy", "mutual_information"):  # and the uncertainty maps the workflow writes
        np.testing.assert_array_equal(
            read_image(tmp_path / f"crf/{kind}.nii.gz").data,
            read_image(workdir / f"results/unlabelled/{kind}/tiny@cohort+crf/{subject}.nii.gz").data)
    assert data_digests(workdir / "unlabelled") == before  # nothing the user gave is modified
    # A missing modality is named; a broken image is named with the subject (its output folder) and the file.
    assert cli(["predict", "--model", str(model_file), *images[:3], "--out", str(tmp_path / "x")]) == 1
    assert "missing --image t2=FILE" in capsys.readouterr().err
    broken = tmp_path / "broken_t2.nii.gz"
    broken.write_text("not an image")
    assert cli(["predict", "--model", str(model_file), *images[:3], f"--image=t2={broken}",
                "--out", str(tmp_path / "sub-x")]) == 1
    error = capsys.readouterr().err
    assert "subject 'sub-x'" in error and str(broken) in error and not (tmp_path / "sub-x").exists()


def test_a_model_file_of_a_newer_format_or_another_kind_is_refused(tmp_path):
    import torch

    from lesionseg.training.checkpoints import MODEL_FILE_FORMAT, ModelFileError, read_model_file

    torch.save({"format": MODEL_FILE_FORMAT, "format_version": 99}, tmp_path / "new.pt")
    with pytest.raises(ModelFileError, match="newer than this lesionseg reads"):
        read_model_file(tmp_path / "new.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a lesionseg model file"):
        read_model_file(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ModelFileError, match="not a lesionseg model file"):
        read_model_file(tmp_path / "text.pt")
