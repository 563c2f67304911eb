"""Test-time mirroring (``inference: mirror_axes``) of a finished run's trained networks: its cost and its effect
on Dice, side by side.

For each network trained on --dataset whose model files exist (the final phase's model.pt, every fold's with
cross-validation: the mean that segments the test subjects), on the dataset's test subjects with a preprocessed
label, dense inference runs as rule infer runs it (the run's ``inference:`` settings, the fingerprint check)
three times per subject:

- no mirroring (``mirror_axes: []``, the default): one prediction;
- left-right (``[0]``): 2 predictions averaged;
- every axis (``[0, 1, 2]``): the 8 combinations of flips averaged.

Each is timed (best of --repeats, after one warm-up pass per network) and its argmax, on the preprocessing grid,
is scored against the preprocessed label: the Dice of every evaluation region of the dataset's label scheme
(lesionseg.evaluation.metrics). The mean mutual information between the averaged predictions inside the brain
(0 without mirroring) is printed too. nnU-Net networks, which mirror by their own setting, are left out.

Run it in the working directory of a finished run, e.g. after ``make demo``:

    .venv/bin/python bench/mirroring.py --configfile config/config.yaml --threads 2

Only measures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from lesionseg.config import load_config
from lesionseg.datasets import datasets_from_config
from lesionseg.datasets.manifest import LABEL_COLUMN, read_manifest
from lesionseg.datasets.splits import CohortSplits
from lesionseg.evaluation.metrics import region_dice
from lesionseg.inference.dense import default_device
from lesionseg.inference.export import model_files_of
from lesionseg.inference.methods import dataset_networks
from lesionseg.inference.steps import load_networks, network_probabilities, read_channels_first, read_mask
from lesionseg.io import read_image
from lesionseg.preprocessing.settings import fingerprint
from lesionseg.training.settings import resolve_models

SETTINGS = (("none", []), ("left-right", [0]), ("all 8 flips", [0, 1, 2]))
# The keys of `inference:` that rule infer passes to dense inference (rules/inference_inputs.smk).
DENSE_KEYS = ("segment_size", "batch_size", "precision", "memory_budget_mb")


def test_subjects(workdir: Path, config: dict, dataset: str) -> tuple[list[str], list[str]]:
    """The dataset's labelled test subjects with a preprocessed label, and those without one yet."""
    rows = read_manifest(workdir / "results" / dataset / "subjects.tsv")
    splits = CohortSplits({row["subject"]: row["split"] for row in rows},
                          [row["subject"] for row in rows if row[LABEL_COLUMN]],
                          config["datasets"][dataset].get("split", {}))
    subjects = splits.labelled_in("test")
    ready = [s for s in subjects if (workdir / "results" / dataset / "preprocessed" / s / "label.nii.gz").is_file()]
    return ready, [s for s in subjects if s not in ready]


def trained_networks(workdir: Path, config: dict, dataset: str) -> tuple[dict[str, list[Path]], list[str]]:
    """Network -> model files (relative to the run) of the non-nnU-Net networks trained on the dataset whose
    files all exist, and a note for each network left out."""
    models = resolve_models(config)
    chosen, notes = {}, []
    for name, network in dataset_networks(config, dataset).items():
        if network.is_ensemble or network.trained_on != dataset or network.folds:
            continue  # ensembles average these; '@folds' is the same mean of the fold models as 'name' here
        if models[network.model].is_nnunet:
            notes.append(f"{name}: nnU-Net (its own mirroring), left out")
            continue
        files = model_files_of(config, dataset, name, Path("results"))
        missing = [f for f in files if not (workdir / f).is_file()]
        if missing:
            notes.append(f"{name}: {missing[0]} is missing, left out")
            continue
        chosen[name] = files
    return chosen, notes


