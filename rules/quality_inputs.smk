# Input functions and helpers of the rules in rules/quality.smk, which includes this file first (Snakemake's
# lint wants functions and rules in separate files).

from lesionseg.inference.methods import APPLIED_SEPARATOR, CRF_SUFFIX, split_method, split_postprocessing


# --- Which methods are checked, and against which quality model ------------------------------------------------


def checked_methods(dataset):
    """The dataset's methods with probabilities (the post-processing changes only the segmentation) that segment
    some subject."""
    return [m for m in methods_of(dataset) if not split_postprocessing(m)[1] and method_subjects(dataset, m)]


def fitted_here(dataset, method):
    """Whether a method's quality model is fitted on this dataset: its network was trained here."""
    return NETWORKS[dataset][split_method(method)[0]].trained_on == dataset


def quality_model_file(wildcards):
    """The quality model a method is scored with: fitted on this dataset's validation subjects for a network
    trained here (an ``@folds`` network takes its out-of-fold twin's), on the training dataset's for a network
    trained on another, and an unfitted one (no reference) for an imported model file."""
    network_name, crf = split_method(wildcards.method)
    network = NETWORKS[wildcards.dataset][network_name]
    dataset, name = wildcards.dataset, out_of_fold_twin(network_name)
    if network.trained_on not in (None, wildcards.dataset):
        dataset, name = network.trained_on, network_name.split(APPLIED_SEPARATOR)[0]
    return f"results/{dataset}/quality/{name}{CRF_SUFFIX if crf else ''}.yaml"


def quality_mem_mb(wildcards, input):
    """One subject's probabilities (and its network's) at a time, beside the small per-subject results."""
    subjects = max(1, len(getattr(input, "probabilities", [])))
    return int(1000 + 30 * input_mb(input) / subjects)


def reference_training_subjects(dataset):
    """The subjects whose truth and images give a quality model its training ranges: the train split, or every
    labelled subject of the folds."""
    return out_of_fold_subjects(dataset) if folds_of(dataset) else training_subjects(dataset)


def quality_model_inputs(wildcards):
    """A method's probabilities (preprocessing grid), its network's disagreement and the truth of the labelled
    validation subjects, and the truth and image statistics of the training subjects; none for a network not
    trained here (its model is then unfitted and only read for an imported model file)."""
    dataset = wildcards.dataset
    if not fitted_here(dataset, wildcards.method):
        return {}
    network, crf = split_method(wildcards.method)
    validation = validation_subjects(dataset)
    training = reference_training_subjects(dataset)
    return {
        "probabilities": [f"results/{dataset}/inference/{wildcards.method}/{s}.nii.gz" for s in validation],
        "network_probabilities": [f"results/{dataset}/inference/{network}/{s}.nii.gz" for s in validation] if crf
        else [],
        "mutual_information": [f"results/{dataset}/inference_mutual_information/{network}/{s}.nii.gz"
                               for s in validation],
        "labels": [f"results/{dataset}/preprocessed/{s}/label.nii.gz" for s in validation],
        "training_labels": [f"results/{dataset}/preprocessed/{s}/label.nii.gz" for s in training],
        "training_statistics": [f"results/{dataset}/qc/preprocessing/{s}.json" for s in training],
    }


def quality_control_inputs(wildcards):
    """The method's probabilities (after the CRF, its network's too), its network's disagreement and the image
    statistics of every subject it segments, and its quality model."""
    dataset, method = wildcards.dataset, wildcards.method
    network, crf = split_method(method)
    subjects = method_subjects(dataset, method)
    return {
        "probabilities": [f"results/{dataset}/inference/{method}/{s}.nii.gz" for s in subjects],
        "network_probabilities": [f"results/{dataset}/inference/{network}/{s}.nii.gz" for s in subjects] if crf
        else [],
        "mutual_information": [f"results/{dataset}/inference_mutual_information/{network}/{s}.nii.gz"
                               for s in subjects],
        "statistics": [f"results/{dataset}/qc/preprocessing/{s}.json" for s in subjects],
        "model": quality_model_file(wildcards),
    }


# --- Targets: every checked method's table of the subjects to review -------------------------------------------


def quality_targets(dataset):
    """Every checked method's quality table and the dataset's page of the subjects to review first."""
    methods = checked_methods(dataset)
    if not methods:
        return []
    return [f"results/{dataset}/qc/{method}.csv" for method in methods] + [f"results/{dataset}/qc/review.html"]


def review_inputs(wildcards):
    """Every checked method's quality table and the dataset's overlays (the page shows the worst)."""
    return {
        "tables": [f"results/{wildcards.dataset}/qc/{m}.csv" for m in checked_methods(wildcards.dataset)],
        "overlays": [path for paths in overlay_files(wildcards.dataset).values() for path in paths],
    }
