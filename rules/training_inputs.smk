# Input functions and helpers of the rules in rules/training.smk, which includes this file first (Snakemake's
# lint wants functions and rules in separate files).

# The models train_model trains (nnU-Net's are trained by rule nnunet_train).
PIPELINE_MODELS = one_of(name for name, spec in MODELS.items() if not spec.is_nnunet)

from dataclasses import asdict

from lesionseg import resources as estimates
from lesionseg.datasets.splits import fold_name
from lesionseg.inference.methods import dataset_model_names
from lesionseg.training.settings import sampling_plan


# --- The models of a dataset, their folders, and each training job's subjects and resources --------------------


def dataset_models(dataset):
    """Models trained on a dataset: its own, and its ensembles' members."""
    return [MODELS[name] for name in dataset_model_names(config, dataset)]


def dataset_sampling_plan(wildcards):
    """The sample sets every training subject of the dataset needs (from its models' settings)."""
    return {name: list(entry) for name, entry in
            sampling_plan([m.training for m in dataset_models(wildcards.dataset)]).items()}


def model_dir(dataset, model, phase):
    return f"results/{dataset}/models/{model}/phase{phase}"


def final_model(dataset, model):
    """The model file of the last training phase of a ``{model}`` (a fold's, with folds)."""
    return f"{model_dir(dataset, model, MODELS[model_name(model)].final_phase)}/model.pt"


def training_inputs(wildcards):
    """Preprocessed train and validation subjects, their sample files and the models this one starts from."""
    dataset, phase, fold = wildcards.dataset, int(wildcards.phase), model_fold(wildcards.model)
    spec = MODELS[model_name(wildcards.model)]
    pre = f"results/{dataset}/preprocessed"
    train, val = training_subjects(dataset, fold), validation_subjects(dataset, fold)
    if not train:
        where = f"fold {fold}'s training folds" if fold is not None else "the train split"
        raise ValueError(f"dataset {dataset!r} has no labelled subject in {where}: adjust 'split:'")
    inputs = {
        "train_images": [f"{pre}/{s}/image.nii.gz" for s in train],
        "train_masks": [f"{pre}/{s}/brain_mask.nii.gz" for s in train],
        "train_labels": [f"{pre}/{s}/label.nii.gz" for s in train],
        "train_samples": [f"results/{dataset}/samples/{s}.npz" for s in train],
        "val_images": [f"{pre}/{s}/image.nii.gz" for s in val],
        "val_masks": [f"{pre}/{s}/brain_mask.nii.gz" for s in val],
        "val_labels": [f"{pre}/{s}/label.nii.gz" for s in val],
    }
    if phase == 2:
        inputs["previous"] = f"{model_dir(dataset, wildcards.model, 1)}/model.pt"
    if spec.first:  # the cascade's first network of the same fold
        first = spec.first if fold is None else f"{spec.first}/{fold_name(fold)}"
        inputs["first"] = final_model(dataset, first)
    return inputs


def training_mem_mb(wildcards, input):
    settings = MODELS[model_name(wildcards.model)].training
    return estimates.training_mem_mb(input_mb(input), len(input.train_images), settings["subjects_per_epoch"],
                                     config["inference"]["memory_budget_mb"])


def training_runtime(wildcards, input):
    settings = MODELS[model_name(wildcards.model)].training
    return estimates.training_runtime_minutes(settings, int(wildcards.phase), len(input.val_images))


# --- Targets: every phase of every model (of each fold) --------------------------------------------------------


def training_targets(dataset):
    targets = []
    for spec in dataset_models(dataset):
        for model in model_instances(dataset, spec.name):
            for phase in spec.training["phases"]:
                out = model_dir(dataset, model, phase)
                targets += [f"{out}/model.pt", f"{out}/history.csv", f"{out}/learning_curve.png"]
            targets.append(f"results/{dataset}/models/{model}/learning_curves.png")  # every phase together
    return targets
