# Stage 2: preprocessing, one rule per step and subject: co-registration (optional),
# skull-stripping, N4 bias correction, resampling and cropping, normalisation, QC.
# Intermediate files go to results/{dataset}/preprocessing/{subject}/, the final
# ones to results/{dataset}/preprocessed/{subject}/. Co-registration, skull-stripping
# and N4 compute in canonical (RAS+) axis order and write in the files' storage order
# (the brain mask stays on the original grid); resample_crop writes the canonical grid.


include: "preprocessing_inputs.smk"


rule coregister:
    input:
        images=raw_images,
    output:
        stack=f"{PRE}/coregistered.nii.gz",
        record=f"{PRE}/coregister.json",
    log:
        "logs/{dataset}/coregister/{subject}.log",
    benchmark:
        "benchmarks/{dataset}/coregister/{subject}.tsv"
    params:
        modalities=lambda wc: DATASETS[wc.dataset].modalities,
        reference=lambda wc: preprocessing_settings(wc)["reference"],
        settings=lambda wc: preprocessing_settings(wc)["coregister"],
        seed=lambda wc: preprocessing_settings(wc)["seed"],
    threads: 1  # ITK registration is reproducible on one thread only
    resources:
        mem_mb=image_mem_mb(1500, 60),
        runtime=image_runtime(10, 0.5),
    conda:
        "../envs/preprocessing.yaml"
    script:
        "../scripts/coregister.py"


rule synthetic_head_template:
    output:
        head="results/{dataset}/preprocessing/template/head.nii.gz",
        mask="results/{dataset}/preprocessing/template/brain_mask.nii.gz",
    log:
        "logs/{dataset}/synthetic_head_template.log",
    params:
        modality=lambda wc: DATASETS[wc.dataset].preprocessing["reference"],
        spacing_mm=lambda wc: max(1.0, DATASETS[wc.dataset].preprocessing["resample"]["spacing_mm"]),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=lambda wc: 500 + int(2500 / max(1.0, DATASETS[wc.dataset].preprocessing["resample"]["spacing_mm"]) ** 3),
        runtime=10,
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/synthetic_head_template.py"


rule skull_strip:
    input:
        unpack(skull_strip_inputs),
    output:
        mask="results/{dataset}/brain_masks/{subject}.nii.gz",
        record=f"{PRE}/skull_strip.json",
    log:
        "logs/{dataset}/skull_strip/{subject}.log",
    benchmark:
        "benchmarks/{dataset}/skull_strip/{subject}.tsv"
    params:
        modalities=lambda wc: DATASETS[wc.dataset].modalities,
        reference=lambda wc: preprocessing_settings(wc)["reference"],
        settings=lambda wc: preprocessing_settings(wc)["skull_strip"],
        seed=lambda wc: preprocessing_settings(wc)["seed"],
    threads: 1  # ITK registration is reproducible on one thread only
    resources:
        mem_mb=image_mem_mb(2000, 80),
        runtime=image_runtime(10, 0.5),
    conda:
        "../envs/preprocessing.yaml"
    script:
        "../scripts/skull_strip.py"


rule bias_correct:
    input:
        images=images_on_reference_grid,
        mask="results/{dataset}/brain_masks/{subject}.nii.gz",
    output:
        stack=f"{PRE}/bias_corrected.nii.gz",
        record=f"{PRE}/bias_correction.json",
    log:
        "logs/{dataset}/bias_correct/{subject}.log",
    benchmark:
        "benchmarks/{dataset}/bias_correct/{subject}.tsv"
    params:
        modalities=lambda wc: DATASETS[wc.dataset].modalities,
        settings=lambda wc: preprocessing_settings(wc)["bias_correction"],
    threads: 2
    resources:
        mem_mb=image_mem_mb(1500, 60),
        runtime=image_runtime(10, 0.5),
    conda:
        "../envs/preprocessing.yaml"
    script:
        "../scripts/bias_correct.py"


rule resample_crop:
    input:
        stack=f"{PRE}/bias_corrected.nii.gz",
        mask="results/{dataset}/brain_masks/{subject}.nii.gz",
    output:
        stack=f"{PRE}/resampled.nii.gz",
        mask=f"{OUT}/brain_mask.nii.gz",
        geometry=f"{OUT}/geometry.json",
        record=f"{PRE}/resample.json",
    log:
        "logs/{dataset}/resample_crop/{subject}.log",
    benchmark:
        "benchmarks/{dataset}/resample_crop/{subject}.tsv"
    params:
        settings=lambda wc: preprocessing_settings(wc)["resample"],
    threads: 1
    resources:
        mem_mb=image_mem_mb(1000, 40),
        runtime=image_runtime(5, 0.2),
    conda:
        "../envs/preprocessing.yaml"
    script:
        "../scripts/resample_crop.py"


rule normalise:
    input:
        stack=f"{PRE}/resampled.nii.gz",
        mask=f"{OUT}/brain_mask.nii.gz",
        records=preprocessing_records,
        raw=raw_images,
    output:
        image=f"{OUT}/image.nii.gz",
        provenance=f"{OUT}/provenance.json",
    log:
        "logs/{dataset}/normalise/{subject}.log",
    params:
        modalities=lambda wc: DATASETS[wc.dataset].modalities,
        settings=lambda wc: preprocessing_settings(wc)["normalisation"],
        fingerprint=lambda wc: preprocessing_fingerprint(wc),
    threads: 1
    resources:
        mem_mb=image_mem_mb(1000, 40),
        runtime=image_runtime(5, 0.2),
    conda:
        "../envs/preprocessing.yaml"
    script:
        "../scripts/normalise.py"


rule preprocess_label:
    input:
        label=raw_label,
        geometry=f"{OUT}/geometry.json",
    output:
        label=f"{OUT}/label.nii.gz",
    log:
        "logs/{dataset}/preprocess_label/{subject}.log",
    threads: 1
    resources:
        mem_mb=image_mem_mb(1000, 40),
        runtime=image_runtime(5, 0.05),
    conda:
        "../envs/preprocessing.yaml"
    script:
        "../scripts/preprocess_label.py"


rule preprocessing_qc:
    input:
        raw=images_on_reference_grid,
        raw_mask="results/{dataset}/brain_masks/{subject}.nii.gz",
        image=f"{OUT}/image.nii.gz",
        mask=f"{OUT}/brain_mask.nii.gz",
        geometry=f"{OUT}/geometry.json",
    output:
        png="results/{dataset}/qc/preprocessing/{subject}.png",  # in the report through results/preprocessing_qc.html
        statistics="results/{dataset}/qc/preprocessing/{subject}.json",  # intensities, for the quality control
    log:
        "logs/{dataset}/preprocessing_qc/{subject}.log",
    params:
        modalities=lambda wc: DATASETS[wc.dataset].modalities,
    threads: 1
    resources:
        mem_mb=image_mem_mb(1000, 40),
        runtime=image_runtime(5, 0.05),
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/preprocessing_qc.py"
