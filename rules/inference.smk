# Stage 4: dense inference per (dataset, model, subject), ensembles, and the results on the original grid.
# Probability maps between rules stay on the preprocessing grid (results/{dataset}/inference/);
# export_results puts every method's final maps and segmentations on the subject's original grid.


include: "inference_inputs.smk"


rule infer:
    input:
        models=model_files,
        image=f"{OUT}/image.nii.gz",
        mask=f"{OUT}/brain_mask.nii.gz",
    output:
        probabilities="results/{dataset}/inference/{network}/{subject}.nii.gz",
        mutual_information="results/{dataset}/inference_mutual_information/{network}/{subject}.nii.gz",
    log:
        "logs/{dataset}/infer/{network}/{subject}.log",
    benchmark:
        "benchmarks/{dataset}/infer/{network}/{subject}.tsv"
    wildcard_constraints:
        network=INFERRED,  # a model (or the k models of its folds) given by model files
    params:
        link=inference_link,
        settings=inference_settings,
    threads: min(8, workflow.cores)
    resources:
        mem_mb=inference_mem_mb,
        runtime=lambda wc, input: int(10 + len(input.models) * input_mb(input)),
        gpu=1,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/infer.py"


rule ensemble:
    input:
        members=ensemble_members,
        member_mutual_information=ensemble_member_mutual_information,
    output:
        probabilities="results/{dataset}/inference/{network}/{subject}.nii.gz",
        mutual_information="results/{dataset}/inference_mutual_information/{network}/{subject}.nii.gz",
    log:
        "logs/{dataset}/ensemble/{network}/{subject}.log",
    wildcard_constraints:
        network=AVERAGED,  # an ensemble: the mean of its member networks' probabilities
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=image_mem_mb(1000, 30),
        runtime=image_runtime(5, 0.05),
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/ensemble.py"


rule export_results:
    input:
        probabilities="results/{dataset}/inference/{method}/{subject}.nii.gz",
        mutual_information=network_mutual_information,  # after the CRF too: the network's predictions' disagreement
        geometry=f"{OUT}/geometry.json",
    output:
        probabilities="results/{dataset}/probabilities/{method}/{subject}.nii.gz",
        segmentation="results/{dataset}/segmentations/{method}/{subject}.nii.gz",
        entropy="results/{dataset}/entropy/{method}/{subject}.nii.gz",
        mutual_information="results/{dataset}/mutual_information/{method}/{subject}.nii.gz",
    log:
        "logs/{dataset}/export_results/{method}/{subject}.log",
    benchmark:
        "benchmarks/{dataset}/export_results/{method}/{subject}.tsv"
    wildcard_constraints:
        method=PROBABILITY_METHOD,  # a post-processed method's segmentation comes from rule postprocess_segmentation
    params:
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(),
        min_component_mm3=config["inference"]["min_component_mm3"],
        probabilities_dtype=config["inference"]["probabilities_dtype"],
    threads: 1
    resources:
        mem_mb=image_mem_mb(1500, 40),
        runtime=image_runtime(5, 0.05),
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/export_results.py"
