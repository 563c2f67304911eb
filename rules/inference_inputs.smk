# Input functions and helpers of the rules in rules/inference.smk, which includes this file first (Snakemake's
# lint wants functions and rules in separate files).

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
    """The keys of `inference:` that dense inference uses, and an nnU-Net model's own `inference:` (mirroring,
    tile step) for its networks only (so that editing it re-runs nothing else)."""
    keys = ("segment_size", "batch_size", "precision", "memory_budget_mb", "mirror_axes")
    settings = {key: config["inference"][key] for key in keys}
    model = network_of(wildcards).model
    if model in MODELS and MODELS[model].is_nnunet:
        settings["nnunet"] = MODELS[model].inference
    elif model in PRETRAINED and "inference" in config["models"][model]:  # an imported file, nnU-Net's or not
        settings["nnunet"] = config["models"][model]["inference"]
    return settings


def inference_mem_mb(wildcards, input):
    """What dense inference holds: the image, its probability maps and one batch (inference: memory_budget_mb)."""
    dataset = DATASETS[wildcards.dataset]
    return estimates.inference_mem_mb(estimates.float32_mb(input.image), len(dataset.modalities),
                                      dataset.scheme.n_classes, len(input.models),
                                      config["inference"]["memory_budget_mb"])


def ensemble_members(wildcards):
    return [f"results/{wildcards.dataset}/inference/{m}/{wildcards.subject}.nii.gz"
            for m in network_of(wildcards).members]


def ensemble_member_mutual_information(wildcards):
    return [f"results/{wildcards.dataset}/inference_mutual_information/{m}/{wildcards.subject}.nii.gz"
            for m in network_of(wildcards).members]


def network_mutual_information(wildcards):
    """The disagreement of the predictions averaged by a method's network (the CRF keeps its network's)."""
    network = split_method(wildcards.method)[0]
    return f"results/{wildcards.dataset}/inference_mutual_information/{network}/{wildcards.subject}.nii.gz"


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
    """Segmentations of every method for each subject it segments, on the original grid, and the probability and
    uncertainty maps of the methods that have them (the post-processing changes only the segmentation)."""
    targets = []
    for method in methods_of(dataset):
        for subject in method_subjects(dataset, method):
            targets.append(f"results/{dataset}/segmentations/{method}/{subject}.nii.gz")
            if not split_postprocessing(method)[1]:
                targets += [f"results/{dataset}/{kind}/{method}/{subject}.nii.gz"
                            for kind in ("probabilities", "entropy", "mutual_information")]
    return targets
