# Helpers shared by every stage: the datasets of the config, wildcard constraints,
# input functions and the list of final targets.
import os
import re

from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

from lesionseg import resources as estimates
from lesionseg.datasets import SUBJECT_ID, SYNTHETIC_KINDS, datasets_from_config, synthetic_subject_files
from lesionseg.datasets.manifest import LABEL_COLUMN, MASK_COLUMN, read_manifest
from lesionseg.inference.methods import (CRF_SUFFIX, PP_SUFFIX, dataset_methods, dataset_model_names,
                                         dataset_networks, resolve_ensembles, split_postprocessing)
from lesionseg.preprocessing.settings import SYNTHETIC_TEMPLATE, fingerprint
from lesionseg.training.settings import resolve_models, sampling_plan

DATASETS = datasets_from_config(config)
MODELS = resolve_models(config)
ENSEMBLES = resolve_ensembles(config)
NETWORKS = [*MODELS, *ENSEMBLES]  # what produces probabilities: a model or an ensemble
NOTHING = "(?!x)x"  # a regex that matches no name


def one_of(names):
    """A wildcard constraint matching exactly these names."""
    return "|".join(sorted(map(re.escape, names))) or NOTHING


PROBABILITY_METHOD = f"(?:{one_of(NETWORKS)})(?:{re.escape(CRF_SUFFIX)})?"  # a method with a probability map


wildcard_constraints:
    dataset=one_of(DATASETS),
    model=one_of(MODELS),
    ensemble=one_of(ENSEMBLES),
    network=one_of(NETWORKS),
    method=f"{PROBABILITY_METHOD}(?:{re.escape(PP_SUFFIX)})?",
    phase="1|2",
    subject=SUBJECT_ID.pattern.strip("^$"),


def dataset_entry(wildcards, drop=("preprocessing", "models", "ensembles")):
    """The dataset's config entry without the keys a rule does not use (so editing them re-runs nothing)."""
    return {k: v for k, v in config["datasets"][wildcards.dataset].items() if k not in drop}


def synthetic_params(wildcards):
    """What determines one synthetic subject (not the cohort size, so adding subjects keeps the others)."""
    dataset = DATASETS[wildcards.dataset]
    spec = dataset.synthetic
    index = int(wildcards.subject.rsplit("_", 1)[1])
    return {"kind": spec["kind"], "seed": spec["seed"], "spacing_mm": spec["spacing_mm"], "index": index}


def synthetic_outputs(kind):
    """Output patterns of a synthetic subject: images, truth and true brain mask."""
    files = synthetic_subject_files(kind, Path("results/{dataset}/raw"), "{subject}")
    return {**{m: str(p) for m, p in files.images.items()}, "label": str(files.label),
            "brain_mask": str(files.extras["brain_mask"])}


def manifest_inputs(wildcards):
    """Every input file of a dataset (for the synthetic cohort, the files it will generate)."""
    files = []
    for subject in DATASETS[wildcards.dataset].discover():
        files += [str(p) for p in (*subject.images.values(), subject.label) if p is not None]
        if subject.mask is not None and subject.mask.is_file():  # a missing mask is reported by validation
            files.append(str(subject.mask))
    return files


# Preprocessing keys that validation depends on (the grid reference, co-registration, the brain masks).
VALIDATION_PREPROCESSING_KEYS = ("reference", "coregister", "skull_strip")


def manifest_entry(wildcards):
    """The dataset's entry as validation sees it: other preprocessing edits do not re-run the manifest."""
    entry = dataset_entry(wildcards, drop=("models", "ensembles"))
    preprocessing = entry.pop("preprocessing", {})
    entry["preprocessing"] = {k: v for k, v in preprocessing.items() if k in VALIDATION_PREPROCESSING_KEYS}
    return entry


def manifest_runtime(wildcards, input):
    return 10 + len(input) // 20


