"""nnU-Net v2 as a model kind: its raw layout, labels and regions, a tiny plan trained and resumed by nnU-Net's own
code, and the workflow with nnU-Net beside a DeepMedic (CRF, ensemble, comparison, export-model and predict)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import jobs_planned, run
from lesionseg.cli import main as cli
from lesionseg.config import ConfigError
from lesionseg.io import read_image, write_nifti
from lesionseg.labels import scheme_from_config
from lesionseg.nnunet.layout import (class_probabilities, dataset_json, export_case, from_nnunet_axes, raw_dataset,
                                     region_layers, splits_final, to_nnunet_axes)
from lesionseg.training.checkpoints import read_model_file
from lesionseg.training.settings import resolve_models

# A plan small enough for the CPU and the tests: the planner's own choices, with few features.
TINY = {"architecture": "nnunet", "plan": {"base_features": 4, "max_features": 16},
        "training": {"epochs": 2, "iterations_per_epoch": 2, "val_iterations_per_epoch": 1},
        "inference": {"mirroring": False}}


# --- Labels, regions and the raw layout --------------------------------------------------------------------------


def test_nested_schemes_train_region_based_and_others_as_plain_labels():
    assert region_layers(scheme_from_config("brats2021")) == [("WT", 2), ("TC", 1), ("ET", 3)]
    assert region_layers(scheme_from_config("brats2013")) is None  # two classes between TC and ET
    assert region_layers(scheme_from_config("brats2023")) is None  # the resection cavity is outside WT
    assert region_layers(scheme_from_config("binary")) is None
    regions = dataset_json(scheme_from_config("brats2021"), ["flair", "t1c"], 4)
    assert regions["labels"] == {"background": 0, "WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}
    assert regions["regions_class_order"] == [2, 1, 3] and regions["channel_names"] == {"0": "flair", "1": "t1c"}
    plain = dataset_json(scheme_from_config("brats2013"), ["flair"], 2)
    assert plain["labels"] == {"background": 0, "necrosis": 1, "edema": 2, "non_enhancing": 3, "enhancing": 4}
    assert "regions_class_order" not in plain and plain["overwrite_image_reader_writer"] == "NibabelIO"


def test_region_probabilities_become_nested_class_probabilities():
    rng = np.random.default_rng(0)
    regions = rng.random((3, 5, 4, 3)).astype(np.float32)  # WT, TC, ET sigmoids, not nested
    classes = class_probabilities(regions, [2, 1, 3], 4)
    assert classes.shape == (4, 5, 4, 3) and classes.min() >= 0
    np.testing.assert_allclose(classes.sum(0), 1, atol=1e-6)
    et = regions[2]
    tc = np.maximum(regions[1], et)
    wt = np.maximum(regions[0], tc)
    np.testing.assert_allclose(classes[3], et, atol=1e-6)  # each region's probability is the nested one
    np.testing.assert_allclose(classes[1] + classes[3], tc, atol=1e-6)
    np.testing.assert_allclose(classes[1] + classes[2] + classes[3], wt, atol=1e-6)
    # nnU-Net's own export (regions_class_order): enhancing wherever ET > 0.5, whatever the others say
    assert np.all(classes[3][et > 0.5] > 0.5)
    softmax = rng.dirichlet(np.ones(2), size=(4, 3, 2)).transpose(3, 0, 1, 2).astype(np.float32)
    np.testing.assert_array_equal(class_probabilities(softmax, None, 2), softmax)  # plain labels: as nnU-Net gave
    with pytest.raises(ValueError, match="3 class probabilities, the scheme has 2"):
        class_probabilities(regions, None, 2)
    image = rng.random((2, 5, 4, 3))
    assert to_nnunet_axes(image).shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(from_nnunet_axes(to_nnunet_axes(image)), image)


def test_config_of_an_nnunet_model_is_checked():
    def config(model):
        return {"datasets": {"d": {"models": ["m"]}}, "models": {"m": model}}

    spec = resolve_models(config(TINY))["m"]
    assert spec.is_nnunet and spec.parameters == {"configuration": "3d_fullres", "planner": "default", "plan": {
        "gpu_memory_gb": None, "base_features": 4, "max_features": 16}}
    assert spec.training["epochs"] == 2 and spec.training["initial_lr"] == 0.01 and spec.training["phases"] == [1]
    assert spec.inference == {"mirroring": False, "tile_step_size": 0.5}
    with pytest.raises(ConfigError, match="use 'planner:' and 'plan:'"):
        resolve_models(config({"architecture": "nnunet", "parameters": {"maps": [4]}}))
    with pytest.raises(ConfigError, match=r"\['planner'\] are settings of nnU-Net models"):
        resolve_models(config({"architecture": "deepmedic", "planner": "resenc-m"}))
    with pytest.raises(ConfigError, match="nnU-Net trains in one phase"):
        resolve_models(config({"architecture": "nnunet", "training": {"phases": [1, 2]}}))
    with pytest.raises(ConfigError, match="unknown training setting"):
        resolve_models(config({"architecture": "nnunet", "training": {"batches_per_epoch": 3}}))


def test_nnunet_history_keeps_its_last_epoch_and_draws_its_own_losses(tmp_path):
    from lesionseg.nnunet.training import dice_names, history_rows
    from lesionseg.training.curves import kept_epoch, learning_curves_figure, plot_learning_curves

    scheme = scheme_from_config("brats2021")
    logged = {"train_losses": [0.5, -0.1, -0.2], "val_losses": [0.4, 0.0, 0.1], "lrs": [0.01, 0.006, 0.002],
              "dice_per_class_or_region": [[0.1, 0.2, 0.3], [0.8, 0.7, 0.6], [0.5, 0.4, 0.3]],
              "epoch_start_timestamps": [0, 10, 20], "epoch_end_timestamps": [9, 19, 29]}
    rows = history_rows(logged, dice_names(scheme))
    assert [row["kept"] for row in rows] == [0, 0, 1] and rows[1]["val_dice_TC"] == 0.7 and rows[0]["seconds"] == 9
    assert kept_epoch(rows) == 3  # nnU-Net predicts with its last epoch, not its best pseudo Dice (epoch 2)
    figure = learning_curves_figure({1: rows}, {**scheme.class_colours, **scheme.region_colours}, "nn")
    loss_axes, dice_axes, _ = figure.axes
    assert loss_axes.get_ylim()[0] < -0.2  # its Dice + cross-entropy loss goes below 0
    assert "pseudo Dice" in dice_axes.get_ylabel()
    plot_learning_curves(tmp_path / "curve.png", {1: rows}, scheme.region_colours, "nn")
    assert (tmp_path / "curve.png").stat().st_size > 0


def write_cases(root: Path, n: int = 4) -> dict[str, Path]:
    """Preprocessed-looking subjects (2 channels, 4 mm, a nested tumour) exported as nnU-Net cases."""
    rng = np.random.default_rng(0)
    scheme = scheme_from_config("brats2021")
    cases = {}
    for i in range(n):
        shape = (30, 34, 28)
        x, y, z = np.mgrid[:shape[0], :shape[1], :shape[2]]
        centre = rng.integers(11, 17, size=3)
        r = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
        label = np.select([r < 2, r < 4, r < 7], [4, 1, 2], 0).astype(np.uint8)
        mask = np.zeros(shape, bool)
        mask[2:-2, 2:-2, 2:-2] = True
        image = np.stack([rng.normal(size=shape) + 2 * (label > 0), rng.normal(size=shape) + 3 * (label == 4)], -1)
        folder = root / "preprocessed" / f"s{i}"
        folder.mkdir(parents=True)
        write_nifti(folder / "image.nii.gz", (image * mask[..., None]).astype(np.float32), np.diag([4.0, 4, 4, 1]))
        write_nifti(folder / "brain_mask.nii.gz", mask.astype(np.uint8), np.diag([4.0, 4, 4, 1]))
        write_nifti(folder / "label.nii.gz", label, np.diag([4.0, 4, 4, 1]))
        export_case(folder / "image.nii.gz", folder / "brain_mask.nii.gz", folder / "label.nii.gz", scheme, f"s{i}",
                    root / "cases" / f"s{i}")
        cases[f"s{i}"] = root / "cases" / f"s{i}"
    return cases


def test_cases_are_linked_into_the_raw_layout(tmp_path):
    cases = write_cases(tmp_path, 2)
    dataset = raw_dataset(cases, scheme_from_config("brats2021"), ["flair", "t1c"], tmp_path / "raw")
    links = sorted(p.name for p in (dataset / "imagesTr").iterdir())
    assert links == ["s0_0000.nii.gz", "s0_0001.nii.gz", "s1_0000.nii.gz", "s1_0001.nii.gz"]
    label_link = dataset / "labelsTr" / "s0.nii.gz"
    assert label_link.is_symlink() and not Path(label_link.readlink()).is_absolute()  # the results folder can move
    label = read_image(label_link, dtype=None).data
    assert set(np.unique(label)) == {0, 1, 2, 3}  # class indices: nnU-Net wants consecutive labels, not 0 1 2 4
    flair = read_image(dataset / "imagesTr" / "s0_0000.nii.gz").data
    assert flair.ndim == 3 and flair[0].max() == 0  # 0 outside the brain mask: nnU-Net crops to it
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 2


def test_nnunet_plans_trains_resumes_and_predicts_with_its_own_code(tmp_path, caplog, monkeypatch):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from lesionseg.inference.steps import infer_subject
    from lesionseg.nnunet.planning import plan_and_preprocess
    from lesionseg.nnunet.training import train_model_file

    cases = write_cases(tmp_path)
    scheme = scheme_from_config("brats2021")
    raw_dataset(cases, scheme, ["flair", "t1c"], tmp_path / "raw")
    spec = resolve_models({"datasets": {"d": {"models": ["m"]}}, "models": {"m": TINY}})["m"]
    plans = plan_and_preprocess(tmp_path / "raw", tmp_path / "nnpre", "default", spec.parameters["plan"],
                                "3d_fullres", splits_final([(["s0", "s1", "s2"], ["s3"])]), processes=1)
    arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert arch["features_per_stage"][0] == 4 and max(arch["features_per_stage"]) == 16
    splits = json.loads((tmp_path / "nnpre/Dataset001_lesionseg/splits_final.json").read_text())
    assert splits == [{"train": ["s0", "s1", "s2"], "val": ["s3"]}]

    files = {"model_path": tmp_path / "m.pt", "history_path": tmp_path / "h.csv", "curve_path": tmp_path / "c.png"}
    common = dict(model_name="m", dataset="d", parameters=spec.parameters, budget=spec.training, scheme=scheme,
                  modalities=["flair", "t1c"], fingerprint="fp", preprocessing={}, train_subjects=["s0", "s1", "s2"],
                  val_subjects=["s3"], threads=1, **files)
    # Killed after its first epoch's checkpoint ...
    original_end = nnUNetTrainer.on_epoch_end

    def killed_after_first_epoch(self):
        original_end(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(nnUNetTrainer, "on_epoch_end", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_model_file(tmp_path / "nnpre", tmp_path / "nnresults", 0, **common)
    assert not files["model_path"].exists()
    monkeypatch.setattr(nnUNetTrainer, "on_epoch_end", original_end)
    # ... it resumes at the second.
    caplog.set_level("INFO")
    train_model_file(tmp_path / "nnpre", tmp_path / "nnresults", 0, **common)
    assert "resuming fold 0 at epoch 1 of 2" in caplog.text
    history = pd.read_csv(files["history_path"])
    assert list(history["epoch"]) == [1, 2] and {"val_dice_WT", "val_dice_TC", "val_dice_ET"} <= set(history)
    contents = read_model_file(files["model_path"])  # plain data and tensors: weights_only loading
    record = contents["networks"][0]
    assert record["architecture"] == "nnunet" and record["parameters"]["plans"] == plans
    assert record["parameters"]["dataset_json"]["regions_class_order"] == [2, 1, 3]

    settings = {"segment_size": "auto", "batch_size": 2, "precision": "float32", "memory_budget_mb": 256}
    subject = tmp_path / "preprocessed" / "s3"
    outputs = {}
    for mirroring in (False, True):
        out = tmp_path / f"mirroring-{mirroring}.nii.gz"
        infer_subject([files["model_path"]], subject / "image.nii.gz", subject / "brain_mask.nii.gz", out,
                      tmp_path / f"mi-{mirroring}.nii.gz", "fp", {**settings, "nnunet": {"mirroring": mirroring}})
        outputs[mirroring] = read_image(out).data
    probabilities = outputs[False]
    assert probabilities.shape == (30, 34, 28, 4)  # the preprocessing grid, class probabilities
    np.testing.assert_allclose(probabilities.sum(-1), 1, atol=1e-5)
    assert not np.allclose(outputs[False], outputs[True])  # mirroring averages other predictions


# --- The workflow: nnU-Net beside a DeepMedic ------------------------------------------------------------------


NN_MODEL = """  nn:
    architecture: nnunet
    plan: {base_features: 4, max_features: 16}
    training: {epochs: 2, iterations_per_epoch: 2, val_iterations_per_epoch: 1}
    inference: {mirroring: false}
