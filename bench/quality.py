"""Does the per-subject quality score (rule quality_control, lesionseg.evaluation.quality) find failed
segmentations? A finished run's network, applied to a held-out synthetic cohort with broken subjects in it.

In the working directory of a finished run (e.g. after ``make demo``; it needs the source dataset's trained
model, results/<source>/models/<model>/phase*/model.pt, and the run's config), this

1. writes a held-out cohort below <workdir>/quality_bench/data (never inside the repository, never in the run's
   results/): --clean new synthetic subjects of the source's ``synthetic:`` kind and spacing, from the project's
   own generator (lesionseg.synthetic.subject.simulate) with another seed (--seed, default the source's + 1), with their
   label and brain mask; and, for each of the first --broken of them, one broken copy per corruption:

   - ``noise``: the FLAIR replaced inside the head by Gaussian noise of the same mean and standard deviation;
   - ``bias``: every modality times exp(a ramp from -1 to +1 across the head, left to right);
   - ``ghosting``: every modality plus two copies shifted by +-1/4 of the field of view along the
     anterior-posterior axis (wrapped round, like motion ghosts in the phase-encoding direction) at 40%;
   - ``swap``: FLAIR and T1 exchanged;
   - ``no_lesion``: the same head drawn without a lesion (the generator's anatomy and contrasts without its
     lesion step; the generator itself always draws one), with an all-zero label.

   Each broken copy keeps the clean subject's label (all zero for ``no_lesion``). The cohort is written once
   (quality_bench/cohort.json records how): a second call reuses it, so nothing is rerun;
2. writes <workdir>/quality_bench/config.yaml: the run's config plus a dataset ``quality_bench`` (generic, the
   cohort above, everything a test subject, ``models: [{model: <model>, trained_on: <source>}]``) and runs the
   repository's Snakefile on it with ``--rerun-triggers mtime`` (a finished run made by older code is not
   trained again) for both methods' quality tables, results/quality_bench/qc/<model>@<source>[+crf].csv, and
   evaluations, results/quality_bench/evaluation/<method>/per_subject.csv. The dataset's manifest (a checkpoint)
   is made first, then a dry run: the jobs it plans are printed, and the benchmark stops if it plans any
   training (train_model, sample_subject) unless --allow-training. The source's quality models
   (results/<source>/quality/<model>[+crf].yaml) are fitted first if the run has none;
3. prints per method: the subjects (clean / broken); the Spearman correlation between predicted and true Dice
   over the subject-region pairs and per region; the AUROC of the flag and of 1 - score for a failure (the
   subject's lowest true Dice over the regions < --fail-below, 0.5); the flag rate among clean and broken
   subjects; and one line per subject: its true Dice per region, score, flag and reasons.

A true Dice is NaN only for a subject without truth (the evaluation scores an empty truth and prediction as 1
and exactly one empty as 0, BraTS' convention); such pairs are left out of the correlations and the subject's
lowest Dice, and a subject with no true Dice at all is left out of the AUROCs (none here: every subject has a
label). Nothing is asserted.

    cd <finished run> && .venv/bin/python <repo>/bench/quality.py --workdir . [--configfile config/config.yaml]
        [--source demo] [--model deepmedic] [--clean 8] [--broken 4] [--cores 2]

The repository is the parent of this file's folder; Snakemake runs with this interpreter (``python -m
snakemake``) and the repository on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.stats import rankdata, spearmanr

REPO = Path(__file__).resolve().parent.parent
DATASET = "quality_bench"
CORRUPTIONS = ("noise", "bias", "ghosting", "swap", "no_lesion")
TRAINING_JOBS = ("train_model", "sample_subject")
"""Jobs a dry run must not plan: the finished run's training (and what feeds it) is reused as it is. (tune_crf
may run: the CRF is tuned again when the validation subjects' inference is redone for an output the run's code
did not write, the mutual information the quality model needs.)"""


# --------------------------------------------------------------------------------------------------------------
# Corruptions: each takes a subject's images (modality -> float32 (x, y, z) >= 0) and its head mask


def head_mask(tissue_fractions: Mapping[str, np.ndarray]) -> np.ndarray:
    """Voxels mostly inside the head (brain, CSF, skull, scalp, lesion): the simulation's fractions sum > 0.5."""
    return sum(tissue_fractions.values()) > 0.5


