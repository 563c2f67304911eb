# Stage 6b: which segmentations need a look. Per dataset and method with probabilities: a quality model fitted
# on the validation subjects (predicted Dice from the probabilities' own expected Dice, and the training data's
# ranges), and every segmented subject's predicted Dice, score and flags, whether it has a truth or not.


include: "quality_inputs.smk"


rule fit_quality_model:
    input:
        unpack(quality_model_inputs),
    output:
        model="results/{dataset}/quality/{method}.yaml",
    log:
        "logs/{dataset}/fit_quality_model/{method}.log",
    benchmark:
        "benchmarks/{dataset}/fit_quality_model/{method}.tsv"
    wildcard_constraints:
        method=PROBABILITY_METHOD,
    params:
        subjects=lambda wc: validation_subjects(wc.dataset) if fitted_here(wc.dataset, wc.method) else [],
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=quality_mem_mb,
        runtime=image_runtime(5, 0.02),
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/fit_quality_model.py"


rule quality_control:
    input:
        unpack(quality_control_inputs),
    output:
        table="results/{dataset}/qc/{method}.csv",
    log:
        "logs/{dataset}/quality_control/{method}.log",
    benchmark:
        "benchmarks/{dataset}/quality_control/{method}.tsv"
    wildcard_constraints:
        method=PROBABILITY_METHOD,
    params:
        subjects=lambda wc: method_subjects(wc.dataset, wc.method),
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(),
    localrule: True
    threads: 1
    resources:
        mem_mb=quality_mem_mb,
        runtime=image_runtime(5, 0.02),
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/quality_control.py"


rule review:
    input:
        unpack(review_inputs),
    output:
        html=report("results/{dataset}/qc/review.html", caption="../report/review.rst", category="Review first",
                    subcategory="{dataset}", labels={"Dataset": "{dataset}", "Item": "segmentations to review"}),
    log:
        "logs/{dataset}/review.log",
    params:
        methods=lambda wc: checked_methods(wc.dataset),
        overlays=lambda wc: overlays_by_network(wc.dataset),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=image_runtime(5, 0.01),
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/review.py"
