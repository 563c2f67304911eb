# What every stage needs: the datasets, models and networks of the config, the wildcard constraints, each dataset's
# manifest and its splits and folds (which subjects train, validate and test which model), the per-subject folders of
# the preprocessing and the resources of the jobs that read images. Each stage's input functions and targets are in
# its own rules file, above its rules; all_targets (rule all) is in reporting.smk, the last one included.
import json
import os
import re

from functools import lru_cache

from lesionseg.datasets import SUBJECT_ID, datasets_from_config
from lesionseg.datasets.applied import applied_links
from lesionseg.datasets.manifest import LABEL_COLUMN, read_manifest
from lesionseg.datasets.splits import CohortSplits, fold_name, fold_of
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


# --- The manifest: each dataset's valid subjects, by subject; its splits and folds -------------------------------
# Input functions run once or more per job: each reads what it needs from the dataset's CohortSplits, built once
# per version of its manifest (so that planning a cohort stays linear in its size).

_manifest_paths = {}  # dataset -> its manifest, once the checkpoint has made it (checkpoints.get() is slow)


def manifest_path(dataset):
    """A dataset's subjects.tsv (raises Snakemake's incomplete-checkpoint signal until the manifest has run)."""
    if dataset not in _manifest_paths:
        _manifest_paths[dataset] = checkpoints.manifest.get(dataset=dataset).output.subjects
    return _manifest_paths[dataset]


@lru_cache(maxsize=None)
def _manifest(path, mtime_ns, split_entry_json):
    rows = {row["subject"]: row for row in read_manifest(path)}
    splits = CohortSplits({s: row["split"] for s, row in rows.items()},
                          [s for s, row in rows.items() if row[LABEL_COLUMN]], json.loads(split_entry_json))
    return rows, splits


def _manifest_of(dataset):
    path = manifest_path(dataset)
    split_entry = json.dumps(config["datasets"][dataset].get("split", {}), sort_keys=True)
    return _manifest(path, os.stat(path).st_mtime_ns, split_entry)


def manifest_rows(dataset):
    """Rows of a dataset's manifest by subject (available once its checkpoint has run)."""
    return _manifest_of(dataset)[0]


def cohort_splits(dataset):
    """The dataset's CohortSplits: which subjects train, validate and test which model."""
    return _manifest_of(dataset)[1]


def manifest_subjects(dataset, split=None):
    """Valid subjects of a dataset, optionally of one split."""
    return cohort_splits(dataset).subjects(split)


def labelled_subjects(dataset):
    return list(cohort_splits(dataset).labelled)


def folds_of(dataset):
    """The k of the dataset's cross-validation (0: a plain train / val / test split)."""
    return fold_count(config, dataset)


def out_of_fold_subjects(dataset):
    """Every labelled subject of the folds (each segmented by the model of its fold)."""
    return cohort_splits(dataset).out_of_fold()


def training_subjects(dataset, fold=None):
    """Labelled subjects of the train split, or those a fold's model trains on."""
    return cohort_splits(dataset).training(fold)


def validation_subjects(dataset, fold=None):
    """Labelled subjects of the val split, of one fold's model, or with folds and no ``fold`` every labelled
    subject of the folds (CohortSplits.validation)."""
    return cohort_splits(dataset).validation(fold)


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


def input_mb(input):
    """The size of a job's existing inputs in MiB, as Snakemake's ``input.size_mb`` (which runs an event loop per
    call: a fifth of planning a large cohort) but read with os.stat."""
    total = 0
    for path in input:
        try:
            total += os.stat(path).st_size
        except OSError:  # not made yet: Snakemake evaluates resources again before the job runs
            pass
    return total / 2**20


def image_mem_mb(base, per_mb):
    """Memory that grows with the (compressed) size of a job's inputs."""
    return lambda wildcards, input: int(base + per_mb * input_mb(input))


def image_runtime(base, per_mb):
    """Runtime (minutes) that grows with the size of a job's inputs."""
    return lambda wildcards, input: int(base + per_mb * input_mb(input))
