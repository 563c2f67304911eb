# Stage 6: scores of every method on the test subjects (original grid, the user's truth).

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


rule evaluate:
    input:
        unpack(evaluation_inputs),
    output:
        per_subject="results/{dataset}/evaluation/{method}/per_subject.csv",
    log:
        "logs/{dataset}/evaluate/{method}.log",
    params:
        subjects=lambda wc: method_subjects(wc.dataset, wc.method),
        labelled=lambda wc: [bool(manifest_rows(wc.dataset)[s][LABEL_COLUMN])
                             for s in method_subjects(wc.dataset, wc.method)],
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(complete=True),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=image_mem_mb(1500, 10),
        runtime=lambda wc, input: 5 + len(input.segmentations) // 20,
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/evaluate.py"
