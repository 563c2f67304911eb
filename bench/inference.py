"""Dense inference against classifying voxels one patch at a time, on a BraTS-sized volume.

Both methods run the same network (the paper's DeepMedic from the model
registry, random weights, eval mode) on the same volume: 4 channels of
--shape voxels (default 240 x 240 x 155, BraTS at 1 mm) with a brain-shaped
ellipsoid mask. Each method runs in its own subprocess, so that its peak
memory (max RSS) is its own; the increase over the RSS before the method ran
(volume and model built) is reported too. Then side by side:

- dense: ``predict_volume`` over the brain, tile side chosen automatically for
  --memory-budget-mb and --batch tiles per forward pass;
- per patch: the network on single-voxel patches (the input each voxel needs,
  output 1^3), --patch-batch patches per forward pass, timed on --patches random
  brain voxels (after one warm-up batch) and extrapolated to the brain.

Voxels per second count brain voxels (dense: also bounding-box voxels). Only
times are printed; nothing is asserted.

    .venv/bin/python bench/inference.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

# The brain's semi-axes as fractions of a 240 x 240 x 155 BraTS volume: 140 x 170 x 130 mm.
BRAIN_SEMI_AXES = (70 / 240, 85 / 240, 65 / 155)


def brain_volume(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random 4-channel float32 image and an ellipsoid brain mask filling it as a brain fills BraTS's grid."""
    image = np.random.default_rng(seed).standard_normal((4, *shape), dtype=np.float32)
    axes = np.ogrid[tuple(slice(0, n) for n in shape)]
    mask = sum(((a - (n - 1) / 2) / (f * n)) ** 2 for a, n, f in zip(axes, shape, BRAIN_SEMI_AXES)) <= 1
    return image, mask


def paper_deepmedic() -> torch.nn.Module:
    from lesionseg.models import build_model

    torch.manual_seed(0)
    return build_model("deepmedic", in_channels=4, n_classes=5).eval()


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def run_dense(args: argparse.Namespace, model: torch.nn.Module, image: np.ndarray, mask: np.ndarray) -> dict:
    from lesionseg.inference.dense import estimate_memory, plan_tiles, predict_volume

    cpu = torch.device("cpu")
    plan = plan_tiles(model, mask, image.shape[0], cpu, None, args.batch, args.memory_budget_mb)
    start = time.perf_counter()
    predict_volume(model, image, mask, cpu, tile_output=None, batch_size=args.batch,
                   memory_budget_mb=args.memory_budget_mb, progress=args.progress)
    seconds = time.perf_counter() - start
    estimate = estimate_memory(model, image.shape[0], plan.size, args.batch)
    return {"seconds": seconds, "tile": plan.size, "input": [model.input_size(s) for s in plan.size],
            "tiles": len(plan.regions), "estimate_mb": estimate / 2**20}


def run_patches(args: argparse.Namespace, model: torch.nn.Module, image: np.ndarray, mask: np.ndarray) -> dict:
    margin = model.margin
    side = model.input_size(1)
    # Padding once is set-up a patch classifier amortises over a volume: not timed.
    padded = np.pad(image, [(0, 0)] + [(margin, margin)] * 3, mode="reflect")
    brain = np.argwhere(mask)
    voxels = brain[np.random.default_rng(1).choice(len(brain), args.patches + args.patch_batch, replace=False)]
    batch = np.empty((args.patch_batch, image.shape[0], side, side, side), dtype=np.float32)

    def classify(centres: np.ndarray) -> None:
        for i, (x, y, z) in enumerate(centres):
            batch[i] = padded[:, x:x + side, y:y + side, z:z + side]  # the voxel's patch, centred on it
        with torch.inference_mode():
            torch.softmax(model(torch.from_numpy(batch[:len(centres)])), dim=1)

    classify(voxels[:args.patch_batch])  # warm-up: the first pass sets up the convolution kernels
    start = time.perf_counter()
    for first in range(args.patch_batch, len(voxels), args.patch_batch):
        classify(voxels[first:first + args.patch_batch])
    return {"seconds": time.perf_counter() - start, "input": side, "timed": args.patches}


