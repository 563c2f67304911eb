# Input functions and helpers of the rules in rules/crf.smk, which includes this file first (Snakemake's
# lint wants functions and rules in separate files).

from lesionseg import resources as estimates


# --- Which tuned parameters a network's CRF uses, and each CRF job's inputs and memory -------------------------


def crf_tuned_on(dataset, network):
    """``(dataset, network)`` whose tuned CRF parameters a network uses, or None (the configured ones, or a
    model file's own). Networks trained elsewhere use those tuned where they were trained, unless
    crf: {tune: {applied_models: target}} and this dataset has labelled validation subjects."""
    tune = config["crf"]["tune"]
    if not (config["crf"]["enabled"] and tune["enabled"]):
        return None
    net = NETWORKS[dataset][network]
    if net.trained_on == dataset:
        return dataset, out_of_fold_twin(network)
    if tune["applied_models"] == "target" and validation_subjects(dataset):
        return dataset, network
    if net.trained_on is None:
        return None
    return net.trained_on, net.model


def crf_tuning_inputs(wildcards):
    """The network's probabilities, images, masks and truth of the labelled validation subjects."""
    dataset, network = wildcards.dataset, wildcards.network
    subjects = validation_subjects(dataset)
    if not subjects:
        raise ValueError(f"dataset {dataset!r}: CRF tuning needs labelled validation subjects; adjust 'split:' or "
                         "set crf: {tune: {enabled: false}}")
    pre = f"results/{dataset}/preprocessed"
    return {
        "probabilities": [f"results/{dataset}/inference/{network}/{s}.nii.gz" for s in subjects],
        "images": [f"{pre}/{s}/image.nii.gz" for s in subjects],
        "masks": [f"{pre}/{s}/brain_mask.nii.gz" for s in subjects],
        "labels": [f"{pre}/{s}/label.nii.gz" for s in subjects],
    }


def crf_inputs(wildcards):
    """A subject's network probabilities and image, and the tuned parameters when tuning is on."""
    inputs = {
        "probabilities": f"results/{wildcards.dataset}/inference/{wildcards.network}/{wildcards.subject}.nii.gz",
        "image": f"{OUT}/image.nii.gz".format(**wildcards),
        "mask": f"{OUT}/brain_mask.nii.gz".format(**wildcards),
    }
    tuned = crf_tuned_on(wildcards.dataset, wildcards.network)
    if tuned is not None:
        inputs["parameters"] = "results/{}/crf/{}/parameters.yaml".format(*tuned)
    return inputs


def crf_parameters(wildcards):
    """The CRF parameters used when none are tuned (a model file's own, else the configured ones), and the
    tuning's first trial."""
    link = APPLIED.get((wildcards.dataset, wildcards.network))
    if link is not None and link.crf_parameters is not None:
        return dict(link.crf_parameters)
    return config["crf"]["parameters"]


def crf_tuning_mem_mb(wildcards, input):
    """The CRF search holds every validation subject's arrays and runs one CRF at a time."""
    subjects = zip(input.probabilities, input.images, input.masks, input.labels, strict=True)
    return estimates.crf_mem_mb([sum(map(estimates.float32_mb, files)) for files in subjects])


def crf_mem_mb(wildcards, input):
    return estimates.crf_mem_mb([estimates.float32_mb(input.probabilities) + estimates.float32_mb(input.image)])
