# Stage 7: per-dataset summaries (tables, CRF significance, calibration, figures), the per-subject page and overlays,
# and the run's overview and preprocessing QC pages, marked for `snakemake --report report.html`. The per-subject
# pictures (overlays, QC pictures) are no report items of their own: the pages embed them small, every subject's in a
# small cohort and a bounded set in a large one (config `report:`), so that the report's size does not grow with the
# cohort's.


include: "reporting_inputs.smk"


rule summarise_dataset:
    input:
        per_subject=lambda wc: [f"results/{wc.dataset}/evaluation/{m}/per_subject.csv"
                                for m in methods_of(wc.dataset)],
    output:
        csv="results/{dataset}/evaluation/summary.csv",
        markdown="results/{dataset}/evaluation/summary.md",
        html=report("results/{dataset}/evaluation/summary.html", caption="../report/summary.rst",
                    category="Evaluation", subcategory="{dataset}", labels={"Dataset": "{dataset}", "Item": "summary"}),
        significance="results/{dataset}/evaluation/crf_significance.csv",
        comparison="results/{dataset}/evaluation/method_comparison.csv",
        boxplot=report("results/{dataset}/evaluation/dice_boxplot.png", caption="../report/boxplot.rst",
                       category="Evaluation", subcategory="{dataset}",
                       labels={"Dataset": "{dataset}", "Item": "Dice per region"}),
        crf_effect=report("results/{dataset}/evaluation/crf_effect.png", caption="../report/crf_effect.rst",
                          category="Evaluation", subcategory="{dataset}",
                          labels={"Dataset": "{dataset}", "Item": "effect of the CRF"}),
    log:
        "logs/{dataset}/summarise_dataset.log",
    params:
        methods=lambda wc: methods_of(wc.dataset),
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(complete=True),
        ensembles=lambda wc: {n: list(net.members) for n, net in NETWORKS[wc.dataset].items() if net.is_ensemble},
    localrule: True
    threads: 1
    resources:
        mem_mb=image_mem_mb(500, 5),
        runtime=image_runtime(5, 0.05),
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/summarise_dataset.py"


rule summarise_calibration:
    input:
        bins=lambda wc: [f"results/{wc.dataset}/evaluation/{m}/calibration.csv"
                         for m in calibrated_methods(wc.dataset)],
        summaries=lambda wc: [f"results/{wc.dataset}/evaluation/{m}/calibration_summary.csv"
                              for m in calibrated_methods(wc.dataset)],
    output:
        csv="results/{dataset}/evaluation/calibration_summary.csv",
        png=report("results/{dataset}/evaluation/reliability_diagram.png", caption="../report/calibration.rst",
                   category="Evaluation", subcategory="{dataset}",
                   labels={"Dataset": "{dataset}", "Item": "calibration"}),
    log:
        "logs/{dataset}/summarise_calibration.log",
    params:
        methods=lambda wc: calibrated_methods(wc.dataset),
        regions=lambda wc: list(DATASETS[wc.dataset].scheme.regions),
    localrule: True
    threads: 1
    resources:
        mem_mb=500,  # small tables, whatever the number of subjects
        runtime=5,
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/summarise_calibration.py"


rule subject_table:
    input:
        per_subject=lambda wc: [f"results/{wc.dataset}/evaluation/{m}/per_subject.csv"
                                for m in methods_of(wc.dataset)],
        manifest="results/{dataset}/subjects.tsv",
        overlays=lambda wc: [path for paths in overlay_files(wc.dataset).values() for path in paths],
    output:
        html=report("results/{dataset}/evaluation/per_subject.html", caption="../report/per_subject.rst",
                    category="Evaluation", subcategory="{dataset}",
                    labels={"Dataset": "{dataset}", "Item": "every subject"}),
    log:
        "logs/{dataset}/subject_table.log",
    params:
        methods=lambda wc: methods_of(wc.dataset),
        overlays=lambda wc: overlays_by_network(wc.dataset),
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(complete=True),
        report=config["report"],
    localrule: True
    threads: 1
    resources:
        mem_mb=image_mem_mb(500, 5),
        runtime=image_runtime(5, 0.05),
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/subject_table.py"


rule overlay:
    input:
        unpack(overlay_inputs),
    output:
        png="results/{dataset}/figures/overlays/{network}/{subject}.png",  # in the report through per_subject.html
    log:
        "logs/{dataset}/overlay/{network}/{subject}.log",
    params:
        methods=lambda wc: method_families(wc.dataset)[wc.network],
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


rule overview:
    input:
        unpack(overview_inputs),
    output:
        overview=report("results/overview.html", caption="../report/overview.rst", category="Overview",
                        subcategory="This run", labels={"Item": "overview"}),
        configuration=report("results/configuration.html", caption="../report/configuration.rst",
                             category="Overview", subcategory="This run", labels={"Item": "configuration"}),
        qc=report("results/preprocessing_qc.html", caption="../report/preprocessing_qc.rst",
                  category="Quality control", subcategory="Preprocessing", labels={"Item": "every dataset"}),
    log:
        "logs/overview.log",
    params:
        datasets=lambda wc: {d: {"scheme": DATASETS[d].scheme.name, "modalities": list(DATASETS[d].modalities),
                                 "methods": methods_of(d)} for d in DATASETS},
        crf=lambda wc: {d: {network: {"tuned": tuned, "parameters": parameters}
                            for network, (tuned, parameters) in crf_uses(d).items()} for d in DATASETS},
        qc_subjects=lambda wc: qc_subjects(),
        config=config,
    localrule: True
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/overview.py"


rule runtimes:
    input:
        benchmark_files,
    output:
        csv="results/{dataset}/runtimes.csv",
        run="results/{dataset}/run_time.yaml",
        png=report("results/{dataset}/runtimes.png", caption="../report/runtimes.rst", category="Runtimes",
                   subcategory="{dataset}"),
    log:
        "logs/{dataset}/runtimes.log",
    params:
        # Named in the figure: their time is in no benchmark file.
        unmeasured=lambda wc: sorted(r.name for r in workflow.rules
                                     if not r.benchmark and r.name not in ("all", "runtimes")),
    localrule: True
    threads: 1
    resources:
        mem_mb=500,  # small tables, whatever the number of jobs
        runtime=5,
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/runtimes.py"
