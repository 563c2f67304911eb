# Stage 4: dense inference per (dataset, model, subject), ensembles, and the results on the original grid.
# Probability maps between rules stay on the preprocessing grid (results/{dataset}/inference/);
# export_results puts every method's final maps and segmentations on the subject's original grid.

from lesionseg import resources as estimates
from lesionseg.datasets.splits import fold_of
from lesionseg.inference.export import model_files_of
from lesionseg.inference.methods import dataset_methods, split_method, split_postprocessing


# --- Networks: which model files give a dataset's probabilities, and how they fit its data ---------------------


def network_of(wildcards):
    return NETWORKS[wildcards.dataset][wildcards.network]


def out_of_fold_twin(name):
    """A dataset's own ``{network}@folds`` -> ``{network}``, whose out-of-fold results tune it; others unchanged."""
    return name.removesuffix("@folds")


def model_files(wildcards):
    """The model files whose average gives a network's probabilities of a subject: the network's own, the
    fold model that never saw the subject (out-of-fold), or the k fold models (``@folds``, other datasets)."""
    network = network_of(wildcards)
    fold = None
    if network.trained_on == wildcards.dataset and folds_of(wildcards.dataset) and not network.folds:
        fold = fold_of(manifest_rows(wildcards.dataset)[wildcards.subject]["split"])
        if fold is None:
            raise ValueError(f"dataset {wildcards.dataset!r}: subject {wildcards.subject} is in no fold; "
                             f"{network.name}@folds segments it")
    return [str(p) for p in model_files_of(config, wildcards.dataset, wildcards.network, fold=fold)]


def inference_link(wildcards):
    """How the network's inputs and outputs fit the dataset: the fingerprint its data must have, its channels
    among the dataset's and its classes among the dataset's (None: the same)."""
    link = APPLIED.get((wildcards.dataset, wildcards.network))
    n_classes = DATASETS[wildcards.dataset].scheme.n_classes
    if link is None:
        return {"fingerprint": preprocessing_fingerprint(wildcards), "channels": None, "classes": None,
                "n_classes": n_classes}
    return {"fingerprint": link.fingerprint, "channels": link.channels, "classes": link.classes,
            "n_classes": n_classes}


def inference_settings(wildcards):
    """The keys of `inference:` that dense inference uses."""
    keys = ("segment_size", "batch_size", "precision", "memory_budget_mb")
    return {key: config["inference"][key] for key in keys}


def inference_mem_mb(wildcards, input):
    """What dense inference holds: the image, its probability maps and one batch (inference: memory_budget_mb)."""
    dataset = DATASETS[wildcards.dataset]
    return estimates.inference_mem_mb(estimates.float32_mb(input.image), len(dataset.modalities),
                                      dataset.scheme.n_classes, len(input.models),
                                      config["inference"]["memory_budget_mb"])


def ensemble_members(wildcards):
    return [f"results/{wildcards.dataset}/inference/{m}/{wildcards.subject}.nii.gz"
            for m in network_of(wildcards).members]


# --- Methods: the dataset's networks, + crf, + pp, and the subjects each segments ------------------------------


def methods_of(dataset):
    """The dataset's methods; those with post-processing only if it has labelled validation subjects to choose it."""
    return dataset_methods(config, dataset, postprocessing=bool(validation_subjects(dataset)))


def method_subjects(dataset, method):
    """The subjects a method segments (and is scored on): the test split; with folds, every labelled subject of
    the folds for the dataset's own networks (out-of-fold), the rest for ``@folds``, and every subject for
    networks trained elsewhere (they saw none)."""
    network = NETWORKS[dataset][split_method(method)[0]]
    if not folds_of(dataset):
        return test_subjects(dataset)
    if network.trained_on == dataset:
        return test_subjects(dataset) if network.folds else out_of_fold_subjects(dataset)
    return manifest_subjects(dataset)


# --- Targets: every method's segmentations and probabilities on the original grid ------------------------------


def segmentation_targets(dataset):
    """Segmentations of every method for each subject it segments, on the original grid, and the probability maps
    of the methods that have one (the post-processing changes only the segmentation)."""
    targets = []
    for method in methods_of(dataset):
        for subject in method_subjects(dataset, method):
            targets.append(f"results/{dataset}/segmentations/{method}/{subject}.nii.gz")
            if not split_postprocessing(method)[1]:
                targets.append(f"results/{dataset}/probabilities/{method}/{subject}.nii.gz")
    return targets


rule infer:
    input:
        models=model_files,
        image=f"{OUT}/image.nii.gz",
        mask=f"{OUT}/brain_mask.nii.gz",
    output:
        probabilities="results/{dataset}/inference/{network}/{subject}.nii.gz",
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
        runtime=lambda wc, input: int(10 + len(input.models) * input.size_mb),
        gpu=1,
    conda:
        "../envs/training.yaml"
    script:
        "../scripts/infer.py"


rule ensemble:
    input:
        members=ensemble_members,
    output:
        probabilities="results/{dataset}/inference/{network}/{subject}.nii.gz",
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
        geometry=f"{OUT}/geometry.json",
    output:
        probabilities="results/{dataset}/probabilities/{method}/{subject}.nii.gz",
        segmentation="results/{dataset}/segmentations/{method}/{subject}.nii.gz",
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
