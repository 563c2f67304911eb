"""The CUDA paths, checked and timed on a CUDA machine: one short run (a few minutes on one GPU).

Checks (each prints its figures; the script exits 1 if one fails):

- dense inference = patch-wise on CUDA, float32, to 1e-4, for the paper's
  DeepMedic and TwoPathCNN (random weights, eval mode; patch-wise: the network
  on each sampled voxel's own input patch); float16 and bfloat16 autocast
  against float32 (reported: maximum difference and label agreement);
- the CRF on CUDA = the CRF on the CPU: labels agree on >= 99.99% of the brain;
- a 2-epoch training on CUDA (``deterministic: true``), killed in epoch 2 and
  resumed, ends with the weights of an uninterrupted run.

Throughput: training segments per second (the paper's DeepMedic, batch 10,
25^3 segments), dense inference seconds per 240x240x155 brain (float32 and
bfloat16), CRF seconds per brain, and the peak GPU memory of each.

On a machine without CUDA it says so and exits 0. It needs torch, numpy and
scipy; the training check also reads and writes NIfTI (nibabel) and imports
the config module (jsonschema): where those are missing (a bare GPU image),
carry their wheels and put them on PYTHONPATH, or that check is skipped with
the reason.

    .venv/bin/python bench/gpu.py          (make bench-gpu)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference import brain_volume, paper_deepmedic  # noqa: E402 - bench/inference.py, beside this file

DENSE_TOLERANCE = 1e-4
CRF_AGREEMENT = 0.9999
BRATS_SHAPE = (240, 240, 155)


def peak_gb(device: torch.device) -> float:
    """Peak memory allocated on ``device`` since the last reset (NaN on the CPU)."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def own_patch(model: torch.nn.Module, image: np.ndarray, voxel: tuple[int, int, int],
              device: torch.device) -> np.ndarray:
    """The network's probabilities at ``voxel`` from the input patch of that voxel's output block alone.

    A 3D model's block is its grid cell (the low-resolution pathway is anchored
    on the grid); a 2D model's is the voxel, in its axial slice.
    """
    from lesionseg.inference.dense import input_context

    context = input_context(model)
    grid = getattr(model, "grid", 1) if model.dims == 3 else 1
    start = [v - v % grid for v in voxel] if model.dims == 3 else list(voxel)
    size = [grid] * 3 if model.dims == 3 else [1, 1, 1]
    pad = [(0, 0)] + [(before, after + grid) for before, after in context]
    padded = np.pad(image, pad, mode="reflect")
    patch = padded[(slice(None), *(slice(s, s + n + b + a) for s, n, (b, a) in zip(start, size, context, strict=True)))]
    inputs = torch.from_numpy(np.ascontiguousarray(patch))[None].to(device)
    with torch.inference_mode():
        out = torch.softmax(model(inputs if model.dims == 3 else inputs[..., 0]).float(), dim=1)[0].cpu().numpy()
    offset = tuple(v - s for v, s in zip(voxel, start, strict=True))
    return out[(slice(None), *offset)] if model.dims == 3 else out[:, 0, 0]


def check_dense(results: dict[str, bool], device: torch.device) -> None:
    from lesionseg.inference.dense import predict_volume
    from lesionseg.models import build_model

    image, mask = brain_volume((72, 80, 60), seed=1)
    rng = np.random.default_rng(0)
    voxels = [tuple(v) for v in np.argwhere(mask)[rng.choice(int(mask.sum()), 48, replace=False)]]
    torch.manual_seed(0)
    for name, model in (("deepmedic", paper_deepmedic()), ("twopathcnn", build_model("twopathcnn", 4, 5).eval())):
        model = model.to(device)
        dense = predict_volume(model, image, mask, device, precision="float32")
        error = max(float(np.abs(dense[(slice(None), *v)] - own_patch(model, image, v, device)).max())
                    for v in voxels)
        results[f"{name}: dense = patch-wise, float32 (max |diff| {error:.1e} <= {DENSE_TOLERANCE:g})"] = \
            error <= DENSE_TOLERANCE
        for precision in ("float16", "bfloat16") if device.type == "cuda" else ("bfloat16",):
            reduced = predict_volume(model, image, mask, device, precision=precision)
            agreement = float((reduced.argmax(0) == dense.argmax(0))[mask].mean())
            print(f"  {name} {precision} autocast vs float32: max |diff| {np.abs(reduced - dense).max():.2e}, "
                  f"labels agree on {100 * agreement:.3f}% of the brain")


