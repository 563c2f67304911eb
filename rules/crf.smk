# Stage 5: the 3D fully connected CRF after every model and ensemble, with parameters tuned on the
# validation split (or as configured).


include: "crf_inputs.smk"


rule tune_crf:
    input:
        unpack(crf_tuning_inputs),
    output:
        parameters="results/{dataset}/crf/{network}/parameters.yaml",
        search="results/{dataset}/crf/{network}/search.csv",
    log:
        "logs/{dataset}/tune_crf/{network}.log",
    benchmark:
        "benchmarks/{dataset}/tune_crf/{network}.tsv"
    params:
        subjects=lambda wc: validation_subjects(wc.dataset),
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(),
        base=crf_parameters,
        link=inference_link,  # a network trained elsewhere sees the image's channels in its own order
        trials=config["crf"]["tune"]["trials"],
        seed=config["crf"]["tune"]["seed"],
        weights_per_sigma_draw=config["crf"]["tune"]["weights_per_sigma_draw"],
    threads: min(4, workflow.cores)
    resources:
        mem_mb=crf_tuning_mem_mb,
        runtime=lambda wc, input: int(10 + 0.5 * config["crf"]["tune"]["trials"] * len(input.images)),
        gpu=1,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/tune_crf.py"


rule crf:
    input:
        unpack(crf_inputs),
    output:
        probabilities="results/{dataset}/inference/{network}+crf/{subject}.nii.gz",
    log:
        "logs/{dataset}/crf/{network}/{subject}.log",
    benchmark:
        "benchmarks/{dataset}/crf/{network}/{subject}.tsv"
    params:
        parameters=crf_parameters,
        link=inference_link,
    threads: min(4, workflow.cores)
    resources:
        mem_mb=crf_mem_mb,
        runtime=image_runtime(5, 1),
        gpu=1,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/crf.py"
