# Input functions and helpers of the rules in rules/evaluation.smk, which includes this file first (Snakemake's
# lint wants functions and rules in separate files).

from lesionseg.datasets.manifest import LABEL_COLUMN
from lesionseg.inference.methods import split_postprocessing


# --- A method's segmentations and the truth they are scored against --------------------------------------------


def evaluation_inputs(wildcards):
    """A method's segmentations of its subjects, and the truth of those that have one."""
    dataset, rows = wildcards.dataset, manifest_rows(wildcards.dataset)
    subjects = method_subjects(dataset, wildcards.method)
    return {
        "segmentations": [f"results/{dataset}/segmentations/{wildcards.method}/{s}.nii.gz" for s in subjects],
        "truths": [rows[s][LABEL_COLUMN] for s in subjects if rows[s][LABEL_COLUMN]],
    }


# --- Calibration: a method's probabilities against the truth of the labelled subjects it segments --------------


def calibration_subjects(dataset, method):
    """The subjects a method segments that have a truth (those its probabilities are calibrated on)."""
    rows = manifest_rows(dataset)
    return [s for s in method_subjects(dataset, method) if rows[s][LABEL_COLUMN]]


def calibrated_methods(dataset):
    """The dataset's methods with probability maps (networks, ensembles, either + crf; not + pp, whose
    post-processing changes only the segmentation) that segment some labelled subject."""
    return [m for m in methods_of(dataset)
            if not split_postprocessing(m)[1] and calibration_subjects(dataset, m)]


def calibration_inputs(wildcards):
    """A method's probability maps of its labelled subjects on their original grids, their truths and their brain
    masks (the calibration counts the voxels inside the brain only), subject by subject."""
    dataset, rows = wildcards.dataset, manifest_rows(wildcards.dataset)
    subjects = calibration_subjects(dataset, wildcards.method)
    return {
        "probabilities": [f"results/{dataset}/probabilities/{wildcards.method}/{s}.nii.gz" for s in subjects],
        "truths": [rows[s][LABEL_COLUMN] for s in subjects],
        "masks": [f"results/{dataset}/brain_masks/{s}.nii.gz" for s in subjects],
    }


def calibration_mem_mb(wildcards, input):
    """Memory of one subject (the calibration holds one at a time): the largest subject's files, like
    export_results's estimate of a probability map."""
    largest = max((input_mb(files) for files in zip(input.probabilities, input.truths, input.masks)), default=0)
    return int(1500 + 40 * largest)


# --- Targets: the scores, summaries, overlays and run times of each dataset ------------------------------------


def evaluation_targets(dataset):
    """Per-method tables, the calibration of the methods with probabilities (and the dataset's reliability diagram),
    the dataset's summaries and per-subject page, and an overlay per network family and subject it segments."""
    methods = [m for m in methods_of(dataset) if method_subjects(dataset, m)]
    if not methods:
        return []
    targets = [f"results/{dataset}/evaluation/{method}/per_subject.csv" for method in methods]
    calibrated = calibrated_methods(dataset)
    targets += [f"results/{dataset}/evaluation/{method}/calibration{suffix}.csv" for method in calibrated
                for suffix in ("", "_summary")]
    if calibrated:
        targets += [f"results/{dataset}/evaluation/calibration_summary.csv",
                    f"results/{dataset}/evaluation/reliability_diagram.png"]
    targets += [f"results/{dataset}/evaluation/summary.{ext}" for ext in ("csv", "md", "html")]
    targets.append(f"results/{dataset}/evaluation/per_subject.html")
    targets += [path for paths in overlay_files(dataset).values() for path in paths]
    targets.append(f"results/{dataset}/runtimes.csv")
    return targets
