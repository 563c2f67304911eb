# Stage 5b: post-processing chosen on the validation split (as nnU-Net does), per dataset and method: per
# region, keep the largest connected component or remove components below a size, where that raises the
# validation Dice; methods '<method>+pp' are the method's segmentations with that choice applied.


include: "postprocessing_inputs.smk"


rule choose_postprocessing:
    input:
        unpack(postprocessing_choice_inputs),
    output:
        choice="results/{dataset}/postprocessing/{method}.yaml",
    log:
        "logs/{dataset}/choose_postprocessing/{method}.log",
    wildcard_constraints:
        method=PROBABILITY_METHOD,
    params:
        subjects=lambda wc: validation_subjects(wc.dataset),
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(),
        min_component_mm3=config["inference"]["min_component_mm3"],  # the export's, so the choice starts from it
        candidates_mm3=config["postprocessing"]["min_component_mm3"],
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        # One subject's probabilities at a time; the others are kept as class maps cropped to the lesions.
        mem_mb=lambda wc, input: int(1000 + 30 * input_mb(input) / len(input.probabilities)),
        runtime=image_runtime(5, 0.02),
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/choose_postprocessing.py"


rule postprocess_segmentation:
    input:
        segmentation="results/{dataset}/segmentations/{method}/{subject}.nii.gz",
        choice=postprocessing_choice,
    output:
        segmentation="results/{dataset}/segmentations/{method}+pp/{subject}.nii.gz",
    log:
        "logs/{dataset}/postprocess_segmentation/{method}/{subject}.log",
    wildcard_constraints:
        method=PROBABILITY_METHOD,
    params:
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=image_mem_mb(500, 20),
        runtime=image_runtime(5, 0.05),
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/postprocess_segmentation.py"


rule summarise_postprocessing:
    input:
        choices=lambda wc: [f"results/{wc.dataset}/postprocessing/{m}.yaml" for m in chosen_here(wc.dataset)],
    output:
        csv="results/{dataset}/postprocessing/summary.csv",
        html=report("results/{dataset}/postprocessing/summary.html", caption="../report/postprocessing.rst",
                    category="Evaluation", subcategory="{dataset}",
                    labels={"Dataset": "{dataset}", "Item": "post-processing chosen"}),
    log:
        "logs/{dataset}/summarise_postprocessing.log",
    params:
        methods=lambda wc: chosen_here(wc.dataset),
    localrule: True
    threads: 1
    resources:
        mem_mb=300,
        runtime=5,
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/summarise_postprocessing.py"
