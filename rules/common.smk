# What every stage needs: the datasets, models and networks of the config, the wildcard constraints, each dataset's
# manifest and its splits and folds (which subjects train, validate and test which model), the per-subject folders of
# the preprocessing and the resources of the jobs that read images. Each stage's input functions and targets are in
# its own rules file, above its rules; all_targets (rule all) is in reporting.smk, the last one included.
import os
import re

from functools import lru_cache

from lesionseg.datasets import SUBJECT_ID, datasets_from_config
from lesionseg.datasets.applied import applied_links
from lesionseg.datasets.manifest import LABEL_COLUMN, read_manifest
from lesionseg.datasets.splits import fold_name, fold_of, fold_validation, split_fractions
from lesionseg.inference.methods import (CRF_SUFFIX, PP_SUFFIX, dataset_networks, fold_count, pretrained_models,
                                         resolve_ensembles)
from lesionseg.training.settings import resolve_models

DATASETS = datasets_from_config(config)
MODELS = resolve_models(config)  # the models the workflow trains
PRETRAINED = pretrained_models(config)  # imported model files, by model name
ENSEMBLES = resolve_ensembles(config)
NETWORKS = {name: dataset_networks(config, name) for name in DATASETS}  # per dataset, by method name
APPLIED = applied_links(config, DATASETS)  # (dataset, network) -> channels, classes, fingerprint
NOTHING = "(?!x)x"  # a regex that matches no name


def one_of(names):
    """A wildcard constraint matching exactly these names."""
    return "|".join(sorted(map(re.escape, set(names)))) or NOTHING


INFERRED = one_of(n for networks in NETWORKS.values() for n, net in networks.items() if not net.is_ensemble)
AVERAGED = one_of(n for networks in NETWORKS.values() for n, net in networks.items() if net.is_ensemble)
PROBABILITY_METHOD = f"(?:{INFERRED}|{AVERAGED})(?:{re.escape(CRF_SUFFIX)})?"  # a method with a probability map


wildcard_constraints:
    dataset=one_of(DATASETS),
    model=f"(?:{one_of(MODELS)})(?:/fold[0-9]+)?",  # a trained model, or one fold's model of it
    network=f"{INFERRED}|{AVERAGED}",
    method=f"{PROBABILITY_METHOD}(?:{re.escape(PP_SUFFIX)})?",
    phase="1|2",
    subject=SUBJECT_ID.pattern.strip("^$"),


def dataset_entry(wildcards, drop=("preprocessing", "models", "ensembles")):
    """The dataset's config entry without the keys a rule does not use (so editing them re-runs nothing)."""
    return {k: v for k, v in config["datasets"][wildcards.dataset].items() if k not in drop}


# --- The manifest: each dataset's valid subjects, by subject ---------------------------------------------------


@lru_cache(maxsize=None)
def _manifest_rows(path, mtime_ns):
    return {row["subject"]: row for row in read_manifest(path)}


def manifest_rows(dataset):
    """Rows of a dataset's manifest by subject (available once its checkpoint has run)."""
    path = checkpoints.manifest.get(dataset=dataset).output.subjects
    return _manifest_rows(path, os.stat(path).st_mtime_ns)


def manifest_subjects(dataset, split=None):
    """Valid subjects of a dataset, optionally of one split."""
    return [s for s, row in manifest_rows(dataset).items() if split is None or row["split"] == split]


def labelled_subjects(dataset):
    return [s for s, row in manifest_rows(dataset).items() if row[LABEL_COLUMN]]


# --- Splits, folds and the models of each fold -----------------------------------------------------------------


def folds_of(dataset):
    """The k of the dataset's cross-validation (0: a plain train / val / test split)."""
    return fold_count(config, dataset)


def fold_subjects(dataset, fold):
    """Labelled subjects of one fold."""
    return [s for s in manifest_subjects(dataset, fold_name(fold)) if manifest_rows(dataset)[s][LABEL_COLUMN]]


def out_of_fold_subjects(dataset):
    """Every labelled subject of the folds (each segmented by the model of its fold)."""
    return [s for k in range(folds_of(dataset)) for s in fold_subjects(dataset, k)]


def fold_validation_subjects(dataset, fold):
    """The validation subjects of fold ``fold``'s model: a hashed share of the other folds' subjects."""
    split = config["datasets"][dataset]["split"]
    pool = [s for k in range(folds_of(dataset)) if k != fold for s in fold_subjects(dataset, k)]
    return fold_validation(pool, split_fractions(split)["val"], split.get("seed", 0))


def training_subjects(dataset, fold=None):
    """Labelled subjects of the train split, or those a fold's model trains on (the other folds, less its
    validation subjects)."""
    if fold is None:
        return [s for s in manifest_subjects(dataset, "train") if manifest_rows(dataset)[s][LABEL_COLUMN]]
    validation = set(fold_validation_subjects(dataset, fold))
    return [s for k in range(folds_of(dataset)) if k != fold for s in fold_subjects(dataset, k)
            if s not in validation]


def validation_subjects(dataset, fold=None):
    """Labelled subjects of the val split, or of one fold's model. With folds and no ``fold``: every labelled
    subject of the folds, whose out-of-fold results choose the CRF parameters and the post-processing of the
    dataset's networks (as nnU-Net chooses its post-processing on the cross-validation)."""
    if fold is not None:
        return fold_validation_subjects(dataset, fold)
    if folds_of(dataset):
        return out_of_fold_subjects(dataset)
    return [s for s in manifest_subjects(dataset, "val") if manifest_rows(dataset)[s][LABEL_COLUMN]]


def test_subjects(dataset):
    return manifest_subjects(dataset, "test")


def model_name(model):
    """The model of a ``{model}`` wildcard (``deepmedic`` or ``deepmedic/fold2``)."""
    return model.split("/")[0]


def model_fold(model):
    """The fold of a ``{model}`` wildcard (None without folds)."""
    _, sep, fold = model.partition("/")
    return fold_of(fold) if sep else None


def model_instances(dataset, name):
    """``{model}`` wildcards of a model trained on a dataset: itself, or one per fold."""
    k = folds_of(dataset)
    return [f"{name}/{fold_name(fold)}" for fold in range(k)] if k else [name]


# --- Shared by the stages' rules: the preprocessing's folders, the resources of image jobs ---------------------


# Per-subject folders of the preprocessing stage: intermediate files, final files.
PRE = "results/{dataset}/preprocessing/{subject}"
OUT = "results/{dataset}/preprocessed/{subject}"


def image_mem_mb(base, per_mb):
    """Memory that grows with the (compressed) size of a job's inputs."""
    return lambda wildcards, input: int(base + per_mb * input.size_mb)


def image_runtime(base, per_mb):
    """Runtime (minutes) that grows with the size of a job's inputs."""
    return lambda wildcards, input: int(base + per_mb * input.size_mb)
