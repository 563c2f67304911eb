"""Training throughput of DeepMedic: segments per second, and how much of a step is the network.

For the paper's DeepMedic and the residual DeepMedic (the model registry's
``deepmedic`` and ``deepmedic-residual``), batches of --batch segments of
--output-sizes outputs per side (9: the paper's 25^3 normal-pathway segments;
21: the official code's 37^3 training segments), on --threads CPU threads:

- cutting and augmenting a batch from a BraTS-sized padded subject, with the
  training loop's own functions (``cut_segments``, ``augment``): host work,
  done ahead of the network in a background thread while it trains;
- the training step itself (``training_step``: forward, cross-entropy, L1/L2,
  backward, RMSProp with Nesterov momentum), after --warmup steps.

Prints segments per second and output voxels per second for each, and the
share of a step the host work would take if it were not overlapped. The
official DeepMedic (TensorFlow) is not run: its code is not installable from the
package index, so no ratio against it is printed.

    .venv/bin/python bench/training.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from lesionseg.labels import LABEL_SCHEMES
from lesionseg.models import build_model
from lesionseg.training.loop import training_step
from lesionseg.training.optim import make_optimizer
from lesionseg.training.patches import TrainingVolume, augment, cut_segments, required_pad
from lesionseg.training.settings import training_settings

ARCHITECTURES = ("deepmedic", "deepmedic-residual")


def subject_volume(shape: tuple[int, int, int], n_classes: int, pad: int, seed: int) -> TrainingVolume:
    """A padded 4-channel random subject with random classes, as ``load_training_volume`` returns."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((4, *(n + 2 * pad for n in shape)), dtype=np.float32)
    classes = rng.integers(0, n_classes, size=tuple(n + 2 * pad for n in shape))
    return TrainingVolume(image, classes, pad)


def time_host(volume: TrainingVolume, model: torch.nn.Module, output_size: int, batch: int,
              settings: dict, repeats: int, rng: np.random.Generator) -> float:
    """Median seconds to cut and augment one batch around random centres."""
    shape = np.array(volume.classes.shape) - 2 * volume.pad
    times = []
    for _ in range(repeats):
        centres = rng.integers(0, shape, size=(batch, 3))
        started = time.perf_counter()
        x, y = cut_segments(volume, centres, model, output_size)
        augment(x, y, settings["augmentation"], rng)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_steps(model: torch.nn.Module, output_size: int, batch: int, n_classes: int, settings: dict,
               steps: int, warmup: int) -> float:
    """Median seconds per training step on random segments."""
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trainable, settings["optimizer"], settings["optimizer"]["lr"])
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    side = model.input_size(output_size)
    inputs = torch.randn(batch, model.in_channels, side, side, side)
    targets = torch.randint(0, n_classes, (batch, output_size, output_size, output_size))
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        training_step(model, optimizer, scaler, trainable, inputs, targets, settings)
        if step >= warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=10, help="segments per batch (the paper's 10)")
    parser.add_argument("--output-sizes", type=int, nargs="+", default=[9, 21],
                        help="outputs per side of a training segment")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155], help="subject the batches are cut from")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_classes = LABEL_SCHEMES["brats2013"].n_classes  # 5, as BraTS 2015
    rng = np.random.default_rng(0)
    print(f"DeepMedic training throughput, {args.threads} threads, batch {args.batch}, random weights and segments")
    header = ("model", "outputs", "input", "step s", "segments/s", "kvoxel/s", "cut+augment s", "host share")
    print(f"{header[0]:<20}" + "".join(f"{h:>14}" for h in header[1:]))
    for architecture in ARCHITECTURES:
        torch.manual_seed(0)
        model = build_model(architecture, 4, n_classes)
        settings = training_settings(architecture)
        for output_size in args.output_sizes:
            volume = subject_volume(tuple(args.shape), n_classes, required_pad(model, output_size), seed=1)
            host = time_host(volume, model, output_size, args.batch, settings, 10, rng)
            del volume
            step = time_steps(model, output_size, args.batch, n_classes, settings, args.steps, args.warmup)
            segments = args.batch / step
            print(f"{architecture:<20}" + "".join(f"{cell:>14}" for cell in (
                f"{output_size}^3", f"{model.input_size(output_size)}^3", f"{step:.2f}", f"{segments:.2f}",
                f"{segments * output_size ** 3 / 1e3:.1f}", f"{host:.3f}", f"{100 * host / (host + step):.1f}%")))
    print("(host share: cutting and augmenting as a share of a step if not overlapped; the training loop cuts "
          "the next batches in a background thread while the network trains)")


if __name__ == "__main__":
    main()