def time_inference(device: torch.device, shape: tuple[int, int, int]) -> None:
    from lesionseg.inference.dense import predict_volume

    image, mask = brain_volume(shape)
    model = paper_deepmedic().to(device)
    for precision in ("float32", "bfloat16"):
        predict_volume(model, image[:, :96, :96, :64], mask[:96, :96, :64], device,
                       precision=precision)  # warm-up: cuDNN's choices, the allocator
        reset_peak(device)
        started = time.perf_counter()
        predict_volume(model, image, mask, device, precision=precision)
        synchronize(device)
        print(f"  dense inference, paper DeepMedic, {'x'.join(map(str, shape))} brain, {precision}: "
              f"{time.perf_counter() - started:.2f} s, peak GPU memory {peak_gb(device):.1f} GB")


def check_crf(results: dict[str, bool], device: torch.device, shape: tuple[int, int, int]) -> None:
    from crf import synthetic_subject  # bench/crf.py

    from lesionseg.crf import CRFParameters, dense_crf

    subject = synthetic_subject(shape, 0)
    arguments = (subject["probabilities"], subject["images"], (1.0, 1.0, 1.0), CRFParameters())
    dense_crf(*arguments, mask=subject["mask"], device=device)  # warm-up (on the CPU too: first-call costs)
    started = time.perf_counter()
    on_cpu = dense_crf(*arguments, mask=subject["mask"], device="cpu")
    cpu_s = time.perf_counter() - started
    reset_peak(device)
    started = time.perf_counter()
    on_gpu = dense_crf(*arguments, mask=subject["mask"], device=device)
    synchronize(device)
    gpu_s = time.perf_counter() - started
    agreement = float((on_gpu.argmax(0) == on_cpu.argmax(0))[subject["mask"]].mean())
    print(f"  CRF per {'x'.join(map(str, shape))} brain: {device} {gpu_s:.2f} s "
          f"(peak GPU memory {peak_gb(device):.1f} GB), CPU ({torch.get_num_threads()} threads) {cpu_s:.1f} s")
    results[f"CRF on {device} = on the CPU (labels agree on {100 * agreement:.4f}% >= {100 * CRF_AGREEMENT:g}%)"] = \
        agreement >= CRF_AGREEMENT


def training_subjects(folder: Path) -> list:
    """Two small subjects (noise and a ball of each tumour class) as the workflow writes them: image, mask,
    label and sample file."""
    from lesionseg.io import write_nifti
    from lesionseg.labels import LABEL_SCHEMES
    from lesionseg.sampling import sample_subject, write_samples
    from lesionseg.training.loop import SubjectFiles

    scheme, subjects = LABEL_SCHEMES["brats2013"], []
    for index in range(2):
        image, mask = brain_volume((64, 64, 48), seed=10 + index)
        grid = np.indices(mask.shape)
        distance = np.sqrt(sum((g - n / 2) ** 2 for g, n in zip(grid, mask.shape, strict=True)))
        label = np.select([distance < 4, distance < 7, distance < 10, distance < 13], [1, 3, 4, 2], 0).astype(np.uint8)
        image[:, label > 0] += label[label > 0] * 0.5
        paths = {key: str(folder / f"s{index}_{key}.nii.gz") for key in ("image", "mask", "label")}
        write_nifti(paths["image"], np.moveaxis(image, 0, -1), np.eye(4))
        write_nifti(paths["mask"], mask.astype(np.uint8), np.eye(4))
        write_nifti(paths["label"], label, np.eye(4))
        sets = sample_subject(paths["label"], paths["mask"], scheme, {"foreground": ("foreground", 500)}, seed=0,
                              subject=f"s{index}")
        samples = str(folder / f"s{index}_samples.npz")
        write_samples(samples, sets, {"subject": f"s{index}"})
        subjects.append(SubjectFiles(f"s{index}", paths["image"], paths["mask"], paths["label"], samples))
    return subjects