def worker(args: argparse.Namespace) -> None:
    """One method in this process; prints its measures as one JSON line."""
    torch.set_num_threads(args.threads)
    image, mask = brain_volume(tuple(args.shape))
    model = paper_deepmedic()
    before = max_rss_mb()
    result = (run_dense if args.method == "dense" else run_patches)(args, model, image, mask)
    print(json.dumps({**result, "rss_before_mb": before, "rss_peak_mb": max_rss_mb()}))


def measure(method: str, huge_pages: bool) -> dict:
    command = [sys.executable, __file__, "--method", method, *sys.argv[1:]]
    # PyTorch reads this once, at its first allocation: it must be in the worker's environment from the start.
    environment = {**os.environ, "THP_MEM_ALLOC_ENABLE": "1"} if huge_pages else None
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, env=environment)
    return json.loads(completed.stdout.splitlines()[-1])


def _memory(measures: dict) -> tuple[str, str]:
    """Peak RSS of the method's process, and its increase while the method ran."""
    return f"{measures['rss_peak_mb']:,.0f} MB", f"{measures['rss_peak_mb'] - measures['rss_before_mb']:,.0f} MB"


def report(args: argparse.Namespace, dense: dict, patches: dict) -> None:
    _, mask = brain_volume(tuple(args.shape))
    n_brain = int(mask.sum())
    nonzero = np.argwhere(mask)
    box = nonzero.max(axis=0) - nonzero.min(axis=0) + 1
    n_box = int(np.prod(box))
    dense_rate = n_brain / dense["seconds"]
    patch_rate = patches["timed"] / patches["seconds"]
    patch_seconds = n_brain / patch_rate
    shape = " x ".join(map(str, args.shape))
    pages = ", huge pages" if args.huge_pages else ""
    print(f"DeepMedic (paper configuration, random weights) on 4 x {shape} voxels, {args.threads} threads{pages}")
    print(f"brain: {n_brain:,} voxels; its bounding box {' x '.join(map(str, box))} = {n_box:,} voxels")
    print(f"dense: tiles of {' x '.join(map(str, dense['tile']))} output voxels (input "
          f"{' x '.join(map(str, dense['input']))}), chosen for a {args.memory_budget_mb} MB budget with batch "
          f"{args.batch}; {dense['tiles']} tiles hold brain; estimated batch peak {dense['estimate_mb']:.0f} MB")
    print(f"per patch: input {patches['input']}^3 -> output 1^3, batch {args.patch_batch}, "
          f"{patches['timed']} brain voxels timed")
    print()
    header = ("method", "brain vox/s", "box vox/s", "brain time", "peak RSS", "RSS increase")
    rows = [
        ("dense", f"{dense_rate:,.0f}", f"{n_box / dense['seconds']:,.0f}", f"{dense['seconds']:,.0f} s measured",
         *_memory(dense)),
        ("per patch", f"{patch_rate:,.1f}", "-", f"{patch_seconds:,.0f} s extrapolated", *_memory(patches)),
    ]
    for row in (header, *rows):
        print(f"{row[0]:<11}" + "".join(f"{cell:>{width}}" for cell, width in zip(row[1:], (13, 11, 24, 11, 14))))
    print()
    print(f"dense is {dense_rate / patch_rate:,.0f}x faster per brain voxel "
          f"({dense['seconds']:.0f} s measured vs {patch_seconds / 3600:.1f} h extrapolated for the brain)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155], metavar=("X", "Y", "Z"))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--patches", type=int, default=320, help="brain voxels classified one patch each")
    parser.add_argument("--patch-batch", type=int, default=64, help="patches per forward pass")
    parser.add_argument("--batch", type=int, default=2, help="dense tiles per forward pass")
    parser.add_argument("--memory-budget-mb", type=int, default=2048, help="memory one dense batch may use")
    parser.add_argument("--progress", action="store_true", help="progress bar of the dense pass on stderr")
    parser.add_argument("--huge-pages", action="store_true",
                        help="PyTorch CPU allocations on transparent huge pages (THP_MEM_ALLOC_ENABLE=1): "
                             "fewer page faults for the large activations")
    parser.add_argument("--method", choices=["dense", "patch"], help=argparse.SUPPRESS)  # a worker subprocess
    args = parser.parse_args()
    if args.method:
        worker(args)
        return
    dense = measure("dense", args.huge_pages)
    patches = measure("patch", args.huge_pages)
    report(args, dense, patches)


if __name__ == "__main__":
    main()
