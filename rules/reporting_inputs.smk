# Input functions and helpers of the rules in rules/reporting.smk, which includes this file first (Snakemake's
# lint wants functions and rules in separate files).

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
    """A subject's input images, the segmentation of every method of a network's family, the probabilities of
    the first (the network, for its uncertainty), and the truth if there is one."""
    methods = method_families(wildcards.dataset)[wildcards.network]
    inputs = {
        "images": images_on_reference_grid(wildcards),
        "segmentations": [f"results/{wildcards.dataset}/segmentations/{m}/{wildcards.subject}.nii.gz"
                          for m in methods],
        "probabilities": f"results/{wildcards.dataset}/probabilities/{methods[0]}/{wildcards.subject}.nii.gz",
    }
    truth = manifest_rows(wildcards.dataset)[wildcards.subject][LABEL_COLUMN]
    if truth:
        inputs["truth"] = truth
    return inputs


def overlays_by_network(dataset):
    """Subject -> network family -> its overlay, subjects in manifest order (all drawn; the per-subject page
    embeds those of a small cohort, or a bounded set of a large one)."""
    files = {}
    for network, methods in method_families(dataset).items():
        for subject in method_subjects(dataset, methods[0]):
            files.setdefault(subject, {})[network] = f"results/{dataset}/figures/overlays/{network}/{subject}.png"
    order = {s: i for i, s in enumerate(manifest_subjects(dataset))}
    return dict(sorted(files.items(), key=lambda item: order[item[0]]))


def overlay_files(dataset):
    """Subject -> its overlays (one per network family), subjects in manifest order."""
    return {subject: list(paths.values()) for subject, paths in overlays_by_network(dataset).items()}


# --- The run's overview: manifests, run times, the CRF parameters used and the preprocessing QC ----------------


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
    """Every dataset's manifest and run time, the tuned CRF parameters of the networks that use some, and every
    subject's QC picture and preprocessing grid (dataset by dataset, in the order of qc_subjects)."""
    inputs = {"manifests": [f"results/{d}/subjects.tsv" for d in DATASETS],
              "run_times": [f"results/{d}/run_time.yaml" for d in DATASETS if evaluation_targets(d)]}
    inputs["crf"] = sorted({tuned for d in DATASETS for tuned, _ in crf_uses(d).values() if tuned})
    subjects = qc_subjects()
    inputs["qc"] = [f"results/{d}/qc/preprocessing/{s}.png" for d, names in subjects.items() for s in names]
    inputs["grids"] = [f"results/{d}/preprocessed/{s}/geometry.json" for d, names in subjects.items() for s in names]
    return inputs


def qc_subjects():
    """Dataset -> its subjects with a QC picture (every subject of its manifest, in order)."""
    return {d: manifest_subjects(d) for d in DATASETS}


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
    """The benchmark files of every heavy job of a dataset and of its calibrations (exactly the jobs its targets
    need)."""
    dataset = wildcards.dataset
    subjects = manifest_subjects(dataset)
    steps = ["skull_strip", "bias_correct", "resample_crop"]
    if DATASETS[dataset].preprocessing["coregister"]["enabled"]:
        steps.insert(0, "coregister")
    files = [f"benchmarks/{dataset}/{step}/{s}.tsv" for step in steps for s in subjects]
    files += [f"benchmarks/{dataset}/train_model/{model}/phase{p}.tsv" for m in dataset_models(dataset)
              for model in model_instances(dataset, m.name) for p in m.training["phases"]]
    files += [f"benchmarks/{dataset}/nnunet_plan/{m.name}.tsv" for m in dataset_models(dataset) if m.is_nnunet]
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
    files += [f"benchmarks/{dataset}/calibrate/{m}.tsv" for m in calibrated_methods(dataset)]
    return files


# --- The final targets of the Snakefile's target rule: every stage's, of each dataset --------------------------


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
        targets += quality_targets(name)
        targets += postprocessing_targets(name)
    targets += ["results/overview.html", "results/configuration.html"]
    return targets
