# Input functions and helpers of the rules in rules/datasets.smk, which includes this file first (Snakemake's
# lint wants functions and rules in separate files).

from pathlib import Path

from lesionseg.datasets import SYNTHETIC_KINDS, synthetic_subject_files
from lesionseg.datasets.manifest import VALIDATION_CACHE


# --- The synthetic cohort: what determines a subject, and its files --------------------------------------------


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


# --- The manifest: every input file of a dataset, and what its validation depends on ---------------------------


def manifest_inputs(wildcards):
    """Every input file of a dataset (for the synthetic cohort, the files it will generate)."""
    files = []
    for subject in DATASETS[wildcards.dataset].discover():
        files += [str(p) for p in (*subject.images.values(), subject.label) if p is not None]
        if subject.mask is not None and subject.mask.is_file():  # a missing mask is reported by validation
            files.append(str(subject.mask))
    return files


# Preprocessing keys that validation depends on (the grid reference, co-registration, the brain masks).
VALIDATION_PREPROCESSING_KEYS = ("reference", "coregister", "skull_strip")


def manifest_entry(wildcards):
    """The dataset's entry as validation sees it: other preprocessing edits do not re-run the manifest."""
    entry = dataset_entry(wildcards, drop=("models", "ensembles"))
    preprocessing = entry.pop("preprocessing", {})
    entry["preprocessing"] = {k: v for k, v in preprocessing.items() if k in VALIDATION_PREPROCESSING_KEYS}
    return entry


def manifest_runtime(wildcards, input):
    return 10 + len(input) // 20


# Each kind of synthetic cohort has its own rules: their files follow different releases' naming.
for kind in SYNTHETIC_KINDS:

    rule:
        name:
            f"synthesize_{kind}_subject"
        output:
            **synthetic_outputs(kind),
            qc="results/{dataset}/qc/synthetic/{subject}.png",
        log:
            "logs/{dataset}/synthesize/{subject}.log",
        params:
            synthetic=synthetic_params,
            root=lambda wc: f"results/{wc.dataset}/raw",
        threads: 1
        resources:
            mem_mb=lambda wc: 500 + int(2500 / synthetic_params(wc)["spacing_mm"] ** 3),
            runtime=lambda wc: 5 + int(5 / synthetic_params(wc)["spacing_mm"] ** 3),
        wildcard_constraints:
            dataset=one_of(n for n, d in DATASETS.items() if d.is_synthetic and d.synthetic["kind"] == kind),
        conda:
            "../envs/io.yaml"
        script:
            "../scripts/synthesize_subject.py"
