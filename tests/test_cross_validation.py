"""k-fold cross-validation: folds by hash, one model per fold and phase, every labelled subject scored once."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from conftest import jobs_planned, run
from lesionseg.datasets.cohort import write_synthetic_subject
from lesionseg.datasets.manifest import read_manifest
from lesionseg.datasets.splits import assign_splits, fold_validation, split_fractions
from lesionseg.training.checkpoints import read_model_file

CV_CONFIG = """datasets:
  cv:
    format: generic
    root: data
    images: "{subject}/{subject}_{modality}.nii.gz"
    label: "{subject}/{subject}_seg.nii.gz"
    mask: "{subject}/{subject}_brainmask.nii.gz"
    modalities: [flair, t1, t1ce, t2]
    labels: brats2013
    split: {folds: 3, seed: 1}  # puts subjects 0-3 in folds 1, 0, 2, 0
    models: [tiny]
    preprocessing: {bias_correction: {modalities: []}, resample: {spacing_mm: 4.0}}
models:
  tiny:
    architecture: deepmedic
    parameters: {maps: [4, 4, 4, 4, 4, 4, 4, 4], fc_maps: [8, 8]}
    training: {phases: [1, 2], epochs: 1, batches_per_epoch: 2, batch_size: 2, samples_per_subject: 50,
               phase2: {epochs: 1}}
crf:
  parameters: {iterations: 2}
  tune: {trials: 1}
postprocessing: {enabled: false}  # chosen on the out-of-fold results like the CRF's parameters; spared for time
"""


def add_subject(root: Path, index: int, labelled: bool = True) -> str:
    files = write_synthetic_subject("tumor", 0, index, 4.0, root)
    if not labelled:
        files.label.unlink()
    return files.subject


def test_folds_follow_the_hash_and_adding_subjects_moves_none():
    subjects = [f"s{i:03d}" for i in range(300)]
    fractions = split_fractions({"folds": 5, "test": 0.2})
    before = assign_splits(subjects, subjects, fractions, seed=1, folds=5)
    counts = Counter(before.values())
    assert set(counts) == {"fold0", "fold1", "fold2", "fold3", "fold4", "test"}
    assert counts["test"] == pytest.approx(60, abs=25) and min(counts[f"fold{k}"] for k in range(5)) > 25
    after = assign_splits([*subjects, "new1", "new2"], [*subjects, "new1", "new2"], fractions, seed=1, folds=5)
    assert all(after[s] == before[s] for s in subjects)
    assert split_fractions({"folds": 3})["test"] == 0.0  # nothing is held out unless asked
    pool = [s for s in subjects if before[s] != "fold0"]
    assert fold_validation(pool, 0.2, 1) == fold_validation(list(reversed(pool)), 0.2, 1)
    assert fold_validation(pool[:2], 0.0001, 1) and not fold_validation(pool[:1], 0.2, 1)


def test_three_folds_train_three_models_per_phase_and_score_every_labelled_subject_once(tmp_path):
    labelled = [add_subject(tmp_path / "data", i) for i in range(4)]
    unlabelled = add_subject(tmp_path / "data", 4, labelled=False)
    assert run(tmp_path, CV_CONFIG, "results/cv/subjects.tsv").returncode == 0
    planned = jobs_planned(run(tmp_path, CV_CONFIG, "-n"))
    assert planned["train_model"] == 6, planned  # 3 folds x 2 phases
    result = run(tmp_path, CV_CONFIG)
    assert result.returncode == 0, result.stderr[-3000:]
    results = tmp_path / "results/cv"
    for fold in range(3):
        for phase in (1, 2):
            assert (results / f"models/tiny/fold{fold}/phase{phase}/model.pt").is_file()
    splits = {row["subject"]: row["split"] for row in read_manifest(results / "subjects.tsv")}
    assert splits[unlabelled] == "test" and all(splits[s].startswith("fold") for s in labelled)
    # Out of fold: each labelled subject once, by the model of its fold (which never trained on it).
    for method in ("tiny", "tiny+crf"):
        scores = pd.read_csv(results / f"evaluation/{method}/per_subject.csv", dtype={"subject": str})
        assert sorted(scores.loc[scores["region"] == "WT", "subject"]) == sorted(labelled), method
        assert scores["dice"].notna().all()
    for subject in labelled:
        line = next(x for x in (tmp_path / f"logs/cv/infer/tiny/{subject}.log").read_text().splitlines()
                    if "dense inference of" in x)
        assert re.findall(r"models/tiny/(fold\d)/phase2/model\.pt", line) == [splits[subject]]
    # The fold models together segment the rest.
    assert (results / f"segmentations/tiny@folds+crf/{unlabelled}.nii.gz").is_file()
    log = (tmp_path / f"logs/cv/infer/tiny@folds/{unlabelled}.log").read_text()
    assert all(f"models/tiny/fold{k}/phase2/model.pt" in log for k in range(3))

    # nnU-Net beside it gets the same folds: its fold k trains and validates on the subjects the pipeline's fold-k
    # models do, so that both methods' out-of-fold results are over the same subjects.
    with_nnunet = CV_CONFIG.replace("models: [tiny]", "models: [tiny, nn]").replace(
        "models:\n  tiny:", "models:\n  nn: {architecture: nnunet, plan: {base_features: 4, max_features: 8}}\n  tiny:")
    planned = jobs_planned(run(tmp_path, with_nnunet, "-n"))
    assert planned["nnunet_train"] == 3 and planned["nnunet_plan"] == 1, planned
    planning = run(tmp_path, with_nnunet, "results/cv/nnunet/nn/preprocessed")
    assert planning.returncode == 0, planning.stderr[-3000:]
    folds = json.loads((results / "nnunet/nn/preprocessed/Dataset001_lesionseg/splits_final.json").read_text())
    assert len(folds) == 3
    for k, fold in enumerate(folds):
        own = {s for s, split in splits.items() if split == f"fold{k}"}
        assert own and not own & {*fold["train"], *fold["val"]}  # the fold's subjects stay unseen
        trained = read_model_file(results / f"models/tiny/fold{k}/phase1/model.pt")["provenance"]
        assert fold["train"] == sorted(trained["train_subjects"]) and fold["val"] == sorted(trained["val_subjects"])

    # A new labelled subject retrains the models that now train on it, not the model of its own fold.
    new = add_subject(tmp_path / "data", 5)
    manifest = run(tmp_path, CV_CONFIG, "results/cv/subjects.tsv")
    assert manifest.returncode == 0, manifest.stderr[-2000:]
    new_fold = {row["subject"]: row["split"] for row in read_manifest(results / "subjects.tsv")}[new]
    dry = run(tmp_path, CV_CONFIG, "-n")
    outputs = [line for block in dry.stdout.split("rule ")[1:] if block.startswith("train_model:")
               for line in block.splitlines() if line.strip().startswith("output:")]
    retrained = {fold for line in outputs for fold in re.findall(r"models/tiny/(fold\d)/phase\d/model\.pt", line)}
    assert new_fold not in retrained and retrained == {f"fold{k}" for k in range(3)} - {new_fold}

