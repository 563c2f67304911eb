"""Inference time of trained networks on one preprocessed subject, side by side: each model file as rule infer
applies it, and nnU-Net's with and without test-time mirroring.

Give the model files of a finished run (any mix of DeepMedic, Havaei and nnU-Net models) and a subject's
preprocessed folder (image.nii.gz and brain_mask.nii.gz), e.g. after the real-data comparison of README
'nnU-Net':

    .venv/bin/python bench/nnunet.py --threads 2 --subject results/brats15/preprocessed/brats_2013_pat0001_1 \\
        results/brats15/models/dm/phase1/model.pt results/brats15/models/nn/phase1/model.pt

Each file runs once to warm up (imports, caches, first-touch memory), then --repeats times; the best time is
printed with its ratio to the first model's. Only measures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from lesionseg.inference.dense import default_device
from lesionseg.inference.steps import load_networks, network_probabilities, read_channels_first, read_mask


def best_time(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="model files (workflow model.pt or exported)")
    parser.add_argument("--subject", type=Path, required=True, help="a preprocessed subject's folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--memory-budget-mb", type=int, default=2048)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    device = default_device()
    image = read_channels_first(args.subject / "image.nii.gz")
    mask = read_mask(args.subject / "brain_mask.nii.gz")
    spacing = tuple(float(s) for s in np.linalg.norm(image.affine[:3, :3], axis=0))
    settings = {"segment_size": "auto", "batch_size": 2, "precision": "float32",
                "memory_budget_mb": args.memory_budget_mb}
    print(f"subject {args.subject.name}: {'x'.join(map(str, image.data.shape[1:]))} voxels of "
          f"{'x'.join(f'{s:g}' for s in spacing)} mm, {int(mask.sum())} in the brain; {device}, "
          f"{args.threads} threads")
    rows = []
    for path in args.models:
        names, networks, contents = load_networks([path], None, device)
        kinds = {record["architecture"] for record in contents["networks"]}
        variants = [("", {})] if "nnunet" not in kinds else [
            (" without mirroring", {"mirroring": False}), (" with mirroring", {"mirroring": True})]
        for label, nnunet in variants:
            seconds = best_time(lambda: network_probabilities(
                names, networks, image.data, mask, device, {**settings, "nnunet": nnunet}, progress=False,
                spacing=spacing), args.repeats)
            rows.append((f"{path} ({', '.join(sorted(kinds))}){label}", seconds))
    reference = rows[0][1]
    width = max(len(name) for name, _ in rows)
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:8.1f} s  {seconds / reference:6.2f}x the first")


if __name__ == "__main__":  # nnU-Net's predictor may start worker processes with spawn
    main()
