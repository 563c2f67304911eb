# Stage 6: scores of every method on the test subjects (original grid, the user's truth).


include: "evaluation_inputs.smk"


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


rule calibrate:
    input:
        unpack(calibration_inputs),
    output:
        bins="results/{dataset}/evaluation/{method}/calibration.csv",
        summary="results/{dataset}/evaluation/{method}/calibration_summary.csv",
    log:
        "logs/{dataset}/calibrate/{method}.log",
    benchmark:
        "benchmarks/{dataset}/calibrate/{method}.tsv"
    wildcard_constraints:
        method=PROBABILITY_METHOD,  # a post-processed method has a segmentation only
    params:
        subjects=lambda wc: calibration_subjects(wc.dataset, wc.method),
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=calibration_mem_mb,
        runtime=image_runtime(5, 0.02),
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/calibrate.py"
