# Helpers shared by every stage: the datasets of the config, wildcard constraints,
# input functions and the list of final targets.
import re

from pathlib import Path

from lesionseg.datasets import SUBJECT_ID, SYNTHETIC_KINDS, datasets_from_config, synthetic_subject_files
from lesionseg.datasets.manifest import read_manifest

DATASETS = datasets_from_config(config)
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


def synthetic_outputs(kind):
    """Output patterns of a synthetic subject: images, truth and true brain mask."""
    files = synthetic_subject_files(kind, Path("results/{dataset}/raw"), "{subject}")
    return {**{m: str(p) for m, p in files.images.items()}, "label": str(files.label),
            "brain_mask": str(files.extras["brain_mask"])}


def manifest_inputs(wildcards):
    """Every input file of a dataset (for the synthetic cohort, the files it will generate)."""
    files = []
    for subject in DATASETS[wildcards.dataset].discover():
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
