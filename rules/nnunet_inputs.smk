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


def nnunet_plan_inputs(wildcards):
    """nnU-Net's raw dataset (known once the manifest is: a labelled subject to train on is needed)."""
    if not nnunet_subjects(wildcards.dataset):
        raise ValueError(f"dataset {wildcards.dataset!r}: nnU-Net needs labelled subjects to train and validate on; "
                         "adjust 'split:'")
    return {"raw": f"results/{wildcards.dataset}/nnunet/raw"}


def nnunet_train_inputs(wildcards):
    """The model's nnU-Net preprocessed dataset (known once the manifest is: the fold needs training subjects)."""
    dataset, fold = wildcards.dataset, model_fold(wildcards.model)
    if not training_subjects(dataset, fold):
        where = f"fold {fold}'s training folds" if fold is not None else "the train split"
        raise ValueError(f"dataset {dataset!r} has no labelled subject in {where}: adjust 'split:'")
    return {"preprocessed": f"results/{dataset}/nnunet/{model_name(wildcards.model)}/preprocessed"}


def nnunet_fold(wildcards):
    """nnU-Net's fold of a ``{model}`` wildcard: its fold of the cross-validation, else its only fold, 0."""
    return model_fold(wildcards.model) or 0


def nnunet_training_runtime(wildcards):
    """Minutes: on the order of nnU-Net's budget (its GPU default, 1000 epochs of 250 iterations, takes a day)."""
    training = MODELS[model_name(wildcards.model)].training
    return int(30 + training["epochs"] * training["iterations_per_epoch"] / 150)
