"""The training loop of one model and phase, with validation, checkpoints and resume.

Phase 1 trains every layer on the balanced samples; phase 2 starts from the
phase-1 model and retrains only the output layer on samples of the natural label
distribution (Havaei et al. 2017), for any architecture.

Every epoch draws its batches from a generator seeded by (seed, phase, epoch)
and ends with a checkpoint (network, optimiser and, on CUDA, the gradient
scaler), so a killed training resumes at the next epoch and ends exactly as an
uninterrupted one would: on the CPU always, on CUDA with
``training: {deterministic: true}`` (:func:`~lesionseg.training.feeding.configure_backends`).
Batches are cut ahead of the network in a background thread
(:class:`~lesionseg.training.feeding.PrefetchedBatches`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from lesionseg.evaluation.metrics import region_dice
from lesionseg.inference.dense import default_device, predict_volume
from lesionseg.io import atomic_path, read_image
from lesionseg.labels import LabelScheme
from lesionseg.machine import package_versions
from lesionseg.models import build_model
from lesionseg.sampling import read_samples
from lesionseg.training.checkpoints import (load_model, network_record, read_model_file,
                                            save_model_file)
from lesionseg.training.curves import plot_learning_curves, selection_score
from lesionseg.training.feeding import PrefetchedBatches, configure_backends
from lesionseg.training.optim import l1_penalty, learning_rate, make_optimizer, momentum, set_hyperparameters
from lesionseg.training.patches import IGNORE, augment, cut_segments, load_training_volume, required_pad
from lesionseg.training.settings import phase_epochs, phase_strategy, sample_set_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubjectFiles:
    """A preprocessed subject: image, brain mask, truth and (training subjects) its sample file."""

    name: str
    image: str
    mask: str
    label: str
    samples: str | None = None


@dataclass
class TrainingJob:
    """What to train: one model, one phase, on one dataset."""

    model_name: str
    architecture: str
    parameters: dict[str, Any]
    settings: dict[str, Any]
    phase: int
    scheme: LabelScheme
    modalities: Sequence[str]
    fingerprint: str
    train: Sequence[SubjectFiles]
    val: Sequence[SubjectFiles] = ()
    previous_phase_model: str | None = None
    first_model: str | None = None  # cascades: the trained first network
    dataset: str = ""
    preprocessing: dict[str, Any] | None = None  # the full settings, kept in the model file
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return phase_epochs(self.settings, self.phase)

    @property
    def base_lr(self) -> float:
        return self.settings["phase2"]["lr"] if self.phase == 2 else self.settings["optimizer"]["lr"]

    def identity(self) -> str:
        """A hash of everything that defines the result, so a checkpoint of other settings is not resumed."""
        payload = {"architecture": self.architecture, "parameters": self.parameters, "settings": self.settings,
                   "phase": self.phase, "fingerprint": self.fingerprint, "train": [s.name for s in self.train]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _model_file(job: TrainingJob, model: nn.Module, **details: Any) -> dict[str, Any]:
    """The model file's contents: the network, its labels, inputs, preprocessing and provenance."""
    network = network_record(model, job.model_name, job.architecture, job.parameters, training=job.settings,
                             phase=job.phase, **details)
    return {
        "name": job.model_name, "networks": [network], "scheme": job.scheme.describe(),
        "modalities": list(job.modalities), "preprocessing": job.preprocessing,
        "preprocessing_fingerprint": job.fingerprint,
        "provenance": {"dataset": job.dataset, "train_subjects": [s.name for s in job.train],
                       "val_subjects": [s.name for s in job.val], "versions": package_versions()},
    }


def _initial_model(job: TrainingJob, device: torch.device) -> nn.Module:
    if job.phase == 2:
        model, _ = load_model(job.previous_phase_model, job.fingerprint, device)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        for parameter in model.output_layer.parameters():
            parameter.requires_grad_(True)
        return model
    torch.manual_seed(job.settings["seed"])
    model = build_model(job.architecture, len(job.modalities), job.scheme.n_classes, job.parameters).to(device)
    if hasattr(model, "first"):
        if job.first_model is None:
            raise ValueError(f"model {job.model_name!r} is a cascade: name its trained first network with 'first:'")
        first, _ = load_model(job.first_model, job.fingerprint, device)
        model.first.load_state_dict(first.state_dict())  # a TwoPathCNN / DeepMedic of the same sizes
        model.first.eval()
    return model


