# Stage 6: scores of every method on the test subjects (original grid, the user's truth).


rule evaluate:
    input:
        unpack(evaluation_inputs),
    output:
        per_subject="results/{dataset}/evaluation/{method}/per_subject.csv",
    log:
        "logs/{dataset}/evaluate/{method}.log",
    params:
        subjects=lambda wc: test_subjects(wc.dataset),
        labelled=lambda wc: [bool(manifest_rows(wc.dataset)[s][LABEL_COLUMN]) for s in test_subjects(wc.dataset)],
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=image_mem_mb(1500, 10),
        runtime=lambda wc, input: 5 + len(input.segmentations) // 20,
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/evaluate.py"
