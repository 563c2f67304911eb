# Stage 7: per-dataset summaries (tables, CRF significance, boxplot) and per-subject overlays,
# all marked for `snakemake --report report.html`.


rule summarise_dataset:
    input:
        per_subject=lambda wc: [f"results/{wc.dataset}/evaluation/{m}/per_subject.csv"
                                for m in methods_of(wc.dataset)],
    output:
        csv="results/{dataset}/evaluation/summary.csv",
        markdown="results/{dataset}/evaluation/summary.md",
        html=report("results/{dataset}/evaluation/summary.html", caption="../report/summary.rst",
                    category="Evaluation", subcategory="{dataset}"),
        significance="results/{dataset}/evaluation/crf_significance.csv",
        boxplot=report("results/{dataset}/evaluation/dice_boxplot.png", caption="../report/boxplot.rst",
                       category="Evaluation", subcategory="{dataset}"),
    log:
        "logs/{dataset}/summarise_dataset.log",
    params:
        methods=lambda wc: methods_of(wc.dataset),
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(complete=True),
    localrule: True
    threads: 1
    resources:
        mem_mb=image_mem_mb(500, 5),
        runtime=image_runtime(5, 0.05),
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/summarise_dataset.py"


rule overlay:
    input:
        unpack(overlay_inputs),
    output:
        png=report("results/{dataset}/figures/overlays/{method}/{subject}.png", caption="../report/overlay.rst",
                   category="Segmentations", subcategory="{dataset}: {method}"),
    log:
        "logs/{dataset}/overlay/{method}/{subject}.log",
    params:
        modalities=lambda wc: DATASETS[wc.dataset].modalities,
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(complete=True),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=image_mem_mb(1000, 20),
        runtime=image_runtime(5, 0.05),
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/overlay.py"


rule runtimes:
    input:
        benchmark_files,
    output:
        csv="results/{dataset}/runtimes.csv",
        png=report("results/{dataset}/runtimes.png", caption="../report/runtimes.rst", category="Runtimes",
                   subcategory="{dataset}"),
    log:
        "logs/{dataset}/runtimes.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=image_mem_mb(300, 1),
        runtime=image_runtime(5, 0.05),
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/runtimes.py"
