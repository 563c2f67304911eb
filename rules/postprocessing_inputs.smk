# Input functions and helpers of the rules in rules/postprocessing.smk, which includes this file first (Snakemake's
# lint wants functions and rules in separate files).

from lesionseg.inference.methods import CRF_SUFFIX, split_method, split_postprocessing


# --- The methods that get post-processing, where each one's is chosen, and the choice's inputs -----------------


def postprocessed_methods(dataset):
    """The dataset's methods that get a post-processed twin (none without labelled validation subjects)."""
    return [split_postprocessing(m)[0] for m in methods_of(dataset) if split_postprocessing(m)[1]]


def chosen_here(dataset):
    """The methods whose post-processing is chosen on this dataset's validation subjects (``@folds`` methods
    take their out-of-fold twin's choice)."""
    return [m for m in postprocessed_methods(dataset) if out_of_fold_twin(split_method(m)[0]) == split_method(m)[0]]


def postprocessing_choice(wildcards):
    """The file of the post-processing chosen for a method."""
    network, crf = split_method(wildcards.method)
    method = out_of_fold_twin(network) + (CRF_SUFFIX if crf else "")
    return f"results/{wildcards.dataset}/postprocessing/{method}.yaml"


def postprocessing_choice_inputs(wildcards):
    """The method's probabilities (preprocessing grid) and the truth of the labelled validation subjects."""
    dataset = wildcards.dataset
    subjects = validation_subjects(dataset)
    if not subjects:
        raise ValueError(f"dataset {dataset!r}: choosing the post-processing needs labelled validation subjects; "
                         "adjust 'split:' or set postprocessing: {enabled: false}")
    return {
        "probabilities": [f"results/{dataset}/inference/{wildcards.method}/{s}.nii.gz" for s in subjects],
        "labels": [f"results/{dataset}/preprocessed/{s}/label.nii.gz" for s in subjects],
    }


# --- Targets: the table of the dataset's choices ---------------------------------------------------------------


def postprocessing_targets(dataset):
    """The table of the dataset's post-processing choices (it needs every choice)."""
    if not chosen_here(dataset):
        return []
    return [f"results/{dataset}/postprocessing/summary.{ext}" for ext in ("csv", "html")]