def gaussian_noise(image: np.ndarray, head: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` with its head replaced by Gaussian noise of the head's mean and standard deviation (clipped at
    0, as magnitude images are; this moves the mean and deviation by well under 1%)."""
    values = image[head]
    noisy = image.copy()
    noisy[head] = np.clip(rng.normal(values.mean(), values.std(), values.size), 0, None)
    return noisy


def ramp_bias(image: np.ndarray, head: np.ndarray, axis: int = 0, strength: float = 1.0) -> np.ndarray:
    """``image`` times exp(a linear ramp from -strength to +strength across the head's extent along ``axis``)
    (constant beyond it): a bias field far stronger and smoother than the generator's own (about +-20%)."""
    extent = np.flatnonzero(head.any(axis=tuple(a for a in range(head.ndim) if a != axis)))
    position = np.arange(head.shape[axis], dtype=np.float32)
    ramp = np.clip(2 * (position - extent[0]) / max(extent[-1] - extent[0], 1) - 1, -1, 1) * strength
    shape = [1] * image.ndim
    shape[axis] = -1
    return (image * np.exp(ramp).reshape(shape)).astype(np.float32)


def ghosts(image: np.ndarray, axis: int = 1, amplitude: float = 0.4, shift_fraction: float = 0.25) -> np.ndarray:
    """``image`` plus two copies of it shifted by +-``shift_fraction`` of the field of view along ``axis``
    (wrapped round), each at ``amplitude``: periodic motion ghosts along the phase-encoding direction."""
    shift = max(1, round(image.shape[axis] * shift_fraction))
    ghost = np.roll(image, shift, axis=axis) + np.roll(image, -shift, axis=axis)
    return (image + amplitude * ghost).astype(np.float32)


def swapped(images: Mapping[str, np.ndarray], first: str = "flair", second: str = "t1") -> dict[str, np.ndarray]:
    """The images with ``first`` and ``second`` exchanged (a mislabelled series)."""
    result = dict(images)
    result[first], result[second] = images[second], images[first]
    return result


def corrupt(corruption: str, images: Mapping[str, np.ndarray], head: np.ndarray,
            rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The images of a broken copy (not ``no_lesion``, which is drawn anew: :func:`lesion_free_subject`)."""
    per_image: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "bias": lambda image: ramp_bias(image, head),
        "ghosting": ghosts,
    }
    if corruption == "noise":
        return {**images, "flair": gaussian_noise(images["flair"], head, rng)}
    if corruption == "swap":
        return swapped(images)
    return {modality: per_image[corruption](image) for modality, image in images.items()}


def lesion_free_subject(kind: str, seed: int, index: int, spacing_mm: float):
    """Subject ``index`` of cohort ``seed`` as lesionseg.synthetic.simulate draws it, without its lesion: the
    same head (the anatomy is drawn first from the same random stream), contrasts and noise drawn afresh."""
    from lesionseg.synthetic.anatomy import random_anatomy
    from lesionseg.synthetic.contrast import render_images
    from lesionseg.synthetic.subject import MODALITIES, SyntheticSubject

    rng = np.random.default_rng([seed, index])
    anatomy, affine = random_anatomy(rng, spacing_mm)
    brain_mask = (anatomy.inside_skull > 0.5).astype(np.uint8)
    images = render_images(rng, anatomy.fractions, MODALITIES[kind], spacing_mm)
    label = np.zeros(brain_mask.shape, dtype=np.uint8)
    return SyntheticSubject(kind, images, label, brain_mask, affine), head_mask(anatomy.fractions)


# --------------------------------------------------------------------------------------------------------------
# The cohort, the config and the run


def subject_name(index: int, variant: str) -> str:
    return f"QB{index:03d}_{variant.replace('_', '-')}"


def variant_of(subject: str) -> str:
    return subject.split("_", 1)[1].replace("-", "_")


def write_subject(root: Path, name: str, images: Mapping[str, np.ndarray], label: np.ndarray,
                  brain_mask: np.ndarray, affine: np.ndarray) -> None:
    from lesionseg.io import write_nifti

    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for modality, image in images.items():
        write_nifti(folder / f"{name}_{modality}.nii.gz", image, affine, np.float32)
    write_nifti(folder / f"{name}_seg.nii.gz", label, affine, np.uint8)
    write_nifti(folder / f"{name}_brainmask.nii.gz", brain_mask, affine, np.uint8)


def write_cohort(bench: Path, kind: str, seed: int, spacing_mm: float, n_clean: int, n_broken: int) -> list[str]:
    """Write (or reuse) the cohort below ``bench``/data; its subjects' names."""
    from lesionseg.synthetic.subject import simulate

    recipe = {"kind": kind, "seed": seed, "spacing_mm": spacing_mm, "clean": n_clean, "broken": n_broken,
              "corruptions": list(CORRUPTIONS)}
    names = [subject_name(i, "clean") for i in range(n_clean)]
    names += [subject_name(i, c) for i in range(min(n_broken, n_clean)) for c in CORRUPTIONS]
    stamp, root = bench / "cohort.json", bench / "data"
    if stamp.is_file() and json.loads(stamp.read_text()) == recipe:
        print(f"cohort: reusing {root} ({len(names)} subjects)")
        return names
    if root.exists():
        raise SystemExit(f"{root} holds another cohort than {stamp} describes: remove {bench} first")
    start = time.perf_counter()
    for index in range(n_clean):
        simulation = simulate(kind, seed, index, spacing_mm)
        subject = simulation.subject
        write_subject(root, subject_name(index, "clean"), subject.images, subject.label, subject.brain_mask,
                      subject.affine)
        if index >= n_broken:
            continue
        head = head_mask(simulation.tissue_fractions)
        rng = np.random.default_rng([seed, index, 1])
        for corruption in CORRUPTIONS:
            if corruption == "no_lesion":
                free, _ = lesion_free_subject(kind, seed, index, spacing_mm)
                write_subject(root, subject_name(index, corruption), free.images, free.label, free.brain_mask,
                              free.affine)
            else:
                write_subject(root, subject_name(index, corruption), corrupt(corruption, subject.images, head, rng),
                              subject.label, subject.brain_mask, subject.affine)
    stamp.write_text(json.dumps(recipe, indent=1))
    print(f"cohort: {len(names)} subjects written below {root} in {time.perf_counter() - start:.0f} s")
    return names


def bench_config(run_config: Mapping, bench: Path, kind: str, model: str, source: str) -> dict:
    """The run's config plus the dataset ``quality_bench``: the cohort, every subject a test subject."""
    from lesionseg.datasets import SYNTHETIC_KINDS

    spec = SYNTHETIC_KINDS[kind]
    config = copy.deepcopy(dict(run_config))
    config["datasets"] = {**config["datasets"], DATASET: {
        "format": "generic",
        "root": str(bench / "data"),
        "images": "{subject}/{subject}_{modality}.nii.gz",
        "label": "{subject}/{subject}_seg.nii.gz",
        "mask": "{subject}/{subject}_brainmask.nii.gz",
        "modalities": list(spec["modalities"]),
        "labels": spec["labels"],
        "split": {"train": 0, "val": 0, "test": 1.0},
        "models": [{"model": model, "trained_on": source}],
    }}
    return config


def snakemake(workdir: Path, configfile: Path, cores: int, targets: Sequence[str], *extra: str,
              log: Path | None = None) -> subprocess.CompletedProcess:
    # The targets before the options: --rerun-triggers (and --configfile) take every word up to the next option.
    command = [sys.executable, "-m", "snakemake", *targets, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(configfile), "--cores", str(cores), *extra, "--rerun-triggers", "mtime"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    if log is None:
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    with open(log, "w") as stream:
        result = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, text=True, env=env, cwd=workdir)
    return subprocess.CompletedProcess(command, result.returncode, "", log.read_text())


def jobs_planned(stdout: str) -> dict[str, int]:
    """Job counts of a dry run's 'Job stats' table ({} when there is nothing to do)."""
    table = stdout.split("Job stats:", 1)[1] if "Job stats:" in stdout else ""
    counts = {}
    for line in table.splitlines():
        parts = line.split()
        if parts[:1] == ["total"]:
            break
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def plan_and_run(step: str, workdir: Path, configfile: Path, cores: int, targets: Sequence[str], log: Path,
                 allow_training: bool) -> None:
    """A dry run for ``targets``, its plan printed; stop if it fails or plans training (:data:`TRAINING_JOBS`,
    unless ``allow_training``); else make them, the end of Snakemake's log printed if that fails."""
    dry = snakemake(workdir, configfile, cores, targets, "-n")
    if dry.returncode != 0:
        print(f"{step}: snakemake -n failed ({dry.returncode}):\n{tail(dry.stderr)}")
        raise SystemExit(1)
    planned = jobs_planned(dry.stdout)
    print(f"{step}: the dry run plans " + (", ".join(f"{job} {n}" for job, n in planned.items()) or "nothing"))
    training = {job: planned[job] for job in TRAINING_JOBS if job in planned}
    if training and not allow_training:
        reasons = [line.strip() for line in dry.stdout.splitlines() if line.strip().startswith("reason:")]
        print(f"{step}: the dry run plans training ({training}): stopping (--allow-training to go on). Reasons:\n"
              + "\n".join(sorted(set(reasons))[:20]))
        raise SystemExit(1)
    if not planned:
        return
    start = time.perf_counter()
    result = snakemake(workdir, configfile, cores, targets, log=log)
    if result.returncode != 0:
        print(f"{step}: snakemake failed ({result.returncode}), the end of {log}:\n{tail(result.stderr, 60)}")
        raise SystemExit(1)
    print(f"{step}: {sum(planned.values())} jobs in {time.perf_counter() - start:.0f} s")


# --------------------------------------------------------------------------------------------------------------
# Measures


def auroc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve of ``scores`` for ``positive`` (higher = more likely positive), from the ranks:
    the chance that a random positive outscores a random negative, ties counted half. NaN without both kinds."""
    scores, positive = np.asarray(scores, dtype=float), np.asarray(positive, dtype=bool)
    n_positive, n_negative = int(positive.sum()), int((~positive).sum())
    if not n_positive or not n_negative:
        return math.nan
    ranks = rankdata(scores)  # average ranks: a tie between a positive and a negative counts half
    return float((ranks[positive].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def spearman(x: Sequence[float], y: Sequence[float]) -> str:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return f"n/a (n={len(x)})"
    rho, p = spearmanr(x, y)
    return f"{rho:+.3f} (p={p:.2g}, n={len(x)})"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[c])) for row in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        print("  " + "  ".join(f"{str(cell):<{width}}" for cell, width in zip(row, widths)).rstrip())


def report(method: str, qc: pd.DataFrame, evaluation: pd.DataFrame, fail_below: float) -> None:
    """Print one method's measures (see the module's description)."""
    regions = [c.removeprefix("predicted_dice_") for c in qc.columns if c.startswith("predicted_dice_")]
    true = evaluation.pivot(index="subject", columns="region", values="dice")
    qc = qc.set_index("subject").sort_index()
    subjects = [s for s in qc.index if s in true.index]
    missing = sorted(set(qc.index) ^ set(true.index))
    qc, true = qc.loc[subjects], true.loc[subjects, regions]
    variant = pd.Series({s: variant_of(s) for s in subjects})
    broken = variant != "clean"
    print(f"\n=== {method}: {len(subjects)} subjects ({int((~broken).sum())} clean, {int(broken.sum())} broken"
          + (f"; in one table only, left out: {', '.join(missing)}" if missing else "") + ")")

    pairs = [(qc.at[s, f"predicted_dice_{r}"], true.at[s, r], r) for s in subjects for r in regions
             if not math.isnan(true.at[s, r])]
    nan_pairs = len(subjects) * len(regions) - len(pairs)
    left_out = f"; {nan_pairs} NaN left out" if nan_pairs else ""
    print(f"Spearman, predicted vs true Dice (subject-region pairs{left_out}):")
    rows = [["all", spearman([p for p, _, _ in pairs], [t for _, t, _ in pairs])]]
    for region in regions:
        chosen = [(p, t) for p, t, r in pairs if r == region]
        rows.append([region, spearman([p for p, _ in chosen], [t for _, t in chosen])])
    clean_pairs = [(qc.at[s, f"predicted_dice_{r}"], true.at[s, r]) for s in subjects if not broken[s]
                   for r in regions if not math.isnan(true.at[s, r])]
    rows.append(["all, clean only", spearman([p for p, _ in clean_pairs], [t for _, t in clean_pairs])])
    print_table(["region", "rho"], rows)

    lowest = true.min(axis=1, skipna=True)
    scored = lowest.notna()
    failed = lowest < fail_below
    flagged = qc["flagged"].astype(str).str.lower().eq("true")
    print(f"Failure = lowest true Dice over the regions < {fail_below}: {int(failed[scored].sum())} of "
          f"{int(scored.sum())} subjects ({int(failed[~broken & scored].sum())} clean, "
          f"{int(failed[broken & scored].sum())} broken)")
    print_table(["detector", "AUROC"], [
        ["flagged", f"{auroc(flagged[scored].astype(float), failed[scored]):.3f}"],
        ["1 - score", f"{auroc(1 - qc['score'][scored], failed[scored]):.3f}"],
    ])
    print_table(["subjects", "flagged", "failed"], [
        [name, f"{int(flagged[group].sum())}/{int(group.sum())} ({flagged[group].mean():.0%})",
         f"{int(failed[group].sum())}/{int(group.sum())}"]
        for name, group in (("clean", ~broken), ("broken", broken),
                            *((c, variant == c) for c in CORRUPTIONS if (variant == c).any()))
    ])
    print("Per subject (true Dice per region, score = lowest predicted Dice):")
    order = sorted(subjects, key=lambda s: (variant[s] != "clean", CORRUPTIONS.index(variant[s])
                                            if variant[s] in CORRUPTIONS else -1, s))
    print_table(["subject", "corruption", *[f"dice_{r}" for r in regions], "score", "flagged", "reasons"], [
        [s, variant[s], *[f"{true.at[s, r]:.3f}" for r in regions], f"{qc.at[s, 'score']:.3f}",
         "yes" if flagged[s] else "no", qc.at[s, "reasons"] if isinstance(qc.at[s, "reasons"], str) else ""]
        for s in order
    ])


# --------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("."), help="the finished run's directory")
    parser.add_argument("--configfile", type=Path, default=None,
                        help="the run's config (default: config/config.yaml of the run, else of the repository)")
    parser.add_argument("--source", default="demo", help="the synthetic dataset the network was trained on")
    parser.add_argument("--model", default="deepmedic")
    parser.add_argument("--clean", type=int, default=8, help="clean held-out subjects")
    parser.add_argument("--broken", type=int, default=4, help="clean subjects with a broken copy per corruption")
    parser.add_argument("--seed", type=int, default=None, help="the cohort's seed (default: the source's + 1)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--fail-below", type=float, default=0.5, help="a failure: lowest true Dice below this")
    parser.add_argument("--allow-training", action="store_true", help="go on even if the dry run plans training")
    args = parser.parse_args()

    workdir = args.workdir.resolve()
    configfile = args.configfile
    if configfile is None:
        configfile = next((p for p in (workdir / "config/config.yaml", REPO / "config/config.yaml") if p.is_file()),
                          REPO / "config/config.yaml")
    elif not configfile.is_absolute():
        configfile = workdir / configfile if (workdir / configfile).is_file() else REPO / configfile
    bench = workdir / "quality_bench"
    if bench.resolve().is_relative_to(REPO):
        parser.error(f"the cohort would go inside the repository ({bench}): run it in a run's own directory")
    run_config = yaml.safe_load(configfile.read_text())
    source = run_config.get("datasets", {}).get(args.source)
    if not source or source.get("format") != "synthetic":
        parser.error(f"{configfile} has no synthetic dataset {args.source!r}")
    synthetic = source["synthetic"]
    kind, spacing = synthetic.get("kind", "tumor"), float(synthetic.get("spacing_mm", 2.0))
    seed = int(synthetic.get("seed", 0)) + 1 if args.seed is None else args.seed
    if seed == int(synthetic.get("seed", 0)):
        parser.error(f"--seed {seed} is the source's: the cohort would repeat its subjects")
    models = sorted((workdir / "results" / args.source / "models" / args.model).glob("phase*/model.pt"))
    if not models:
        parser.error(f"no trained {args.model} in {workdir / 'results' / args.source / 'models' / args.model}")
    print(f"run {workdir}, config {configfile}; {args.model} trained on {args.source} "
          f"({', '.join(str(m.relative_to(workdir)) for m in models)})")
    print(f"cohort: {kind}, seed {seed} (the source's is {synthetic.get('seed', 0)}), {spacing:g} mm, "
          f"{args.clean} clean + {min(args.broken, args.clean)} x {len(CORRUPTIONS)} broken ({', '.join(CORRUPTIONS)})")

    bench.mkdir(exist_ok=True)
    subjects = write_cohort(bench, kind, seed, spacing, args.clean, args.broken)
    config_path = bench / "config.yaml"
    config_text = yaml.safe_dump(bench_config(run_config, bench, kind, args.model, args.source), sort_keys=False)
    if not config_path.is_file() or config_path.read_text() != config_text:
        config_path.write_text(config_text)
    methods = [f"{args.model}@{args.source}", f"{args.model}@{args.source}+crf"]
    targets = [f"results/{DATASET}/qc/{m}.csv" for m in methods]
    targets += [f"results/{DATASET}/evaluation/{m}/per_subject.csv" for m in methods]

    # Three steps, each planned by a dry run first: the dataset's manifest (a checkpoint: only then does a dry run
    # see every job), the source's quality models (in one DAG with the targets, Snakemake 9 fails on
    # fit_quality_model's resources: "'InputFiles' object has no attribute 'probabilities'"), the targets.
    source_models = [f"results/{args.source}/quality/{args.model}{suffix}.yaml" for suffix in ("", "+crf")]
    for step, step_targets in (("manifest", [f"results/{DATASET}/subjects.tsv"]),
                               ("quality models", source_models), ("benchmark", targets)):
        log = bench / f"snakemake_{step.replace(' ', '_')}.log"
        plan_and_run(step, workdir, config_path, args.cores, step_targets, log, args.allow_training)

    results = workdir / "results" / DATASET
    for method in methods:
        qc = pd.read_csv(results / "qc" / f"{method}.csv")
        evaluation = pd.read_csv(results / "evaluation" / method / "per_subject.csv")
        unknown = sorted(set(qc["subject"]) - set(subjects))
        if unknown:
            print(f"{method}: subjects not in the cohort, left out: {', '.join(unknown)}")
            qc = qc[qc["subject"].isin(subjects)]
        report(method, qc, evaluation[evaluation["subject"].isin(subjects)], args.fail_below)
    model_file = workdir / "results" / args.source / "quality" / f"{args.model}.yaml"
    print(f"\nquality models: results/{args.source}/quality/<method>.yaml"
          + (f" ({model_file.name}: fitted on {len(yaml.safe_load(model_file.read_text())['validation_subjects'])}"
             " validation subjects)" if model_file.is_file() else ""))


if __name__ == "__main__":
    main()
