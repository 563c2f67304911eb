# Input functions and helpers of the rules in rules/preprocessing.smk, which includes this file first (Snakemake's
# lint wants functions and rules in separate files).

from lesionseg.datasets.manifest import LABEL_COLUMN, MASK_COLUMN
from lesionseg.preprocessing.settings import SYNTHETIC_TEMPLATE, fingerprint


# --- A subject's raw inputs, the dataset's preprocessing settings and each step's inputs -----------------------


def raw_images(wildcards):
    """The subject's input images, in the dataset's channel order."""
    row = manifest_rows(wildcards.dataset)[wildcards.subject]
    return [row[m] for m in DATASETS[wildcards.dataset].modalities]


def raw_label(wildcards):
    label = manifest_rows(wildcards.dataset)[wildcards.subject][LABEL_COLUMN]
    if not label:
        raise ValueError(f"subject {wildcards.subject} of dataset {wildcards.dataset} has no label")
    return label


def preprocessing_settings(wildcards):
    return DATASETS[wildcards.dataset].preprocessing


def preprocessing_fingerprint(wildcards):
    dataset = DATASETS[wildcards.dataset]
    return fingerprint(dataset.preprocessing, dataset.modalities)


def preprocessing_records(wildcards):
    """The step records of a subject's preprocessing, in the order the steps ran."""
    steps = ["skull_strip", "bias_correction", "resample"]
    if preprocessing_settings(wildcards)["coregister"]["enabled"]:
        steps.insert(0, "coregister")
    return [f"results/{wildcards.dataset}/preprocessing/{wildcards.subject}/{step}.json" for step in steps]


def images_on_reference_grid(wildcards):
    """The subject's modalities on one grid: co-registered if enabled, else as given."""
    if preprocessing_settings(wildcards)["coregister"]["enabled"]:
        return [f"{PRE}/coregistered.nii.gz".format(**wildcards)]
    return raw_images(wildcards)


def skull_strip_inputs(wildcards):
    inputs = {"images": images_on_reference_grid(wildcards)}
    strip = preprocessing_settings(wildcards)["skull_strip"]
    if strip["method"] == "given":
        inputs["given_mask"] = manifest_rows(wildcards.dataset)[wildcards.subject][MASK_COLUMN]
    if strip["method"] == "template":
        if strip["template"] == SYNTHETIC_TEMPLATE:
            inputs["template"] = f"results/{wildcards.dataset}/preprocessing/template/head.nii.gz"
            inputs["template_mask"] = f"results/{wildcards.dataset}/preprocessing/template/brain_mask.nii.gz"
        else:
            inputs["template"], inputs["template_mask"] = strip["template"], strip["template_mask"]
    return inputs


# --- Targets: the preprocessed subjects ------------------------------------------------------------------------


def preprocessing_targets(dataset):
    """Final preprocessing outputs of every valid subject of a dataset."""
    targets = []
    for subject in manifest_subjects(dataset):
        out = f"results/{dataset}/preprocessed/{subject}"
        targets += [f"{out}/image.nii.gz", f"{out}/provenance.json", f"results/{dataset}/brain_masks/{subject}.nii.gz",
                    f"results/{dataset}/qc/preprocessing/{subject}.png"]
    targets += [f"results/{dataset}/preprocessed/{s}/label.nii.gz" for s in labelled_subjects(dataset)]
    return targets