"""


def with_nnunet(config: str) -> str:
    """The finished run's config with an nnU-Net model and an ensemble of it and the DeepMedic ``tiny``."""
    config = config.replace("    models: [tiny]\n", "    models: [tiny, nn]\n    ensembles: [both]\n")
    config = config.replace("models:\n  tiny:", "models:\n" + NN_MODEL + "  tiny:")
    return config + "ensembles:\n  both: {members: [tiny, nn]}\n"


@pytest.fixture(scope="module")
def nnunet_run(finished_run, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("nnunet") / "run"
    shutil.copytree(finished_run, workdir, symlinks=True)
    config = with_nnunet((workdir / "config.yaml").read_text())
    planned = jobs_planned(run(workdir, config, "-n"))
    assert "train_model" not in planned and "sample_subject" not in planned, planned  # the DeepMedic is kept
    assert planned["nnunet_case"] == 2 and planned["nnunet_train"] == 1 and planned["nnunet_plan"] == 1, planned
    result = run(workdir, config)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_nnunet_trains_and_is_scored_beside_the_deepmedic(nnunet_run):
    results = nnunet_run / "results" / "cohort"
    raw = results / "nnunet" / "raw" / "Dataset001_lesionseg"
    assert sorted(p.name for p in (raw / "labelsTr").iterdir()) == ["SynthTumor_000.nii.gz", "SynthTumor_001.nii.gz"]
    splits = json.loads((results / "nnunet/nn/preprocessed/Dataset001_lesionseg/splits_final.json").read_text())
    assert splits == [{"train": ["SynthTumor_000"], "val": ["SynthTumor_001"]}]  # the pipeline's split
    for method in ("nn", "nn+crf", "nn+pp", "both", "both+crf+pp"):
        for subject in ("SynthTumor_002", "SynthTumor_003"):
            segmentation = read_image(results / f"segmentations/{method}/{subject}.nii.gz", dtype=None)
            assert set(np.unique(segmentation.data)) <= {0, 1, 2, 3, 4}
    assert (results / "crf/nn/parameters.yaml").is_file()  # the CRF is tuned for nnU-Net too
    summary = pd.read_csv(results / "evaluation/summary.csv")
    assert {"tiny", "nn", "both", "nn+crf"} <= set(summary["method"].astype(str))
    comparison = pd.read_csv(results / "evaluation/method_comparison.csv")
    pairs = set(zip(comparison["method"], comparison["compared_with"]))
    assert ("tiny", "nn") in pairs and not {p for p in pairs if "both" in p[1]}, pairs  # not its own ensemble
    assert "Methods compared" in (results / "evaluation/summary.html").read_text()
    assert (nnunet_run / "benchmarks/cohort/nnunet_plan/nn.tsv").is_file()
    # Nothing changed: nothing re-runs.
    config = (nnunet_run / "config.yaml").read_text()
    assert jobs_planned(run(nnunet_run, config, "-n")) == {}
    # Mirroring is an inference setting: it re-runs nnU-Net's inference and what follows, never its training.
    planned = jobs_planned(run(nnunet_run, config.replace("inference: {mirroring: false}", "inference: {mirroring: true}"), "-n"))
    assert planned.get("infer", 0) >= 2 and "nnunet_train" not in planned and "nnunet_plan" not in planned, planned


def test_an_exported_nnunet_ensemble_predicts_as_the_workflow(nnunet_run, tmp_path):
    model_file = tmp_path / "both.pt"
    assert cli(["export-model", "--configfile", str(nnunet_run / "config.yaml"), "--dataset", "cohort",
                "--model", "both", "--out", str(model_file), "--directory", str(nnunet_run)]) == 0
    contents = read_model_file(model_file)
    assert [n["architecture"] for n in contents["networks"]] == ["deepmedic", "nnunet"]
    subject = "SynthTumor_002"
    raw = nnunet_run / "data" / subject
    images = [f"--image={m}={raw / f'{subject}_{m}.nii.gz'}" for m in ("flair", "t1", "t1ce", "t2")]
    mask = nnunet_run / f"results/cohort/brain_masks/{subject}.nii.gz"
    done = subprocess.run([sys.executable, "-m", "lesionseg.cli", "predict", "--model", str(model_file), *images,
                           "--mask", str(mask), "--threads", "2", "--no-mirroring", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    workflow = read_image(nnunet_run / f"results/cohort/segmentations/both/{subject}.nii.gz", dtype=None).data
    predicted = read_image(tmp_path / "out/segmentation.nii.gz", dtype=None).data
    assert np.mean(predicted == workflow) > 0.999