def timed(run, repeats: int):
    """The result of the last of ``repeats`` runs and the best time."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return result, best


def measure_network(workdir: Path, files: list[Path], subjects: list[str], dataset: str, scheme,
                    data_fingerprint: str, base: dict, device: torch.device, repeats: int) -> dict:
    """Per setting: seconds per subject (mean of the subjects' best), mean Dice per region, mean MI in the brain."""
    names, networks, _ = load_networks([workdir / f for f in files], data_fingerprint, device)
    seconds = {label: [] for label, _ in SETTINGS}
    dice = {label: {region: [] for region in scheme.regions} for label, _ in SETTINGS}
    information = {label: [] for label, _ in SETTINGS}
    for i, subject in enumerate(subjects):
        folder = workdir / "results" / dataset / "preprocessed" / subject
        image = read_channels_first(folder / "image.nii.gz")
        mask = read_mask(folder / "brain_mask.nii.gz")
        truth = read_image(folder / "label.nii.gz", dtype=None).data
        spacing = tuple(float(s) for s in np.linalg.norm(image.affine[:3, :3], axis=0))

        def run(axes, image=image, mask=mask, spacing=spacing):
            return network_probabilities(names, networks, image.data, mask, device, {**base, "mirror_axes": axes},
                                         progress=False, spacing=spacing)

        if i == 0:
            run([])  # warm-up: imports, kernels, first-touch memory
        # The settings one after the other on the same subject, so that the machine's state is shared.
        for label, axes in SETTINGS:
            (probabilities, mutual_information), best = timed(lambda axes=axes: run(axes), repeats)
            seconds[label].append(best)
            prediction = scheme.to_raw(probabilities.argmax(axis=0))
            for region, value in region_dice(prediction, truth, scheme).items():
                dice[label][region].append(value)
            information[label].append(float(mutual_information[mask].mean()))
    return {label: {"seconds": float(np.mean(seconds[label])),
                    "dice": {region: float(np.mean(values)) for region, values in dice[label].items()},
                    "mi": float(np.mean(information[label]))} for label, _ in SETTINGS}


def report(results: dict[str, dict], regions: list[str]) -> None:
    header = ["network", "mirroring", "s/subject", "x none", "MI brain",
              *[f"Dice {r}" for r in regions], "Dice mean"]
    rows = []
    for name, measures in results.items():
        reference = measures["none"]
        for label, _ in SETTINGS:
            m = measures[label]
            mean, reference_mean = np.mean(list(m["dice"].values())), np.mean(list(reference["dice"].values()))
            cells = [f"{m['dice'][r]:.4f} ({m['dice'][r] - reference['dice'][r]:+.4f})" for r in regions]
            rows.append([name, label, f"{m['seconds']:.2f}", f"{m['seconds'] / reference['seconds']:.2f}x",
                         f"{m['mi']:.5f}", *cells, f"{mean:.4f} ({mean - reference_mean:+.4f})"])
    widths = [max(len(str(row[c])) for row in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}"
              + "".join(f"  {cell:>{width}}" for cell, width in zip(row[2:], widths[2:])))
    # Over every network: the ratio of the summed times and the mean of the networks' mean Dice.
    overall = []
    for label, _ in SETTINGS:
        total = sum(m[label]["seconds"] for m in results.values())
        reference = sum(m["none"]["seconds"] for m in results.values())
        mean = np.mean([np.mean(list(m[label]["dice"].values())) for m in results.values()])
        overall.append(f"{label} {total / reference:.2f}x the time, Dice {mean:.4f}")
    print(f"overall mean ({len(results)} network(s)): " + "; ".join(overall))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", nargs="?", type=Path, default=Path("."), help="the finished run's directory")
    parser.add_argument("--configfile", type=Path, default=Path("config/config.yaml"),
                        help="the run's config (relative to the run's directory)")
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="timed passes per subject and setting (best kept)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    workdir = args.workdir
    config = load_config(workdir / args.configfile)
    if args.dataset not in config["datasets"]:
        parser.error(f"the config has no dataset {args.dataset!r} (it has {sorted(config['datasets'])})")
    dataset = datasets_from_config(config, workdir / "results")[args.dataset]
    subjects, unready = test_subjects(workdir, config, args.dataset)
    networks, notes = trained_networks(workdir, config, args.dataset)
    for note in notes:
        print(note)
    if unready:
        print(f"test subjects without a preprocessed label, left out: {', '.join(unready)}")
    if not subjects or not networks:
        parser.error(f"nothing to measure: {len(networks)} trained network(s), {len(subjects)} test subject(s) "
                     f"with a preprocessed label in {workdir / 'results' / args.dataset}")
    device = default_device()
    base = {key: config["inference"][key] for key in DENSE_KEYS}
    data_fingerprint = fingerprint(dataset.preprocessing, dataset.modalities)
    shape = read_image(workdir / "results" / args.dataset / "preprocessed" / subjects[0] / "brain_mask.nii.gz",
                       dtype=None).data.shape
    print(f"dataset {args.dataset}: {len(subjects)} test subject(s) ({', '.join(subjects)}), first "
          f"{'x'.join(map(str, shape))} voxels; {device}, {args.threads} threads; inference: "
          + ", ".join(f"{k} {v}" for k, v in base.items()) + f"; best of {args.repeats}")
    regions = list(dataset.scheme.regions)
    results = {name: measure_network(workdir, files, subjects, args.dataset, dataset.scheme, data_fingerprint, base,
                                     device, args.repeats)
               for name, files in networks.items()}
    print(f"Dice: mean over the subjects per region (difference to no mirroring); MI: mean normalised mutual "
          f"information inside the brain. {dataset.scheme.region_legend()}")
    report(results, regions)


if __name__ == "__main__":
    main()
