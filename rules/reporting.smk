# Stage 7: per-dataset summaries (tables, CRF significance, figures), the per-subject page and overlays, and the
# run's overview, all marked for `snakemake --report report.html`.

from types import SimpleNamespace

from lesionseg.datasets.manifest import LABEL_COLUMN
from lesionseg.inference.methods import CRF_SUFFIX, split_method, split_postprocessing


# --- Overlays: each network family's segmentations of a subject ------------------------------------------------


def method_families(dataset):
    """The dataset's methods grouped by network (``deepmedic``: deepmedic, deepmedic+crf, deepmedic+pp, ...), in
    method order, for the networks that segment some subject: one overlay shows a family side by side."""
    families = {}
    for method in methods_of(dataset):
        if method_subjects(dataset, method):
            families.setdefault(split_method(method)[0], []).append(method)
    return families


def overlay_inputs(wildcards):
    """A subject's input images, the segmentation of every method of a network's family, and the truth if there
    is one."""
    methods = method_families(wildcards.dataset)[wildcards.network]
    inputs = {
        "images": images_on_reference_grid(wildcards),
        "segmentations": [f"results/{wildcards.dataset}/segmentations/{m}/{wildcards.subject}.nii.gz"
                          for m in methods],
    }
    truth = manifest_rows(wildcards.dataset)[wildcards.subject][LABEL_COLUMN]
    if truth:
        inputs["truth"] = truth
    return inputs


def overlay_files(dataset):
    """Subject -> its overlays (one per network family), subjects in manifest order."""
    files = {}
    for network, methods in method_families(dataset).items():
        for subject in method_subjects(dataset, methods[0]):
            files.setdefault(subject, []).append(f"results/{dataset}/figures/overlays/{network}/{subject}.png")
    order = {s: i for i, s in enumerate(manifest_subjects(dataset))}
    return dict(sorted(files.items(), key=lambda item: order[item[0]]))


# --- The run's overview: manifests, run times and the CRF parameters used --------------------------------------


def crf_uses(dataset):
    """Network -> (tuned parameters' file, or None, and the parameters used otherwise) of the dataset's networks
    that have a +crf method."""
    uses = {}
    for method in methods_of(dataset):
        network, crf = split_method(method)
        if crf and network not in uses:
            tuned = crf_tuned_on(dataset, network)
            wildcards = SimpleNamespace(dataset=dataset, network=network)
            uses[network] = ("results/{}/crf/{}/parameters.yaml".format(*tuned) if tuned else None,
                             crf_parameters(wildcards))
    return uses


def overview_inputs(wildcards):
    """Every dataset's manifest and run time, and the tuned CRF parameters of the networks that use some."""
    inputs = {"manifests": [f"results/{d}/subjects.tsv" for d in DATASETS],
              "run_times": [f"results/{d}/run_time.yaml" for d in DATASETS if evaluation_targets(d)]}
    inputs["crf"] = sorted({tuned for d in DATASETS for tuned, _ in crf_uses(d).values() if tuned})
    return inputs


# --- Run times: the benchmark files of every heavy job ---------------------------------------------------------


def probability_subjects(dataset, method):
    """Subjects whose probabilities of a method (a network, or one + crf) are needed: those it segments, and the
    validation subjects where its CRF is tuned or its post-processing chosen on them."""
    subjects = list(method_subjects(dataset, method))
    network, crf = split_method(method)
    needs_validation = method in chosen_here(dataset) or (not crf and crf_tuned_on(dataset, network) == (dataset,
                                                                                                           network))
    if needs_validation:
        subjects += [s for s in validation_subjects(dataset) if s not in subjects]
    return subjects


def benchmark_files(wildcards):
    """The benchmark files of every heavy job of a dataset (exactly the jobs its targets need)."""
    dataset = wildcards.dataset
    subjects = manifest_subjects(dataset)
    steps = ["skull_strip", "bias_correct", "resample_crop"]
    if DATASETS[dataset].preprocessing["coregister"]["enabled"]:
        steps.insert(0, "coregister")
    files = [f"benchmarks/{dataset}/{step}/{s}.tsv" for step in steps for s in subjects]
    files += [f"benchmarks/{dataset}/train_model/{model}/phase{p}.tsv" for m in dataset_models(dataset)
              for model in model_instances(dataset, m.name) for p in m.training["phases"]]
    networks = NETWORKS[dataset]
    inferred = {name: set(probability_subjects(dataset, name)) for name, net in networks.items()}
    for name, net in networks.items():  # an ensemble needs its members' probabilities of its subjects
        for member in net.members:
            inferred[member] |= inferred[name]
    if config["crf"]["enabled"]:
        files += [f"benchmarks/{dataset}/tune_crf/{n}.tsv" for n in networks
                  if crf_tuned_on(dataset, n) == (dataset, n)]
        files += [f"benchmarks/{dataset}/crf/{n}/{s}.tsv" for n in networks
                  for s in probability_subjects(dataset, n + CRF_SUFFIX)]
    files += [f"benchmarks/{dataset}/infer/{n}/{s}.tsv" for n, net in networks.items() if not net.is_ensemble
              for s in sorted(inferred[n])]
    exported = dict.fromkeys(split_postprocessing(m)[0] for m in methods_of(dataset))  # a +pp method's, its base's
    files += [f"benchmarks/{dataset}/export_results/{m}/{s}.tsv" for m in exported for s in method_subjects(dataset, m)]
    return files


# --- The workflow's final targets (`rule all`, in the Snakefile): every stage's, of each dataset ---------------


def all_targets(wildcards):
    targets = []
    for name, dataset in DATASETS.items():
        targets += [f"results/{name}/subjects.tsv", f"results/{name}/invalid_subjects.tsv"]
        if dataset.is_synthetic:
            targets += [f"results/{name}/qc/synthetic/{s}.png" for s in dataset.synthetic_subjects()]
        targets += preprocessing_targets(name)
        targets += training_targets(name)
        targets += segmentation_targets(name)
        targets += evaluation_targets(name)
        targets += postprocessing_targets(name)
    targets += ["results/overview.html", "results/configuration.html"]
    return targets


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
    localrule: True
    threads: 1
    resources:
        mem_mb=image_mem_mb(500, 5),
        runtime=image_runtime(5, 0.05),
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/summarise_dataset.py"


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
        overlays=lambda wc: overlay_files(wc.dataset),
        scheme=lambda wc: DATASETS[wc.dataset].scheme.describe(complete=True),
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
        png=report("results/{dataset}/figures/overlays/{network}/{subject}.png", caption="../report/overlay.rst",
                   category="Segmentations", subcategory="{dataset}",
                   labels={"Subject": "{subject}", "Network": "{network}"}),
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
    log:
        "logs/overview.log",
    params:
        datasets=lambda wc: {d: {"scheme": DATASETS[d].scheme.name, "modalities": list(DATASETS[d].modalities),
                                 "methods": methods_of(d)} for d in DATASETS},
        crf=lambda wc: {d: {network: {"tuned": tuned, "parameters": parameters}
                            for network, (tuned, parameters) in crf_uses(d).items()} for d in DATASETS},
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
