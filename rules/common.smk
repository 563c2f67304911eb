# Helpers shared by every stage: the datasets of the config, wildcard constraints,
# input functions and the list of final targets.
import os
import re

from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

from lesionseg import resources as estimates
from lesionseg.datasets import SUBJECT_ID, SYNTHETIC_KINDS, datasets_from_config, synthetic_subject_files
from lesionseg.datasets.applied import applied_links
from lesionseg.datasets.manifest import LABEL_COLUMN, MASK_COLUMN, read_manifest
from lesionseg.datasets.splits import fold_name, fold_of, fold_validation, split_fractions
from lesionseg.inference.export import model_files_of
from lesionseg.inference.methods import (CRF_SUFFIX, PP_SUFFIX, dataset_methods, dataset_model_names,
                                         dataset_networks, fold_count, pretrained_models, resolve_ensembles,
                                         split_method, split_postprocessing)
from lesionseg.preprocessing.settings import SYNTHETIC_TEMPLATE, fingerprint
from lesionseg.training.settings import resolve_models, sampling_plan

DATASETS = datasets_from_config(config)
MODELS = resolve_models(config)  # the models the workflow trains
PRETRAINED = pretrained_models(config)  # imported model files, by model name
ENSEMBLES = resolve_ensembles(config)
NETWORKS = {name: dataset_networks(config, name) for name in DATASETS}  # per dataset, by method name
APPLIED = applied_links(config, DATASETS)  # (dataset, network) -> channels, classes, fingerprint
NOTHING = "(?!x)x"  # a regex that matches no name


def one_of(names):
    """A wildcard constraint matching exactly these names."""
    return "|".join(sorted(map(re.escape, set(names)))) or NOTHING


INFERRED = one_of(n for networks in NETWORKS.values() for n, net in networks.items() if not net.is_ensemble)
AVERAGED = one_of(n for networks in NETWORKS.values() for n, net in networks.items() if net.is_ensemble)
PROBABILITY_METHOD = f"(?:{INFERRED}|{AVERAGED})(?:{re.escape(CRF_SUFFIX)})?"  # a method with a probability map


wildcard_constraints:
    dataset=one_of(DATASETS),
    model=f"(?:{one_of(MODELS)})(?:/fold[0-9]+)?",  # a trained model, or one fold's model of it
    network=f"{INFERRED}|{AVERAGED}",
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
    settings = MODELS[model_name(wildcards.model)].training
    return estimates.training_mem_mb(input.size_mb, len(input.train_images), settings["subjects_per_epoch"],
                                     config["inference"]["memory_budget_mb"])


def inference_mem_mb(wildcards, input):
    """What dense inference holds: the image, its probability maps and one batch (inference: memory_budget_mb)."""
    dataset = DATASETS[wildcards.dataset]
    return estimates.inference_mem_mb(estimates.float32_mb(input.image), len(dataset.modalities),
                                      dataset.scheme.n_classes, len(input.models),
                                      config["inference"]["memory_budget_mb"])


def crf_tuning_mem_mb(wildcards, input):
    """The CRF search holds every validation subject's arrays and runs one CRF at a time."""
    subjects = zip(input.probabilities, input.images, input.masks, input.labels, strict=True)
    return estimates.crf_mem_mb([sum(map(estimates.float32_mb, files)) for files in subjects])


def crf_mem_mb(wildcards, input):
    return estimates.crf_mem_mb([estimates.float32_mb(input.probabilities) + estimates.float32_mb(input.image)])


def training_runtime(wildcards, input):
    settings = MODELS[model_name(wildcards.model)].training
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


# --- Splits, folds and the models of each fold ---------------------------------------------------------------


def folds_of(dataset):
    """The k of the dataset's cross-validation (0: a plain train / val / test split)."""
    return fold_count(config, dataset)


def fold_subjects(dataset, fold):
    """Labelled subjects of one fold."""
    return [s for s in manifest_subjects(dataset, fold_name(fold)) if manifest_rows(dataset)[s][LABEL_COLUMN]]


def out_of_fold_subjects(dataset):
    """Every labelled subject of the folds (each segmented by the model of its fold)."""
    return [s for k in range(folds_of(dataset)) for s in fold_subjects(dataset, k)]


def fold_validation_subjects(dataset, fold):
    """The validation subjects of fold ``fold``'s model: a hashed share of the other folds' subjects."""
    split = config["datasets"][dataset]["split"]
    pool = [s for k in range(folds_of(dataset)) if k != fold for s in fold_subjects(dataset, k)]
    return fold_validation(pool, split_fractions(split)["val"], split.get("seed", 0))


def training_subjects(dataset, fold=None):
    """Labelled subjects of the train split, or those a fold's model trains on (the other folds, less its
    validation subjects)."""
    if fold is None:
        return [s for s in manifest_subjects(dataset, "train") if manifest_rows(dataset)[s][LABEL_COLUMN]]
    validation = set(fold_validation_subjects(dataset, fold))
    return [s for k in range(folds_of(dataset)) if k != fold for s in fold_subjects(dataset, k)
            if s not in validation]


def validation_subjects(dataset, fold=None):
    """Labelled subjects of the val split, or of one fold's model. With folds and no ``fold``: every labelled
    subject of the folds, whose out-of-fold results choose the CRF parameters and the post-processing of the
    dataset's networks (as nnU-Net chooses its post-processing on the cross-validation)."""
    if fold is not None:
        return fold_validation_subjects(dataset, fold)
    if folds_of(dataset):
        return out_of_fold_subjects(dataset)
    return [s for s in manifest_subjects(dataset, "val") if manifest_rows(dataset)[s][LABEL_COLUMN]]