def validate(model: nn.Module, subjects: Sequence[SubjectFiles], scheme: LabelScheme, device: torch.device,
             tile: int | str, memory_budget_mb: float | None = None) -> dict[str, float]:
    """Mean Dice per region over whole validation subjects, by dense inference in tiles of ``tile`` outputs per
    side (``"auto"``: the largest that fits ``memory_budget_mb`` on the CPU, the GPU's memory on CUDA)."""
    scores: dict[str, list[float]] = {region: [] for region in scheme.regions}
    for subject in subjects:
        image = read_image(subject.image).data
        image = np.moveaxis(image if image.ndim == 4 else image[..., None], -1, 0)
        mask = read_image(subject.mask, dtype=None).data > 0
        probabilities = predict_volume(model, image, mask, device, tile_output=None if tile == "auto" else int(tile),
                                       memory_budget_mb=memory_budget_mb)
        prediction = scheme.to_raw(probabilities.argmax(axis=0))
        for region, value in region_dice(prediction, read_image(subject.label, dtype=None).data, scheme).items():
            scores[region].append(value)
    return {region: float(np.mean(values)) for region, values in scores.items()}


def _sample_centres(subject: SubjectFiles, set_name: str) -> np.ndarray:
    sets, _ = read_samples(subject.samples)
    if set_name not in sets:
        raise ValueError(f"{subject.samples}: subject {subject.name} has no sample set {set_name!r} "
                         f"(it has {sorted(sets)}); re-run its sampling with this model's settings")
    return sets[set_name].centres


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   trainable: Sequence[nn.Parameter], inputs: torch.Tensor, targets: torch.Tensor,
                   settings: dict[str, Any]) -> torch.Tensor:
    """One optimiser step on a batch (mixed precision when the scaler is enabled); the batch's loss, detached."""
    with torch.autocast(inputs.device.type, enabled=scaler.is_enabled()):
        logits = model(inputs)
        loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE)
    penalty = settings["l1"] * l1_penalty(model)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss + penalty).backward()
    scaler.unscale_(optimizer)
    # L2 on the trainable weights (as weight decay, applied to the gradient).
    with torch.no_grad():
        for parameter in trainable:
            if parameter.grad is not None:
                parameter.grad.add_(parameter, alpha=settings["l2"])
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def train(job: TrainingJob, model_path: str, history_path: str, curve_path: str, checkpoint_path: str,
          threads: int = 1, device: torch.device | None = None,
          validation_budget_mb: float | None = None) -> dict[str, Any]:
    """Train ``job``; write the best model, the per-epoch history (CSV) and the phase's learning curve (PNG).

    The model file holds the epoch of the best :func:`~lesionseg.training.curves.selection_score`. Validation is
    dense inference, its batches within ``validation_budget_mb`` on the CPU (``inference: memory_budget_mb``)."""
    device = device or default_device()
    torch.set_num_threads(max(1, threads))
    settings = job.settings
    configure_backends(device, settings["deterministic"])
    model = _initial_model(job, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trainable, settings["optimizer"], job.base_lr)
    # Mixed precision where it pays (CUDA); full precision on the CPU.
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start_epoch, best_score, history = 0, -np.inf, []
    checkpoint = Path(checkpoint_path)
    # The best model so far lives beside the checkpoint (not a workflow output, so it survives a kill).
    best_path = checkpoint.with_name(f"{checkpoint.stem}.best.pt")
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state["identity"] == job.identity():
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler"):  # the loss scale reached, so that steps after a resume are those without one
                scaler.load_state_dict(state["scaler"])
            start_epoch, best_score, history = state["epoch"] + 1, state["best_score"], state["history"]
            log.info("resuming %s phase %d after epoch %d", job.model_name, job.phase, state["epoch"] + 1)
        else:
            log.info("ignoring a checkpoint of other settings: %s", checkpoint)

    output_size = settings["output_size"]
    pad = required_pad(model, output_size)
    set_name = sample_set_name(phase_strategy(settings, job.phase))
    all_centres = [_sample_centres(s, set_name) for s in job.train]
    log.info("%s phase %d: %d training subjects, %d samples, %d validation subjects, device %s", job.model_name,
             job.phase, len(job.train), sum(len(c) for c in all_centres), len(job.val), device)

    for epoch in range(start_epoch, job.epochs):
        started = time.perf_counter()
        rng = np.random.default_rng([settings["seed"], job.phase, epoch])
        # As DeepMedic's sub-epochs: only some subjects are in memory at a time.
        chosen_subjects = np.sort(rng.choice(len(job.train), min(len(job.train), settings["subjects_per_epoch"]),
                                             replace=False))
        volumes = [load_training_volume(job.train[i].image, job.train[i].label, job.scheme, pad)
                   for i in chosen_subjects]
        centres = [all_centres[i] for i in chosen_subjects]
        pairs = np.concatenate([np.stack([np.full(len(c), i), np.arange(len(c))], axis=1)
                                for i, c in enumerate(centres)])
        torch.manual_seed(int(rng.integers(2**31)))
        lr = learning_rate(job.base_lr, epoch, settings)
        set_hyperparameters(optimizer, lr, momentum(epoch, job.epochs, settings["optimizer"]))
        model.train()
        if job.phase == 2:  # frozen layers keep their batch-norm statistics and run without dropout
            model.eval()
            model.output_layer.train()

        def make_batch() -> tuple[np.ndarray, np.ndarray]:
            chosen = pairs[rng.integers(0, len(pairs), size=settings["batch_size"])]
            inputs, targets = [], []
            for subject, index in chosen:
                x, y = cut_segments(volumes[subject], centres[subject][index:index + 1], model, output_size)
                inputs.append(x)
                targets.append(y)
            return augment(np.concatenate(inputs), np.concatenate(targets), settings["augmentation"], rng)

        loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: no host sync per step
        training_started = time.perf_counter()
        with PrefetchedBatches(make_batch, settings["batches_per_epoch"], pin=device.type == "cuda") as batches:
            for x, y in tqdm(batches, total=settings["batches_per_epoch"], unit="batch", mininterval=5,
                             desc=f"{job.model_name} phase {job.phase} epoch {epoch + 1}"):
                loss = training_step(model, optimizer, scaler, trainable, x.to(device, non_blocking=True),
                                      y.to(device, non_blocking=True), settings)
                loss_sum += loss
        training_s = time.perf_counter() - training_started
        validation_started = time.perf_counter()
        scores = validate(model, job.val, job.scheme, device, settings["validation_tile"],
                          validation_budget_mb) if job.val else {}
        validation_s = time.perf_counter() - validation_started
        log.info("epoch %d time: %.1f s loading subjects, %.1f s training (%.1f s of it waiting for segments), "
                 "%.1f s validating", epoch + 1, training_started - started, training_s, batches.waited_s,
                 validation_s)
        row = {"epoch": epoch + 1, "loss": float(loss_sum) / settings["batches_per_epoch"], "lr": lr,
               **{f"val_dice_{r}": v for r, v in scores.items()}, "seconds": time.perf_counter() - started}
        score = selection_score(row)  # mean validation Dice, else minus the loss
        history.append(row)
        log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
        if score > best_score:
            best_score = score
            save_model_file(best_path, _model_file(job, model, best_epoch=epoch + 1, best_score=score))
        with atomic_path(checkpoint) as tmp:
            torch.save({"identity": job.identity(), "epoch": epoch, "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "best_score": best_score,
                        "history": history}, tmp)
    best = read_model_file(best_path)
    best["networks"][0]["history"] = history
    save_model_file(model_path, {k: v for k, v in best.items() if k not in ("format", "format_version")})
    write_history(history_path, history)
    plot_learning_curves(curve_path, {job.phase: history}, job.scheme.region_colours,
                         f"{job.dataset or 'training'}: {job.model_name}, phase {job.phase}")
    return {"best_score": best_score, "epochs": len(history)}


def write_history(path: str, history: Sequence[dict[str, Any]]) -> None:
    """The per-epoch history as CSV (epoch, loss, lr, validation Dice per region, seconds)."""
    columns = list(dict.fromkeys(k for row in history for k in row))
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)