@lru_cache(maxsize=None)
def _manifest_rows(path, mtime_ns):
    return {row["subject"]: row for row in read_manifest(path)}


def manifest_rows(dataset):
    """Rows of a dataset's manifest by subject (available once its checkpoint has run)."""
    path = checkpoints.manifest.get(dataset=dataset).output.subjects
    return _manifest_rows(path, os.stat(path).st_mtime_ns)


def manifest_subjects(dataset, split=None):
    """Valid subjects of a dataset, optionally of one split."""
    return [s for s, row in manifest_rows(dataset).items() if split is None or row["split"] == split]


def labelled_subjects(dataset):
    return [s for s, row in manifest_rows(dataset).items() if row[LABEL_COLUMN]]


def raw_images(wildcards):
    """The subject's input images, in the dataset's channel order."""
    row = manifest_rows(wildcards.dataset)[wildcards.subject]
    return [row[m] for m in DATASETS[wildcards.dataset].modalities]


def raw_label(wildcards):
    label = manifest_rows(wildcards.dataset)[wildcards.subject][LABEL_COLUMN]
    if not label:
        raise ValueError(f"subject {wildcards.subject} of dataset {wildcards.dataset} has no label")
    return label


def preprocessing_settings(wildcards):
    return DATASETS[wildcards.dataset].preprocessing


def preprocessing_fingerprint(wildcards):
    dataset = DATASETS[wildcards.dataset]
    return fingerprint(dataset.preprocessing, dataset.modalities)


def preprocessing_records(wildcards):
    """The step records of a subject's preprocessing, in the order the steps ran."""
    steps = ["skull_strip", "bias_correction", "resample"]
    if preprocessing_settings(wildcards)["coregister"]["enabled"]:
        steps.insert(0, "coregister")
    return [f"results/{wildcards.dataset}/preprocessing/{wildcards.subject}/{step}.json" for step in steps]


# Per-subject folders of the preprocessing stage: intermediate files, final files.
PRE = "results/{dataset}/preprocessing/{subject}"
OUT = "results/{dataset}/preprocessed/{subject}"


def images_on_reference_grid(wildcards):
    """The subject's modalities on one grid: co-registered if enabled, else as given."""
    if preprocessing_settings(wildcards)["coregister"]["enabled"]:
        return [f"{PRE}/coregistered.nii.gz".format(**wildcards)]
    return raw_images(wildcards)


def skull_strip_inputs(wildcards):
    inputs = {"images": images_on_reference_grid(wildcards)}
    strip = preprocessing_settings(wildcards)["skull_strip"]
    if strip["method"] == "given":
        inputs["given_mask"] = manifest_rows(wildcards.dataset)[wildcards.subject][MASK_COLUMN]
    if strip["method"] == "template":
        if strip["template"] == SYNTHETIC_TEMPLATE:
            inputs["template"] = f"results/{wildcards.dataset}/preprocessing/template/head.nii.gz"
            inputs["template_mask"] = f"results/{wildcards.dataset}/preprocessing/template/brain_mask.nii.gz"
        else:
            inputs["template"], inputs["template_mask"] = strip["template"], strip["template_mask"]
    return inputs


def image_mem_mb(base, per_mb):
    """Memory that grows with the (compressed) size of a job's inputs."""
    return lambda wildcards, input: int(base + per_mb * input.size_mb)


def image_runtime(base, per_mb):
    """Runtime (minutes) that grows with the size of a job's inputs."""
    return lambda wildcards, input: int(base + per_mb * input.size_mb)


def training_mem_mb(wildcards, input):
    settings = MODELS[wildcards.model].training
    return estimates.training_mem_mb(input.size_mb, len(input.train_images), settings["subjects_per_epoch"])


def training_runtime(wildcards, input):
    settings = MODELS[wildcards.model].training
    return estimates.training_runtime_minutes(settings, int(wildcards.phase), len(input.val_images))


