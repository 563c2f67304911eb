"""Dense CRF on a BraTS-sized volume: lesionseg's (numba, torch) against pydensecrf2 (Krähenbühl's densecrf).

Builds a synthetic 1 mm subject, 240x240x155 with 4 z-scored modalities
(smooth anatomy, bias field, noise and a lesion), 5 classes of plausible noisy
network probabilities and a brain-shaped mask, then runs both CRFs side by
side on the same input (the brain's bounding box), with DeepMedic's
parameters and 5 iterations: ours as the pipeline runs it (rule crf) using
--threads threads, pydensecrf2 single-threaded (it has no threading). Each
runs in its own process (like a Snakemake job: ours loads its compiled code
from numba's cache), which reports its wall time and peak memory (maximum
resident set size, the loaded inputs included). Prints both, the speed-up,
the lattice build's share of our time and how well the labels and marginals
agree; then ours once more with the box's voxels outside the mask left out of
the CRF (optional: faster, agrees less).

    .venv/bin/python bench/crf.py [--threads 2] [--shape 240 240 155] [--no-exclude]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

CLASSES = ("background", "necrosis", "edema", "non-enhancing", "enhancing")


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Unit-variance random field smooth over ~sigma voxels (filtered at a coarse scale, then interpolated)."""
    factor = max(1, int(sigma // 2))
    coarse = tuple(-(-n // factor) + 1 for n in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(coarse), sigma / factor, mode="wrap")
    field = ndimage.zoom(field, [n / c for n, c in zip(shape, coarse, strict=True)], order=1)[
        tuple(slice(0, n) for n in shape)]
    return ((field - field.mean()) / field.std()).astype(np.float32)


def synthetic_subject(shape: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    """Probabilities (5, *shape), images (4, *shape), brain mask and truth of a synthetic lesion subject."""
    rng = np.random.default_rng(seed)
    axes = [np.arange(n, dtype=np.float32) - n / 2 for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    scale = np.array(shape) / np.array([240, 240, 155])
    radius = np.array([70.0, 85.0, 65.0]) * scale
    brain = (x / radius[0]) ** 2 + (y / radius[1]) ** 2 + (z / radius[2]) ** 2 \
        + 0.05 * smooth_field(rng, shape, 12) < 1
    # Tissue: CSF / grey / white matter from a smooth field, ventricles near the centre.
    tissue = np.digitize(smooth_field(rng, shape, 3), [-0.8, 0.3])
    tissue[(x / (12 * scale[0])) ** 2 + (y / (25 * scale[1])) ** 2 + (z / (10 * scale[2])) ** 2 < 1] = 0
    # Lesion: nested, irregular regions.
    centre = np.array([25.0, -20.0, 10.0]) * scale
    lesion = ((x - centre[0]) / (24 * scale[0])) ** 2 + ((y - centre[1]) / (20 * scale[1])) ** 2 \
        + ((z - centre[2]) / (18 * scale[2])) ** 2 + 0.25 * smooth_field(rng, shape, 4)
    truth = np.zeros(shape, dtype=np.int64)
    for label, threshold in ((2, 1.0), (4, 0.45), (1, 0.25), (3, 0.1)):
        truth[(lesion < threshold) & brain] = label
    # Modalities: tissue and lesion contrasts, bias field, noise; z-scored in the brain, 0 outside.
    tissue_contrast = rng.uniform(-1.5, 1.5, size=(4, 3))
    lesion_contrast = rng.uniform(-2.0, 2.0, size=(4, 5))
    images = np.zeros((4,) + shape, dtype=np.float32)
    for m in range(4):
        image = tissue_contrast[m, tissue] + np.where(truth > 0, lesion_contrast[m, truth], 0.0)
        image = image * (1 + 0.1 * smooth_field(rng, shape, 30)) + 0.25 * rng.standard_normal(shape)
        values = image[brain]
        images[m] = np.where(brain, (image - values.mean()) / values.std(), 0.0)
    # Network probabilities: right class favoured, with voxel and regional errors.
    logits = 2.5 * np.moveaxis(np.eye(5, dtype=np.float32)[truth], -1, 0)
    logits += 1.2 * rng.standard_normal(logits.shape).astype(np.float32)
    for c in range(5):
        logits[c] += 0.8 * smooth_field(rng, shape, 3)
    logits[0][~brain] += 8.0
    probabilities = np.exp(logits - logits.max(axis=0))
    probabilities /= probabilities.sum(axis=0)
    return {"probabilities": probabilities.astype(np.float32), "images": images, "mask": brain, "truth": truth}


def bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    return tuple(slice(int(s.start), int(s.stop)) for s in ndimage.find_objects(mask.astype(np.uint8))[0])


def rss_gb() -> float:
    """Current resident set size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1e6
    return float("nan")


def run_ours(data: dict[str, np.ndarray], threads: int, exclude: bool) -> tuple[np.ndarray, dict[str, float]]:
    """lesionseg's CRF as the pipeline runs it (rule crf: ``dense_crf`` with the brain mask, its defaults), through
    :class:`MeanFieldCRF` (what ``dense_crf`` runs) for its build times; ``exclude``: outside-mask voxels left
    out."""
    import logging

    import torch

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

    from lesionseg.crf import CRFParameters, MeanFieldCRF

    torch.set_num_threads(threads)
    box = (slice(None),) + bounding_box(data["mask"])
    started = time.perf_counter()
    crf = MeanFieldCRF(data["probabilities"], data["images"], (1.0, 1.0, 1.0), CRFParameters(), mask=data["mask"],
                       exclude_outside_mask=exclude)
    marginals = crf.marginals(CRFParameters())
    return marginals[box], {"crf_seconds": time.perf_counter() - started, "lattice_seconds": crf.lattice_seconds,
                            "kernel_seconds": crf.build_seconds}


def run_reference(data: dict[str, np.ndarray]) -> np.ndarray:
    """pydensecrf2 on the brain box, features exactly as lesionseg builds them (DeepMedic's parameters)."""
    import pydensecrf.densecrf as densecrf

    box = bounding_box(data["mask"])
    probabilities = data["probabilities"][(slice(None),) + box]
    images = data["images"][(slice(None),) + box]
    n_classes, shape = probabilities.shape[0], probabilities.shape[1:]
    unary = -np.log(np.clip(probabilities, 1e-8, None)).reshape(n_classes, -1)
    index = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")).reshape(3, -1)
    intensity = (np.clip(images.reshape(4, -1), -3.1, 3.1) + np.float32(3.1)) * np.float32(255 / 6.2)
    crf = densecrf.DenseCRF(int(np.prod(shape)), n_classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseEnergy(np.ascontiguousarray(index / np.float32(3.0)), compat=3.0)
    crf.addPairwiseEnergy(np.ascontiguousarray(np.concatenate([index / np.float32(5.0), intensity / np.float32(3.0)])),
                          compat=5.0)
    return np.asarray(crf.inference(5), dtype=np.float32).reshape(probabilities.shape)


def child(args: argparse.Namespace) -> None:
    """Run one implementation on the saved input; report wall time and memory as JSON on stdout."""
    with np.load(args.input) as stored:
        data = {key: stored[key] for key in stored.files}
    if args.run == "reference":  # imports are not timed
        import pydensecrf.densecrf  # noqa: F401
    else:
        import lesionseg.crf  # noqa: F401
    before = rss_gb()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    if args.run == "reference":
        marginals = run_reference(data)
    else:
        marginals, timings = run_ours(data, args.threads, exclude=args.run == "ours-exclude")
    seconds = time.perf_counter() - started
    np.save(args.output, marginals)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB -> GB
    print(json.dumps({"seconds": seconds, "peak_gb": peak, "inputs_gb": before, **timings}))


def launch(run: str, input_path: Path, output_path: Path, threads: int) -> dict[str, float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    result = subprocess.run([sys.executable, __file__, "--run", run, "--input", str(input_path), "--output",
                             str(output_path), "--threads", str(threads)], env=env, check=True,
                            capture_output=True, text=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["log"] = [line for line in result.stderr.splitlines() if line.startswith("dense CRF")]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for lesionseg's CRF")
    parser.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155], help="volume size (1 mm voxels)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-exclude", action="store_true",
                        help="skip the extra run with voxels outside the mask left out")
    parser.add_argument("--run", choices=["ours", "ours-exclude", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        child(args)
        return

    shape = tuple(args.shape)
    started = time.perf_counter()
    data = synthetic_subject(shape, args.seed)
    box = bounding_box(data["mask"])
    box_shape = tuple(s.stop - s.start for s in box)
    in_mask = data["mask"][box]
    print(f"synthetic subject {'x'.join(map(str, shape))} at 1 mm, 4 modalities, {len(CLASSES)} classes "
          f"(made in {time.perf_counter() - started:.1f} s); brain box {'x'.join(map(str, box_shape))} = "
          f"{in_mask.size} voxels, {int(in_mask.sum())} in the mask")
    print("CRF: DeepMedic's parameters (smoothness 3 mm, weight 3; appearance 5 mm and intensity 3/255, weight 5), "
          "5 iterations, on the brain box")
    runs = [("ours", f"lesionseg (numba and torch, {args.threads} threads)"),
            ("reference", "pydensecrf2 (single-threaded: it has no threading)")]
    if not args.no_exclude:
        runs.append(("ours-exclude", f"lesionseg, outside-mask voxels left out ({args.threads} threads)"))
    results, marginals = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        input_path = Path(tmp) / "input.npz"
        np.savez(input_path, **data)
        for run, _ in runs:
            output_path = Path(tmp) / f"{run}.npy"
            results[run] = launch(run, input_path, output_path, args.threads)
            marginals[run] = np.load(output_path)
    network = data["probabilities"][(slice(None),) + box].argmax(axis=0)
    reference = marginals["reference"]
    print(f"\n{'implementation':<64} {'wall s':>8} {'peak RSS GB':>12} {'inputs GB':>10}")
    for run, label in runs:
        r = results[run]
        print(f"{label:<64} {r['seconds']:8.2f} {r['peak_gb']:12.2f} {r['inputs_gb']:10.2f}")
    print("(peak RSS: maximum resident set size of the process running the CRF, its loaded inputs included)")
    for run, label in runs:
        for line in results[run]["log"]:
            print(f"{label}: {line}")
    ours = marginals["ours"]
    print(f"\nspeed-up: {results['reference']['seconds'] / results['ours']['seconds']:.2f}x "
          f"(pydensecrf2 {results['reference']['seconds']:.2f} s / lesionseg {results['ours']['seconds']:.2f} s)")
    r = results["ours"]
    print(f"build share: lattices built in {r['lattice_seconds']:.2f} s of the CRF's {r['crf_seconds']:.2f} s = "
          f"{100 * r['lattice_seconds'] / r['crf_seconds']:.1f}% (kernels with their normalisation "
          f"{r['kernel_seconds']:.2f} s; the rest: mean-field iterations, inputs, loading the compiled code)")
    labels, reference_labels = ours.argmax(axis=0), reference.argmax(axis=0)
    difference = np.abs(ours - reference)
    print(f"labels agree on {100 * np.mean(labels == reference_labels):.4f}% of the box's voxels "
          f"({100 * np.mean(labels[in_mask] == reference_labels[in_mask]):.4f}% in the mask); "
          f"marginals: mean abs difference {difference.mean():.2e}, max {difference.max():.2e}")
    print(f"the CRF changes {100 * np.mean(reference.argmax(axis=0)[in_mask] != network[in_mask]):.2f}% of the "
          "network's labels in the mask")
    if "ours-exclude" in marginals:
        excluded = marginals["ours-exclude"]
        speed_up = results["reference"]["seconds"] / results["ours-exclude"]["seconds"]
        print(f"outside-mask voxels left out: {speed_up:.2f}x faster than pydensecrf2; labels agree with it on "
              f"{100 * np.mean(excluded.argmax(axis=0)[in_mask] == reference_labels[in_mask]):.4f}% of the "
              "mask's voxels")


if __name__ == "__main__":
    main()