def check_training(results: dict[str, bool], device: torch.device, batches_per_epoch: int) -> None:
    try:
        import lesionseg.training.loop as loop
        from lesionseg.labels import LABEL_SCHEMES
        from lesionseg.training.checkpoints import read_model_file
        from lesionseg.training.settings import training_settings
    except ImportError as error:
        print(f"  training check skipped: {error} (carry that package's wheels; see this file's docstring)")
        return
    folder = Path(tempfile.mkdtemp(prefix="lesionseg-gpu-"))
    subjects = training_subjects(folder)
    settings = training_settings("deepmedic", {"epochs": 2, "batches_per_epoch": batches_per_epoch,
                                                   "deterministic": True})
    job = loop.TrainingJob("dm", "deepmedic", {}, settings, 1, LABEL_SCHEMES["brats2013"],
                           ("flair", "t1", "t1ce", "t2"), "gpu-bench", subjects)

    def run(name: str) -> dict:
        paths = [str(folder / f"{name}.{suffix}") for suffix in ("pt", "csv", "png", "ckpt")]
        loop.train(job, *paths, threads=4, device=device)
        return read_model_file(paths[0])["networks"][0]["state_dict"]

    reset_peak(device)
    started = time.perf_counter()
    straight = run("straight")
    seconds = time.perf_counter() - started
    segments = settings["epochs"] * settings["batches_per_epoch"] * settings["batch_size"]
    print(f"  training, paper DeepMedic, batch {settings['batch_size']} of 25^3 segments: "
          f"{segments / seconds:.0f} segments/s over {seconds:.1f} s (checkpoints and model files included), "
          f"peak GPU memory {peak_gb(device):.1f} GB")

    real_tqdm = loop.tqdm

    def killed_in_epoch_2(iterable, desc, **kwargs):
        if desc.endswith("epoch 2"):
            raise KeyboardInterrupt("killed")
        return real_tqdm(iterable, desc=desc, **kwargs)

    loop.tqdm = killed_in_epoch_2
    try:
        run("resumed")
    except KeyboardInterrupt:
        pass
    finally:
        loop.tqdm = real_tqdm
    resumed = run("resumed")
    difference = max(float((straight[key].float() - resumed[key].float()).abs().max()) for key in straight)
    results[f"training killed in epoch 2 and resumed = uninterrupted (max |weight diff| {difference:.1e})"] = \
        difference == 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu to try the script's own logic")
    parser.add_argument("--batches-per-epoch", type=int, default=50, help="training batches per epoch")
    parser.add_argument("--brain-shape", type=int, nargs=3, default=BRATS_SHAPE, help="volume timed (voxels)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device here (torch.cuda.is_available() is False); nothing to check. "
              "Run it on a machine with an NVIDIA GPU.")
        return 0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU"
    print(f"bench/gpu.py on {name} (torch {torch.__version__}, CUDA {torch.version.cuda})")
    results: dict[str, bool] = {}
    shape = tuple(args.brain_shape)
    print("dense inference = patch-wise:")
    check_dense(results, device)
    print("CRF:")
    check_crf(results, device, shape)
    print("training with resume:")
    check_training(results, device, args.batches_per_epoch)
    print("inference time:")
    time_inference(device, shape)
    for name, passed in results.items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
