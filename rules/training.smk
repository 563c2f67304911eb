# Stage 3: training samples per subject, then one training job per (dataset, model, phase), and per fold with
# k-fold cross-validation ({model} is then deepmedic/fold0, ...); the learning curves of every phase together.


include: "training_inputs.smk"


rule sample_subject:
    input:
        label="results/{dataset}/preprocessed/{subject}/label.nii.gz",
        mask="results/{dataset}/preprocessed/{subject}/brain_mask.nii.gz",
    output:
        samples="results/{dataset}/samples/{subject}.npz",
    log:
        "logs/{dataset}/sample_subject/{subject}.log",
    params:
        plan=dataset_sampling_plan,
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(),
        seed=lambda wc: config["datasets"][wc.dataset]["split"].get("seed", 0),
    threads: 1
    resources:
        mem_mb=image_mem_mb(500, 20),
        runtime=image_runtime(5, 0.05),
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/sample_subject.py"


rule train_model:
    input:
        unpack(training_inputs),
    output:
        model="results/{dataset}/models/{model}/phase{phase}/model.pt",
        history="results/{dataset}/models/{model}/phase{phase}/history.csv",
        curve="results/{dataset}/models/{model}/phase{phase}/learning_curve.png",  # this phase alone
    log:
        "logs/{dataset}/train_model/{model}/phase{phase}.log",
    benchmark:
        "benchmarks/{dataset}/train_model/{model}/phase{phase}.tsv"
    wildcard_constraints:
        model=f"(?:{PIPELINE_MODELS})(?:/fold[0-9]+)?",
    params:
        checkpoint=lambda wc: f"results/{wc.dataset}/models/{wc.model}/phase{wc.phase}/checkpoint.pt",
        spec=lambda wc: asdict(MODELS[model_name(wc.model)]),
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(),
        modalities=lambda wc: DATASETS[wc.dataset].modalities,
        preprocessing=preprocessing_settings,
        fingerprint=preprocessing_fingerprint,
        train_subjects=lambda wc: training_subjects(wc.dataset, model_fold(wc.model)),
        val_subjects=lambda wc: validation_subjects(wc.dataset, model_fold(wc.model)),
    threads: min(8, workflow.cores)
    resources:
        mem_mb=training_mem_mb,
        runtime=training_runtime,
        gpu=1,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/train_model.py"


rule learning_curves:
    input:
        histories=lambda wc: [f"{model_dir(wc.dataset, wc.model, p)}/history.csv"
                              for p in MODELS[model_name(wc.model)].training["phases"]],
    output:
        png=report(
            "results/{dataset}/models/{model}/learning_curves.png",
            caption="../report/learning_curve.rst",
            category="Training",
            subcategory="{dataset}",
            labels={"Model": "{model}"},
        ),
    log:
        "logs/{dataset}/learning_curves/{model}.log",
    params:
        phases=lambda wc: MODELS[model_name(wc.model)].training["phases"],
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(complete=True),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/learning_curves.py"
