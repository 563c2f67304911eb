# Helpers shared by every stage: the datasets of the config, wildcard constraints,
# input functions and the list of final targets.
import re

from lesionseg.datasets import SUBJECT_ID, datasets_from_config
from lesionseg.datasets.manifest import read_manifest

DATASETS = datasets_from_config(config)
SYNTHETIC_DATASETS = [n for n, d in DATASETS.items() if d.is_synthetic]
NOTHING = "(?!x)x"  # a regex that matches no name


def one_of(names):
    """A wildcard constraint matching exactly these names."""
    return "|".join(sorted(map(re.escape, names))) or NOTHING


wildcard_constraints:
    dataset=one_of(DATASETS),
    subject=SUBJECT_ID.pattern.strip("^$"),


def dataset_entry(wildcards, drop=("preprocessing",)):
    """The dataset's config entry without the keys a rule does not use (so editing them re-runs nothing)."""
    return {k: v for k, v in config["datasets"][wildcards.dataset].items() if k not in drop}


def synthetic_params(wildcards):
    """What determines one synthetic subject (not the cohort size, so adding subjects keeps the others)."""
    dataset = DATASETS[wildcards.dataset]
    spec = dataset.synthetic
    index = int(wildcards.subject.rsplit("_", 1)[1])
    return {"kind": spec["kind"], "seed": spec["seed"], "spacing_mm": spec["spacing_mm"], "index": index}


def manifest_inputs(wildcards):
    """Every input file of a dataset (or, for the synthetic cohort, every generated subject)."""
    dataset = DATASETS[wildcards.dataset]
    if dataset.is_synthetic:
        return [f"results/{dataset.name}/raw/{s}" for s in dataset.synthetic_subjects()]
    files = []
    for subject in dataset.discover():
        files += [str(p) for p in (*subject.images.values(), subject.label) if p is not None]
    return files


def manifest_runtime(wildcards, input):
    return 10 + len(input) // 20


def manifest_subjects(dataset, split=None):
    """Valid subjects of a dataset (after its manifest checkpoint), optionally of one split."""
    rows = read_manifest(checkpoints.manifest.get(dataset=dataset).output.subjects)
    return [r["subject"] for r in rows if split is None or r["split"] == split]


def all_targets():
    targets = []
    for name, dataset in DATASETS.items():
        targets += [f"results/{name}/subjects.tsv", f"results/{name}/invalid_subjects.tsv"]
        if dataset.is_synthetic:
            targets += [f"results/{name}/qc/synthetic/{s}.png" for s in dataset.synthetic_subjects()]
    return targets
