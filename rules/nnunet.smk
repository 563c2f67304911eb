# Stage 3b: nnU-Net models (architecture: nnunet), planned, preprocessed and trained by the nnunetv2 package itself
# (lesionseg/nnunet). Each labelled subject that a model of the dataset trains or validates on becomes an nnU-Net case
# (results/{dataset}/nnunet/cases/), the cases are linked into nnU-Net's raw layout once per dataset, each model is
# planned and preprocessed by nnU-Net with its planner and the pipeline's folds (splits_final.json), then trained per
# fold into the same model files as the other networks (results/{dataset}/models/{model}/phase1/model.pt), so that
# inference, the CRF, ensembles, export-model and predict take it as they take any network. nnU-Net's own folders
# (nnUNet_raw, nnUNet_preprocessed, nnUNet_results) are set per job below results/{dataset}/nnunet/.


include: "nnunet_inputs.smk"


rule nnunet_case:
    input:
        image=f"{OUT}/image.nii.gz",
        mask=f"{OUT}/brain_mask.nii.gz",
        label=f"{OUT}/label.nii.gz",
    output:
        case=directory("results/{dataset}/nnunet/cases/{subject}"),
    log:
        "logs/{dataset}/nnunet_case/{subject}.log",
    params:
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(),
    threads: 1
    resources:
        mem_mb=image_mem_mb(1000, 30),
        runtime=image_runtime(5, 0.05),
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/nnunet_case.py"


rule nnunet_raw:
    input:
        cases=lambda wc: [f"results/{wc.dataset}/nnunet/cases/{s}" for s in nnunet_subjects(wc.dataset)],
    output:
        raw=directory("results/{dataset}/nnunet/raw"),
    log:
        "logs/{dataset}/nnunet_raw.log",
    params:
        subjects=lambda wc: nnunet_subjects(wc.dataset),
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(),
        modalities=lambda wc: DATASETS[wc.dataset].modalities,
    localrule: True  # links and a JSON file
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/nnunet_raw.py"


rule nnunet_plan:
    input:
        unpack(nnunet_plan_inputs),
    output:
        preprocessed=directory("results/{dataset}/nnunet/{model}/preprocessed"),
    log:
        "logs/{dataset}/nnunet_plan/{model}.log",
    benchmark:
        "benchmarks/{dataset}/nnunet_plan/{model}.tsv"
    wildcard_constraints:
        model=NNUNET_MODELS,
    params:
        parameters=lambda wc: MODELS[wc.model].parameters,
        splits=lambda wc: splits_final(nnunet_folds(wc.dataset)),
    threads: min(8, workflow.cores)
    resources:
        mem_mb=lambda wc, input: 8000 + 1000 * min(8, workflow.cores),  # 6.3 GB measured for 2 tiny cases
        runtime=lambda wc: 30 + len(nnunet_subjects(wc.dataset)) // 10,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/nnunet_plan.py"


rule nnunet_train:
    input:
        unpack(nnunet_train_inputs),
    output:
        model="results/{dataset}/models/{model}/phase1/model.pt",
        history="results/{dataset}/models/{model}/phase1/history.csv",
        curve="results/{dataset}/models/{model}/phase1/learning_curve.png",
    log:
        "logs/{dataset}/train_model/{model}/phase1.log",
    benchmark:
        "benchmarks/{dataset}/train_model/{model}/phase1.tsv"
    wildcard_constraints:
        model=f"(?:{NNUNET_MODELS})(?:/fold[0-9]+)?",
    params:
        model=lambda wc: model_name(wc.model),
        fold=nnunet_fold,
        results=lambda wc: f"results/{wc.dataset}/nnunet/{model_name(wc.model)}/results",  # checkpoints: resume
        parameters=lambda wc: MODELS[model_name(wc.model)].parameters,
        training=lambda wc: MODELS[model_name(wc.model)].training,
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(),
        modalities=lambda wc: DATASETS[wc.dataset].modalities,
        preprocessing=preprocessing_settings,
        fingerprint=preprocessing_fingerprint,
        train_subjects=lambda wc: training_subjects(wc.dataset, model_fold(wc.model)),
        val_subjects=lambda wc: validation_subjects(wc.dataset, model_fold(wc.model)),
    threads: min(8, workflow.cores)
    resources:
        mem_mb=lambda wc: 8000 + 1000 * min(8, workflow.cores),
        runtime=nnunet_training_runtime,
        gpu=1,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/nnunet_train.py"