def preprocessing_targets(dataset):
    """Final preprocessing outputs of every valid subject of a dataset."""
    targets = []
    for subject in manifest_subjects(dataset):
        out = f"results/{dataset}/preprocessed/{subject}"
        targets += [f"{out}/image.nii.gz", f"{out}/provenance.json", f"results/{dataset}/brain_masks/{subject}.nii.gz",
                    f"results/{dataset}/qc/preprocessing/{subject}.png"]
    targets += [f"results/{dataset}/preprocessed/{s}/label.nii.gz" for s in labelled_subjects(dataset)]
    return targets


def dataset_models(dataset):
    """Models trained on a dataset: its own, and its ensembles' members."""
    return [MODELS[name] for name in dataset_model_names(config, dataset)]


def dataset_sampling_plan(wildcards):
    """The sample sets every training subject of the dataset needs (from its models' settings)."""
    return {name: list(entry) for name, entry in
            sampling_plan([m.training for m in dataset_models(wildcards.dataset)]).items()}


def training_subjects(dataset):
    """Labelled subjects of the train split."""
    return [s for s in manifest_subjects(dataset, "train") if manifest_rows(dataset)[s][LABEL_COLUMN]]


def validation_subjects(dataset):
    return [s for s in manifest_subjects(dataset, "val") if manifest_rows(dataset)[s][LABEL_COLUMN]]


def model_dir(dataset, model, phase):
    return f"results/{dataset}/models/{model}/phase{phase}"


def training_inputs(wildcards):
    """Preprocessed train and validation subjects, their sample files and the models this one starts from."""
    dataset, phase = wildcards.dataset, int(wildcards.phase)
    spec = MODELS[wildcards.model]
    pre = f"results/{dataset}/preprocessed"
    train, val = training_subjects(dataset), validation_subjects(dataset)
    if not train:
        raise ValueError(f"dataset {dataset!r} has no labelled subject in the train split: adjust 'split:'")
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
        inputs["previous"] = f"{model_dir(dataset, spec.name, 1)}/model.pt"
    if spec.first:
        inputs["first"] = f"{model_dir(dataset, spec.first, MODELS[spec.first].final_phase)}/model.pt"
    return inputs


def training_targets(dataset):
    targets = []
    for spec in dataset_models(dataset):
        for phase in spec.training["phases"]:
            out = model_dir(dataset, spec.name, phase)
            targets += [f"{out}/model.pt", f"{out}/history.csv", f"{out}/learning_curve.png"]
    return targets


def final_model(wildcards):
    """The model file of the model's last training phase."""
    spec = MODELS[wildcards.model]
    return f"{model_dir(wildcards.dataset, spec.name, spec.final_phase)}/model.pt"


def inference_settings(wildcards):
    """The keys of `inference:` that dense inference uses."""
    keys = ("segment_size", "batch_size", "precision", "memory_budget_mb")
    return {key: config["inference"][key] for key in keys}


def ensemble_members(wildcards):
    return [f"results/{wildcards.dataset}/inference/{m}/{wildcards.subject}.nii.gz"
            for m in ENSEMBLES[wildcards.ensemble]]


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
    if config["crf"]["tune"]["enabled"]:
        inputs["parameters"] = f"results/{wildcards.dataset}/crf/{wildcards.network}/parameters.yaml"
    return inputs


def crf_parameters(wildcards):
    """The configured CRF parameters, used as given or as the tuning's first trial."""
    return config["crf"]["parameters"]


def methods_of(dataset):
    """The dataset's methods; those with post-processing only if it has labelled validation subjects to choose it."""
    return dataset_methods(config, dataset, postprocessing=bool(validation_subjects(dataset)))


def postprocessed_methods(dataset):
    """The dataset's methods that get a post-processed twin (none without labelled validation subjects)."""
    return [split_postprocessing(m)[0] for m in methods_of(dataset) if split_postprocessing(m)[1]]


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