def test_subjects(dataset):
    return manifest_subjects(dataset, "test")


def model_name(model):
    """The model of a ``{model}`` wildcard (``deepmedic`` or ``deepmedic/fold2``)."""
    return model.split("/")[0]


def model_fold(model):
    """The fold of a ``{model}`` wildcard (None without folds)."""
    _, sep, fold = model.partition("/")
    return fold_of(fold) if sep else None


def model_instances(dataset, name):
    """``{model}`` wildcards of a model trained on a dataset: itself, or one per fold."""
    k = folds_of(dataset)
    return [f"{name}/{fold_name(fold)}" for fold in range(k)] if k else [name]


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


def training_targets(dataset):
    targets = []
    for spec in dataset_models(dataset):
        for model in model_instances(dataset, spec.name):
            for phase in spec.training["phases"]:
                out = model_dir(dataset, model, phase)
                targets += [f"{out}/model.pt", f"{out}/history.csv", f"{out}/learning_curve.png"]
            targets.append(f"results/{dataset}/models/{model}/learning_curves.png")  # every phase together
    return targets


# --- Networks: which model files give a dataset's probabilities, and for which subjects ---------------------


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


def ensemble_members(wildcards):
    return [f"results/{wildcards.dataset}/inference/{m}/{wildcards.subject}.nii.gz"
            for m in network_of(wildcards).members]


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


def methods_of(dataset):
    """The dataset's methods; those with post-processing only if it has labelled validation subjects to choose it."""
    return dataset_methods(config, dataset, postprocessing=bool(validation_subjects(dataset)))


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


def postprocessing_targets(dataset):
    """The table of the dataset's post-processing choices (it needs every choice)."""
    if not chosen_here(dataset):
        return []
    return [f"results/{dataset}/postprocessing/summary.{ext}" for ext in ("csv", "html")]


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


def evaluation_inputs(wildcards):
    """A method's segmentations of its subjects, and the truth of those that have one."""
    dataset, rows = wildcards.dataset, manifest_rows(wildcards.dataset)
    subjects = method_subjects(dataset, wildcards.method)
    return {
        "segmentations": [f"results/{dataset}/segmentations/{wildcards.method}/{s}.nii.gz" for s in subjects],
        "truths": [rows[s][LABEL_COLUMN] for s in subjects if rows[s][LABEL_COLUMN]],
    }


def method_families(dataset):
    """The dataset's methods grouped by network (``deepmedic``: deepmedic, deepmedic+crf, deepmedic+pp, ...), in
    method order, for the networks that segment some subject: one overlay shows a family side by side."""
    families = {}
    for method in methods_of(dataset):
        if method_subjects(dataset, method):
            families.setdefault(split_method(method)[0], []).append(method)
    return families


def overlay_inputs(wildcards):
    """A subject's input images, the segmentation of every method of a network's family, and the truth if there
    is one."""
    methods = method_families(wildcards.dataset)[wildcards.network]
    inputs = {
        "images": images_on_reference_grid(wildcards),
        "segmentations": [f"results/{wildcards.dataset}/segmentations/{m}/{wildcards.subject}.nii.gz"
                          for m in methods],
    }
    truth = manifest_rows(wildcards.dataset)[wildcards.subject][LABEL_COLUMN]
    if truth:
        inputs["truth"] = truth
    return inputs


def overlay_files(dataset):
    """Subject -> its overlays (one per network family), subjects in manifest order."""
    files = {}
    for network, methods in method_families(dataset).items():
        for subject in method_subjects(dataset, methods[0]):
            files.setdefault(subject, []).append(f"results/{dataset}/figures/overlays/{network}/{subject}.png")
    order = {s: i for i, s in enumerate(manifest_subjects(dataset))}
    return dict(sorted(files.items(), key=lambda item: order[item[0]]))


def evaluation_targets(dataset):
    """Per-method tables, the dataset's summaries and per-subject page, and an overlay per network family and
    subject it segments."""
    methods = [m for m in methods_of(dataset) if method_subjects(dataset, m)]
    if not methods:
        return []
    targets = [f"results/{dataset}/evaluation/{method}/per_subject.csv" for method in methods]
    targets += [f"results/{dataset}/evaluation/summary.{ext}" for ext in ("csv", "md", "html")]
    targets.append(f"results/{dataset}/evaluation/per_subject.html")
    targets += [path for paths in overlay_files(dataset).values() for path in paths]
    targets.append(f"results/{dataset}/runtimes.csv")
    return targets


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
    """Every dataset's manifest and run time, and the tuned CRF parameters of the networks that use some."""
    inputs = {"manifests": [f"results/{d}/subjects.tsv" for d in DATASETS],
              "run_times": [f"results/{d}/run_time.yaml" for d in DATASETS if evaluation_targets(d)]}
    inputs["crf"] = sorted({tuned for d in DATASETS for tuned, _ in crf_uses(d).values() if tuned})
    return inputs


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
    """The benchmark files of every heavy job of a dataset (exactly the jobs its targets need)."""
    dataset = wildcards.dataset
    subjects = manifest_subjects(dataset)
    steps = ["skull_strip", "bias_correct", "resample_crop"]
    if DATASETS[dataset].preprocessing["coregister"]["enabled"]:
        steps.insert(0, "coregister")
    files = [f"benchmarks/{dataset}/{step}/{s}.tsv" for step in steps for s in subjects]
    files += [f"benchmarks/{dataset}/train_model/{model}/phase{p}.tsv" for m in dataset_models(dataset)
              for model in model_instances(dataset, m.name) for p in m.training["phases"]]
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
    targets += ["results/overview.html", "results/configuration.html"]
    return targets
