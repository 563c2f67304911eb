# Input functions and helpers of the rules in rules/nnunet.smk, which includes this file first (Snakemake's
# lint wants functions and rules in separate files).

from lesionseg.nnunet.layout import splits_final

NNUNET_MODELS = one_of(name for name, spec in MODELS.items() if spec.is_nnunet)


def nnunet_folds(dataset):
    """Per nnU-Net fold, the pipeline's training and validation subjects: one per fold of the cross-validation, or
    the train and val splits."""
    k = folds_of(dataset)
    return [(training_subjects(dataset, fold), validation_subjects(dataset, fold)) for fold in (range(k) or [None])]


def nnunet_subjects(dataset):
    """The labelled subjects nnU-Net sees (every fold's training and validation subjects), in manifest order."""
    seen = {s for train, val in nnunet_folds(dataset) for s in (*train, *val)}
    return [s for s in manifest_subjects(dataset) if s in seen]


def nnunet_fold(wildcards):
    """nnU-Net's fold of a ``{model}`` wildcard: its fold of the cross-validation, else its only fold, 0."""
    return model_fold(wildcards.model) or 0


def nnunet_training_runtime(wildcards):
    """Minutes: on the order of nnU-Net's budget (its GPU default, 1000 epochs of 250 iterations, takes a day)."""
    training = MODELS[model_name(wildcards.model)].training
    return int(30 + training["epochs"] * training["iterations_per_epoch"] / 150)
