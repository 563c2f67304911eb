# Input functions and helpers of the rules in rules/evaluation.smk, which includes this file first (Snakemake's
# lint wants functions and rules in separate files).

from lesionseg.datasets.manifest import LABEL_COLUMN


# --- A method's segmentations and the truth they are scored against --------------------------------------------


def evaluation_inputs(wildcards):
    """A method's segmentations of its subjects, and the truth of those that have one."""
    dataset, rows = wildcards.dataset, manifest_rows(wildcards.dataset)
    subjects = method_subjects(dataset, wildcards.method)
    return {
        "segmentations": [f"results/{dataset}/segmentations/{wildcards.method}/{s}.nii.gz" for s in subjects],
        "truths": [rows[s][LABEL_COLUMN] for s in subjects if rows[s][LABEL_COLUMN]],
    }


# --- Targets: the scores, summaries, overlays and run times of each dataset ------------------------------------


def evaluation_targets(dataset):
    """Per-method tables, the dataset's summaries and per-subject page, and an overlay per network family and
    subject it segments."""
    methods = [m for m in methods_of(dataset) if method_subjects(dataset, m)]
    if not methods:
        return []
    targets = [f"results/{dataset}/evaluation/{method}/per_subject.csv" for method in methods]
    targets += [f"results/{dataset}/evaluation/summary.{ext}" for ext in ("csv", "md", "html")]
    targets.append(f"results/{dataset}/evaluation/per_subject.html")
    targets += [path for paths in overlay_files(dataset).values() for path in paths]
    targets.append(f"results/{dataset}/runtimes.csv")
    return targets
