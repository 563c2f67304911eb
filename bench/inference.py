"""Dense inference against classifying voxels one patch at a time, on a BraTS-sized volume, and the dense
pass's arithmetic rate against the machine's best float32 matrix product.

Both methods run the same network (the paper's DeepMedic from the model
registry, random weights, eval mode) on the same volume: 4 channels of
--shape voxels (default 240 x 240 x 155, BraTS at 1 mm) with a brain-shaped
ellipsoid mask. Each method runs in its own subprocess, so that its peak
memory (max RSS) is its own; the increase over the RSS before the method ran
(volume and model built) is reported too. Then side by side:

- dense: ``predict_volume`` over the brain, tile side chosen automatically for
  --memory-budget-mb and --batch tiles per forward pass (on the CPU: one tile
  per pass), the network as its inference-time copy (--as-trained: the
  module as it is);
- per patch: the network on single-voxel patches (the input each voxel needs,
  output 1^3), --patch-batch patches per forward pass, timed on --patches random
  brain voxels (after one warm-up batch) and extrapolated to the brain
  (--skip-patches: not run).

Voxels per second count brain voxels (dense: also bounding-box voxels).

The rate: the network's useful arithmetic per output voxel (the marginal
FLOPs of a larger tile, counted by ``torch.utils.flop_counter.FlopCounterMode``
on shape-only tensors: the cubic term of the FLOPs of cubic tiles, so that no
tile context counts) times the brain's bounding-box voxels (the output voxels
the dense pass must predict), over the dense pass's time, against the best
rate of numpy's and torch's 3072 x 3072 float32 matrix products on the same
threads (best of a few repeats, in their own subprocess before and after the
dense pass). Only measures are printed; nothing is asserted.

    .venv/bin/python bench/inference.py --threads 2
"""

from __future__ import annotations

import argparse
import copy
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
# Two tile sides whose FLOPs' difference per output voxel is printed beside the context-free count.
TWO_TILES = (12, 24)


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


