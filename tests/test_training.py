"""Training on a tiny synthetic case: the loss falls, phase 2 touches only the output layer,
an interrupted training resumes to the same result, and models refuse foreign data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lesionseg import resources
from lesionseg.io import write_nifti
from lesionseg.labels import LABEL_SCHEMES
from lesionseg.preprocessing.normalisation import normalise
from lesionseg.sampling import sample_subject, write_samples
from lesionseg.synthetic import synthesize_subject
from lesionseg.training.checkpoints import ModelMismatchError, load_model, read_model_file
from lesionseg.training.loop import SubjectFiles, TrainingJob, train
from lesionseg.training.settings import training_settings

SCHEME = LABEL_SCHEMES["brats2013"]
MODS = ("flair", "t1", "t1ce", "t2")
TINY = {"maps": [6] * 8, "fc_maps": [12, 12], "dropout": 0.0}


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    """Two preprocessed-like synthetic subjects at 4 mm, with sample files."""
    root = tmp_path_factory.mktemp("train")
    files = []
    for index in range(2):
        subject = synthesize_subject("tumor", seed=3, index=index, spacing_mm=4.0)
        mask = subject.brain_mask > 0
        image = normalise(np.stack([subject.images[m] for m in MODS], axis=-1), mask)
        name = f"s{index}"
        paths = {k: str(root / f"{name}_{k}.nii.gz") for k in ("image", "mask", "label")}
        write_nifti(paths["image"], image, subject.affine)
        write_nifti(paths["mask"], mask.astype(np.uint8), subject.affine)
        write_nifti(paths["label"], subject.label, subject.affine)
        plan = {"foreground": ("foreground", 200), "natural": ("natural", 200), "equiprobable": ("equiprobable", 200)}
        sets = sample_subject(paths["label"], paths["mask"], SCHEME, plan, seed=0, subject=name)
        write_samples(root / f"{name}_samples.npz", sets, {"subject": name})
        files.append(SubjectFiles(name, paths["image"], paths["mask"], paths["label"], str(root / f"{name}_samples.npz")))
    return files


def job(subjects, phase=1, epochs=3, previous=None, **overrides):
    settings = training_settings("deepmedic", {"epochs": epochs, "batches_per_epoch": 6, "batch_size": 4,
                                               "phase2": {"epochs": 2, "lr": 1e-3}, **overrides})
    return TrainingJob("dm", "deepmedic", TINY, settings, phase, SCHEME, MODS, "fp1", subjects[:1], subjects[1:],
                       previous)


def run(job_, out, name="p"):
    paths = {k: str(out / f"{name}.{k}") for k in ("pt", "csv", "png")}
    train(job_, paths["pt"], paths["csv"], paths["png"], str(out / f"{name}.ckpt"), threads=2,
          device=torch.device("cpu"))
    return paths


def test_training_lowers_the_loss_and_writes_history_and_curve(subjects, tmp_path):
    paths = run(job(subjects, epochs=4, optimizer={"lr": 3e-3}), tmp_path)
    saved = read_model_file(paths["pt"])
    losses = [row["loss"] for row in saved["networks"][0]["history"]]
    assert losses[-1] < losses[0]
    assert saved["modalities"] == list(MODS) and next(iter(saved["scheme"]["classes"])) == "background"
    assert "val_dice_WT" in open(paths["csv"]).readline()
    assert (tmp_path / "p.png").stat().st_size > 5000


def test_resume_after_interruption_gives_the_same_model(subjects, tmp_path, monkeypatch):
    import lesionseg.training.loop as loop

    (tmp_path / "straight").mkdir()
    (tmp_path / "killed").mkdir()
    straight = run(job(subjects, epochs=3), tmp_path / "straight")

    real_tqdm = loop.tqdm

    def killed_in_epoch_3(iterable, desc, **kwargs):
        if desc.endswith("epoch 3"):
            raise KeyboardInterrupt("killed")
        return real_tqdm(iterable, desc=desc, **kwargs)

    monkeypatch.setattr(loop, "tqdm", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run(job(subjects, epochs=3), tmp_path / "killed")
    assert not (tmp_path / "killed" / "p.pt").exists()  # no output that looks complete
    monkeypatch.setattr(loop, "tqdm", real_tqdm)
    resumed = run(job(subjects, epochs=3), tmp_path / "killed")

    a = read_model_file(straight["pt"])["networks"][0]
    b = read_model_file(resumed["pt"])["networks"][0]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    # The checkpoint holds the gradient scaler's state too (the loss scale on CUDA; nothing on the CPU).
    assert torch.load(tmp_path / "killed" / "p.ckpt", weights_only=False)["scaler"] == {}
    # A checkpoint of other settings is not resumed.
    assert job(subjects, epochs=3).identity() != job(subjects, epochs=2).identity()


def test_phase_two_changes_only_the_output_layer(subjects, tmp_path):
    first = run(job(subjects, epochs=1), tmp_path, "one")
    second = run(job(subjects, phase=2, previous=first["pt"]), tmp_path, "two")
    before = read_model_file(first["pt"])["networks"][0]["state_dict"]
    after = read_model_file(second["pt"])["networks"][0]["state_dict"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("classifier.") for k in changed), changed


def test_a_model_refuses_data_of_another_preprocessing(subjects, tmp_path):
    paths = run(job(subjects, epochs=1), tmp_path)
    model, metadata = load_model(paths["pt"], "fp1")
    assert metadata["preprocessing_fingerprint"] == "fp1" and not model.training
    with pytest.raises(ModelMismatchError, match="preprocessed differently"):
        load_model(paths["pt"], "another")


def havaei_job(subjects, architecture="twopathcnn", first=None, **parameters):
    settings = training_settings(architecture, {"epochs": 1, "batches_per_epoch": 3, "batch_size": 16})
    small = {"local_maps": [8, 8], "global_maps": 8, **parameters}
    return TrainingJob(architecture, architecture, small, settings, 1, SCHEME, MODS, "fp1", subjects[:1],
                       subjects[1:], first_model=first)


def test_havaei_models_train_on_2d_patches_and_validate_slice_by_slice(subjects, tmp_path):
    first = run(havaei_job(subjects), tmp_path, "two")
    saved = read_model_file(first["pt"])["networks"][0]
    assert np.isfinite(saved["history"][0]["loss"]) and "val_dice_ET" in saved["history"][0]
    cascade = run(havaei_job(subjects, "inputcascadecnn", first=first["pt"]), tmp_path, "cascade")
    state = read_model_file(cascade["pt"])["networks"][0]["state_dict"]
    # The cascade's first CNN is the trained TwoPathCNN, unchanged by the cascade's training.
    assert all(torch.equal(state[f"first.{k}"], v) for k, v in saved["state_dict"].items())


def test_a_cascade_needs_its_first_network(subjects, tmp_path):
    with pytest.raises(ValueError, match="is a cascade"):
        run(havaei_job(subjects, "mfcascadecnn"), tmp_path)


def test_model_config_errors_are_explained():
    from lesionseg.config import ConfigError, validate_config
    from lesionseg.training.settings import resolve_models, sampling_plan

    def config(models, dataset_models):
        return validate_config({"models": models, "datasets": {
            "d": {"format": "brats2021", "root": "x", "models": dataset_models}}})

    specs = resolve_models(config({"dm": {"architecture": "deepmedic", "training": {"phases": [1, 2]}},
                                   "tp": {"architecture": "twopathcnn"}}, ["dm", "tp"]))
    assert specs["dm"].final_phase == 2 and specs["tp"].training["batch_size"] == 128
    assert sampling_plan([specs["dm"].training, specs["tp"].training]) == {
        "equiprobable": ("equiprobable", 2000), "foreground": ("foreground", 1000), "natural": ("natural", 1000)}
    cases = [
        ({"m": {"architecture": "deepmedic", "training": {"epoch": 3}}}, ["m"], "unknown training setting"),
        ({"m": {"architecture": "deepmedic", "parameters": {"map": [1]}}}, ["m"], "no hyper-parameter"),
        ({"m": {"architecture": "deepmedic", "training": {"validation_tile": "big"}}}, ["m"],
         "model 'm': validation_tile must be 'auto' or a positive number"),
        ({"m": {"architecture": "inputcascadecnn"}}, ["m"], "'first:' names the first network"),
        ({"m": {"architecture": "inputcascadecnn", "first": "d"}, "d": {"architecture": "deepmedic"}}, ["m", "d"],
         "must be a twopathcnn model"),
        ({"t": {"architecture": "twopathcnn"}, "m": {"architecture": "mfcascadecnn", "first": "t"}}, ["m"],
         "needs its first network 't'"),
        ({}, ["nope"], "model 'nope' is not defined"),
    ]
    for models, names, message in cases:
        with pytest.raises(ConfigError, match=message):
            resolve_models(config(models, names))


ESTIMATED_TRAINING = {"epochs": 35, "batches_per_epoch": 200, "phase2": {"epochs": 5}, "subjects_per_epoch": 50}


def test_training_estimates_grow_with_the_work():
    assert resources.training_runtime_minutes(ESTIMATED_TRAINING, 1, n_val=10) > \
        resources.training_runtime_minutes(ESTIMATED_TRAINING, 2, n_val=10) > \
        resources.training_runtime_minutes({**ESTIMATED_TRAINING, "phase2": {"epochs": 1}}, 2, n_val=10)
    assert resources.training_runtime_minutes(ESTIMATED_TRAINING, 1, n_val=20) > resources.training_runtime_minutes(
        ESTIMATED_TRAINING, 1, n_val=0)
    # Memory: the subjects one epoch holds, not the whole training set, and the validation's inference batch.
    def estimate(input_mb, n_train, subjects_per_epoch, validation_budget_mb=2048):
        return resources.training_mem_mb(input_mb, n_train, subjects_per_epoch, validation_budget_mb)

    small = estimate(input_mb=100, n_train=10, subjects_per_epoch=50)
    assert estimate(input_mb=1000, n_train=100, subjects_per_epoch=50) > small
    assert estimate(input_mb=1000, n_train=100, subjects_per_epoch=10) < estimate(input_mb=1000, n_train=100,
                                                                                 subjects_per_epoch=50)
    assert estimate(100, 10, 50, validation_budget_mb=4096) == small + 2048


# --- Learning curves: every phase on one epoch axis ------------------------------------------------------------


def history_rows(losses, lrs, dice=None):
    """History rows as the loop writes them (``dice``: per epoch, region -> Dice)."""
    return [{"epoch": i + 1, "loss": loss, "lr": lr,
             **{f"val_dice_{r}": v for r, v in (dice[i] if dice else {}).items()}, "seconds": 1.0}
            for i, (loss, lr) in enumerate(zip(losses, lrs, strict=True))]


def test_learning_curves_put_the_phases_on_one_axis_and_mark_the_kept_epochs(tmp_path):
    from lesionseg.training.curves import (kept_epoch, learning_curves_figure, lr_changes, plot_learning_curves,
                                           read_history)
    from lesionseg.training.loop import write_history

    scores = [0.5, 0.7, 0.8, 0.8, 0.6]  # epochs 3 and 4 tie: the first is kept
    phase1 = history_rows([0.9, 0.6, 0.5, 0.4, 0.35], [1e-3, 1e-3, 1e-3, 5e-4, 5e-4],
                          [{r: s for r in SCHEME.regions} for s in scores])
    phase2 = history_rows([0.05, 0.04], [1e-4, 1e-4], [{r: s for r in SCHEME.regions} for s in (0.82, 0.81)])
    assert kept_epoch(phase1) == 3 and kept_epoch(phase2) == 1
    assert lr_changes(phase1) == [(4, 1e-3, 5e-4)] and lr_changes(phase2) == []
    # Without validation the lowest loss is kept; a NaN Dice never is.
    assert kept_epoch(history_rows([0.9, 0.3, 0.5], [1e-3] * 3)) == 2
    assert kept_epoch(history_rows([0.9, 0.3], [1e-3] * 2, [{"WT": 0.2}, {"WT": float("nan")}])) == 1

    write_history(tmp_path / "p1.csv", phase1)
    write_history(tmp_path / "p2.csv", phase2)
    phases = {1: read_history(tmp_path / "p1.csv"), 2: read_history(tmp_path / "p2.csv")}
    assert phases[1][3]["lr"] == 5e-4 and phases[2][0]["val_dice_WT"] == 0.82
    figure = learning_curves_figure(phases, SCHEME.region_colours, "d: m")
    loss_axes, dice_axes, lr_axes = figure.axes[:3]
    # Phase 2 continues after phase 1's five epochs, on one axis.
    assert [list(line.get_xdata()) for line in loss_axes.lines if line.get_marker() == "o"] == [[1, 2, 3, 4, 5],
                                                                                                [6, 7]]
    assert lr_axes.get_xlim() == (0.5, 7.5) and dice_axes.get_ylim() == (0, 1.02) and loss_axes.get_ylim()[0] == 0
    regions = {line.get_label(): line.get_color() for line in dice_axes.lines if not line.get_label().startswith("_")}
    assert all(regions[r] == SCHEME.region_colours[r] for r in SCHEME.regions) and "mean" in regions
    stars = [(float(line.get_xdata()[0]), float(line.get_ydata()[0])) for line in dice_axes.lines
             if line.get_marker() == "*"]
    assert stars == [(3, pytest.approx(0.8)), (6, pytest.approx(0.82))]  # each phase's kept epoch, at its mean
    texts = " ".join(t.get_text() for axes in figure.axes for t in axes.texts)
    assert "phase 1 keeps epoch 3" in texts and "phase 2 keeps epoch 6 (its epoch 1)" in texts
    assert "phase 2 starts" in texts and "phase 1's epoch 3" in texts and "×0.5" in texts
    plot_learning_curves(tmp_path / "curves.png", phases, SCHEME.region_colours, "d: m")
    assert (tmp_path / "curves.png").stat().st_size > 20_000


def test_the_model_file_keeps_the_epoch_the_curves_mark(subjects, tmp_path):
    from lesionseg.training.curves import kept_epoch, read_history

    paths = run(job(subjects, epochs=3, optimizer={"lr": 3e-3}, lr_halve_at=[2]), tmp_path)
    history = read_history(paths["csv"])
    assert [row["lr"] for row in history] == [3e-3, 3e-3, 1.5e-3]  # the lr of every epoch is in history.csv
    assert read_model_file(paths["pt"])["networks"][0]["best_epoch"] == kept_epoch(history)