def postprocessing_targets(dataset):
    """The table of the dataset's post-processing choices (it needs every choice)."""
    if not postprocessed_methods(dataset):
        return []
    return [f"results/{dataset}/postprocessing/summary.{ext}" for ext in ("csv", "html")]


def segmentation_targets(dataset):
    """Segmentations of every method for every test subject, on the original grid, and the probability maps of
    the methods that have one (the post-processing changes only the segmentation)."""
    targets = []
    for method in methods_of(dataset):
        for subject in test_subjects(dataset):
            targets.append(f"results/{dataset}/segmentations/{method}/{subject}.nii.gz")
            if not split_postprocessing(method)[1]:
                targets.append(f"results/{dataset}/probabilities/{method}/{subject}.nii.gz")
    return targets


def test_subjects(dataset):
    return manifest_subjects(dataset, "test")


def evaluation_inputs(wildcards):
    """A method's segmentations of the test subjects, and the truth of those that have one."""
    dataset, rows = wildcards.dataset, manifest_rows(wildcards.dataset)
    subjects = test_subjects(dataset)
    return {
        "segmentations": [f"results/{dataset}/segmentations/{wildcards.method}/{s}.nii.gz" for s in subjects],
        "truths": [rows[s][LABEL_COLUMN] for s in subjects if rows[s][LABEL_COLUMN]],
    }


def overlay_inputs(wildcards):
    """A test subject's input images, a method's segmentation, and the truth if there is one."""
    inputs = {
        "images": images_on_reference_grid(wildcards),
        "segmentation": f"results/{wildcards.dataset}/segmentations/{wildcards.method}/{wildcards.subject}.nii.gz",
    }
    truth = manifest_rows(wildcards.dataset)[wildcards.subject][LABEL_COLUMN]
    if truth:
        inputs["truth"] = truth
    return inputs


def evaluation_targets(dataset):
    """Per-method tables, the dataset's summaries and an overlay per method and test subject."""
    subjects, methods = test_subjects(dataset), methods_of(dataset)
    if not subjects or not methods:
        return []
    targets = [f"results/{dataset}/evaluation/{method}/per_subject.csv" for method in methods]
    targets += [f"results/{dataset}/evaluation/summary.{ext}" for ext in ("csv", "md", "html")]
    targets += [f"results/{dataset}/figures/overlays/{m}/{s}.png" for m in methods for s in subjects]
    targets.append(f"results/{dataset}/runtimes.csv")
    return targets


def benchmark_files(wildcards):
    """The benchmark files of every heavy job of a dataset (exactly the jobs its targets need)."""
    dataset = wildcards.dataset
    subjects = manifest_subjects(dataset)
    steps = ["skull_strip", "bias_correct", "resample_crop"]
    if DATASETS[dataset].preprocessing["coregister"]["enabled"]:
        steps.insert(0, "coregister")
    files = [f"benchmarks/{dataset}/{step}/{s}.tsv" for step in steps for s in subjects]
    files += [f"benchmarks/{dataset}/train_model/{m.name}/phase{p}.tsv"
              for m in dataset_models(dataset) for p in m.training["phases"]]
    tested = test_subjects(dataset)
    validated = [s for s in validation_subjects(dataset) if s not in tested]
    # The post-processing is chosen on the validation subjects' results of every network, with and without CRF.
    segmented = tested + (validated if any(split_postprocessing(m)[1] for m in methods_of(dataset)) else [])
    networks = dataset_networks(config, dataset)
    inferred = list(segmented)
    if config["crf"]["enabled"]:
        if config["crf"]["tune"]["enabled"]:
            inferred += [s for s in validated if s not in inferred]
            files += [f"benchmarks/{dataset}/tune_crf/{n}.tsv" for n in networks]
        files += [f"benchmarks/{dataset}/crf/{n}/{s}.tsv" for n in networks for s in segmented]
    files += [f"benchmarks/{dataset}/infer/{m.name}/{s}.tsv" for m in dataset_models(dataset) for s in inferred]
    return files


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
    return targets