def cpu_seconds() -> float:
    """CPU time of this process, all its threads, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def useful_flops_per_voxel(model: torch.nn.Module) -> float:
    """The network's FLOPs per output voxel without tile context: the cubic term of the FLOPs of cubic tiles.

    The FLOPs of a tile of side ``o`` (a multiple of the model's grid) are a
    cubic in ``o``: every layer's output box is ``o`` plus a fixed context per
    axis. Their third difference at four sides one grid step apart is ``6 g^3``
    times the cubic term.
    """
    grid = model.grid
    flops = [tile_flops(model, (steps * grid,) * 3) for steps in (1, 2, 3, 4)]
    return (flops[3] - 3 * flops[2] + 3 * flops[1] - flops[0]) / (6 * grid**3)


def tile_flops(model: torch.nn.Module, output_size: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on a tile of ``output_size`` output voxels, counted on shape-only tensors."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta")
    inputs = torch.empty((1, model.in_channels, *(model.input_size(o) for o in output_size)), device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(inputs)
    return counter.get_total_flops()


def best_gemm_rates(threads: int, side: int = 3072, repeats: int = 4) -> dict:
    """Best FLOP/s of numpy's and of torch's ``side`` x ``side`` float32 matrix products on ``threads`` threads.

    numpy's BLAS takes its thread count from the environment, set by :func:`measure` before it starts.
    """
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((side, side), dtype=np.float32) for _ in range(2))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    rates = {}
    for name, product in (("numpy", lambda: a @ b), ("torch", lambda: ta @ tb)):
        product()  # warm-up
        best = min(_seconds(product) for _ in range(repeats))
        rates[name] = 2 * side**3 / best
    return rates


def _seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def run_gemm(args: argparse.Namespace) -> dict:
    return best_gemm_rates(args.threads)


def run_dense(args: argparse.Namespace, model: torch.nn.Module, image: np.ndarray, mask: np.ndarray) -> dict:
    from lesionseg.inference.deepmedic_inference import inference_network
    from lesionseg.inference.dense import estimate_memory, plan_tiles, predict_volume

    cpu = torch.device("cpu")
    network = model if args.as_trained else inference_network(model)
    plan = plan_tiles(network, mask, image.shape[0], cpu, None, args.batch, args.memory_budget_mb)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    predict_volume(model, image, mask, cpu, tile_output=None, batch_size=args.batch,
                   memory_budget_mb=args.memory_budget_mb, progress=args.progress,
                   inference_copy=not args.as_trained)
    seconds, cpu_used = time.perf_counter() - start, cpu_seconds() - cpu_start
    estimate = estimate_memory(network, image.shape[0], plan.size, plan.batch_size)
    return {"seconds": seconds, "cpu_seconds": cpu_used, "tile": plan.size, "input": [model.input_size(s) for s in plan.size],
            "tiles": len(plan.regions), "batch": plan.batch_size, "estimate_mb": estimate / 2**20}


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
    if args.method == "gemm":
        print(json.dumps(run_gemm(args)))
        return
    image, mask = brain_volume(tuple(args.shape))
    model = paper_deepmedic()
    before = max_rss_mb()
    result = (run_dense if args.method == "dense" else run_patches)(args, model, image, mask)
    print(json.dumps({**result, "rss_before_mb": before, "rss_peak_mb": max_rss_mb()}))


def measure(method: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--method", method, *sys.argv[1:]]
    # Both read once, at start-up: PyTorch at its first allocation, numpy's BLAS when loaded.
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}
    if args.huge_pages:
        environment["THP_MEM_ALLOC_ENABLE"] = "1"
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, env=environment)
    return json.loads(completed.stdout.splitlines()[-1])


def _memory(measures: dict) -> tuple[str, str]:
    """Peak RSS of the method's process, and its increase while the method ran."""
    return f"{measures['rss_peak_mb']:,.0f} MB", f"{measures['rss_peak_mb'] - measures['rss_before_mb']:,.0f} MB"


def report(args: argparse.Namespace, dense: dict, patches: dict | None, gemm: dict) -> None:
    _, mask = brain_volume(tuple(args.shape))
    n_brain = int(mask.sum())
    nonzero = np.argwhere(mask)
    box = nonzero.max(axis=0) - nonzero.min(axis=0) + 1
    n_box = int(np.prod(box))
    dense_rate = n_brain / dense["seconds"]
    shape = " x ".join(map(str, args.shape))
    pages = ", huge pages" if args.huge_pages else ""
    network = "as trained" if args.as_trained else "its inference-time copy"
    batch = "one per forward pass" if dense["batch"] == 1 else f"{dense['batch']} per forward pass"
    print(f"DeepMedic (paper configuration, random weights) on 4 x {shape} voxels, {args.threads} threads{pages}")
    print(f"brain: {n_brain:,} voxels; its bounding box {' x '.join(map(str, box))} = {n_box:,} voxels")
    print(f"dense ({network}): tiles of {' x '.join(map(str, dense['tile']))} output voxels (input "
          f"{' x '.join(map(str, dense['input']))}), {batch}, chosen for a {args.memory_budget_mb} MB budget; "
          f"{dense['tiles']} hold brain; estimated batch peak {dense['estimate_mb']:.0f} MB")
    model = paper_deepmedic()
    per_voxel = useful_flops_per_voxel(model)
    small, large = TWO_TILES
    two_tiles = (tile_flops(model, (large,) * 3) - tile_flops(model, (small,) * 3)) / (large**3 - small**3)
    useful = per_voxel * n_box
    rate = useful / dense["seconds"]
    best = max(gemm.values())
    print(f"useful arithmetic: {per_voxel / 1e6:.3f} MFLOP per output voxel (no tile context; the difference "
          f"between tiles of {small}^3 and {large}^3 outputs gives {two_tiles / 1e6:.3f}, part of their context "
          "included)")
    # Other processes on the cores show as CPU time short of the threads' share of the wall time.
    print(f"dense: {useful / 1e12:.2f} TFLOP over the {n_box:,} box voxels in {dense['seconds']:.1f} s = "
          f"{rate / 1e9:.1f} GFLOP/s (CPU time {dense['cpu_seconds']:.0f} s: "
          f"{dense['cpu_seconds'] / dense['seconds']:.1f} cores busy of {args.threads})")
    print(f"best float32 3072^2 matrix product on {args.threads} threads: "
          + ", ".join(f"{name} {value / 1e9:.1f}" for name, value in gemm.items()) + " GFLOP/s")
    print(f"dense inference runs at {rate / best:.2f} of the best matrix-product rate")
    print()
    header = ("method", "brain vox/s", "box vox/s", "brain time", "peak RSS", "RSS increase")
    rows = [("dense", f"{dense_rate:,.0f}", f"{n_box / dense['seconds']:,.0f}",
             f"{dense['seconds']:,.0f} s measured", *_memory(dense))]
    if patches is not None:
        patch_rate = patches["timed"] / patches["seconds"]
        patch_seconds = n_brain / patch_rate
        print(f"per patch: input {patches['input']}^3 -> output 1^3, batch {args.patch_batch}, "
              f"{patches['timed']} brain voxels timed")
        rows.append(("per patch", f"{patch_rate:,.1f}", "-", f"{patch_seconds:,.0f} s extrapolated",
                     *_memory(patches)))
    for row in (header, *rows):
        print(f"{row[0]:<11}" + "".join(f"{cell:>{width}}" for cell, width in zip(row[1:], (13, 11, 24, 11, 14))))
    if patches is not None:
        print()
        print(f"dense is {dense_rate / patch_rate:,.0f}x faster per brain voxel "
              f"({dense['seconds']:.0f} s measured vs {patch_seconds / 3600:.1f} h extrapolated for the brain)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155], metavar=("X", "Y", "Z"))
    parser.add_argument("--threads", type=int, default=2, help="torch (and numpy BLAS) CPU threads")
    parser.add_argument("--patches", type=int, default=320, help="brain voxels classified one patch each")
    parser.add_argument("--patch-batch", type=int, default=64, help="patches per forward pass")
    parser.add_argument("--skip-patches", action="store_true", help="no per-patch comparison (its minutes)")
    parser.add_argument("--batch", type=int, default=2, help="dense tiles per forward pass (CUDA; CPU: one)")
    parser.add_argument("--memory-budget-mb", type=int, default=2048, help="memory one dense batch may use")
    parser.add_argument("--as-trained", action="store_true",
                        help="dense inference of the module as it is, not its inference-time copy")
    parser.add_argument("--progress", action="store_true", help="progress bar of the dense pass on stderr")
    parser.add_argument("--huge-pages", action="store_true",
                        help="PyTorch CPU allocations on transparent huge pages (THP_MEM_ALLOC_ENABLE=1): "
                             "fewer page faults for the large activations")
    parser.add_argument("--method", choices=["dense", "patch", "gemm"], help=argparse.SUPPRESS)  # a worker
    args = parser.parse_args()
    if args.method:
        worker(args)
        return
    # The matrix products just before and just after the dense pass: the best of both, as the machine allowed.
    before = measure("gemm", args)
    dense = measure("dense", args)
    after = measure("gemm", args)
    gemm = {name: max(before[name], after[name]) for name in before}
    patches = None if args.skip_patches else measure("patch", args)
    report(args, dense, patches, gemm)


if __name__ == "__main__":
    main()
