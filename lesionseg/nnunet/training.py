"""One nnU-Net fold trained by nnU-Net's own trainer, with the config's budget, and written as a model file.

The budget (epochs, iterations per epoch, validation iterations, initial learning rate) comes from the config
through a subclass of ``nnUNetTrainer`` that changes those attributes and nothing else, the way nnU-Net's own
``nnUNetTrainer_5epochs`` does; its defaults (1000 epochs of 250 iterations) are a GPU budget. The subclass also
checkpoints after every epoch, so a killed training resumes from nnU-Net's ``checkpoint_latest.pth`` having lost
at most one epoch. nnU-Net's final validation (a full sliding-window prediction of the validation cases) is left
out: the pipeline predicts, post-processes and scores every subject itself.

The model file (:mod:`lesionseg.training.checkpoints`) holds one network record of architecture ``nnunet`` whose
parameters carry what nnU-Net needs to predict without any of its folders: the plans, the configuration,
``dataset.json``, the trainer's name and its mirroring axes; its ``state_dict`` is the final checkpoint's weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lesionseg.labels import LabelScheme
from lesionseg.machine import package_versions
from lesionseg.nnunet import ARCHITECTURE, nnunet_environment
from lesionseg.nnunet.layout import DATASET_NAME, region_layers
from lesionseg.training.checkpoints import save_model_file
from lesionseg.training.curves import plot_learning_curves

log = logging.getLogger(__name__)

TRAINER_NAME = "nnUNetTrainer_lesionseg"
RESULT_BUDGET = ("epochs", "iterations_per_epoch", "val_iterations_per_epoch", "initial_lr", "seed")
"""The training settings that change what a training gives (not how fast): a checkpoint of others is not resumed."""


def budgeted_trainer(budget: Mapping[str, Any]) -> type:
    """``nnUNetTrainer`` with the budget of ``training:`` (epochs, iterations_per_epoch,
    val_iterations_per_epoch, initial_lr) and a checkpoint after every epoch; its ``__init__`` keeps the base
    signature, which nnU-Net records by name."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")) -> None:
        nnUNetTrainer.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(budget["epochs"])
        self.num_iterations_per_epoch = int(budget["iterations_per_epoch"])
        self.num_val_iterations_per_epoch = int(budget["val_iterations_per_epoch"])
        self.initial_lr = float(budget["initial_lr"])
        self.save_every = 1

    return type(TRAINER_NAME, (nnUNetTrainer,), {"__init__": __init__})


def history_rows(logged: Mapping[str, Sequence[Any]], region_names: Sequence[str]) -> list[dict[str, Any]]:
    """nnU-Net's per-epoch log as the pipeline's training history: epoch, training loss, validation loss, learning
    rate, nnU-Net's pseudo Dice per region or class (on its validation patches), seconds, and ``kept`` on the last
    epoch, whose weights the model holds (:mod:`lesionseg.training.curves`)."""
    rows = []
    for epoch, loss in enumerate(logged["train_losses"]):
        row: dict[str, Any] = {"epoch": epoch + 1, "loss": float(loss), "val_loss": float(logged["val_losses"][epoch]),
                               "lr": float(logged["lrs"][epoch])}
        row |= {f"val_dice_{name}": float(dice)
                for name, dice in zip(region_names, logged["dice_per_class_or_region"][epoch], strict=True)}
        row["seconds"] = float(logged["epoch_end_timestamps"][epoch] - logged["epoch_start_timestamps"][epoch])
        row["kept"] = int(epoch == len(logged["train_losses"]) - 1)  # nnU-Net predicts with its last epoch
        rows.append(row)
    return rows


def dice_names(scheme: LabelScheme) -> list[str]:
    """What nnU-Net's pseudo Dice is per: the regions (region-based) or the foreground classes."""
    layers = region_layers(scheme)
    return [name for name, _ in layers] if layers is not None else list(scheme.class_names[1:])


def train_fold(preprocessed: Path, results: Path, fold: int, configuration: str, budget: Mapping[str, Any],
               device: torch.device, threads: int, augmentation_processes: int, compile_network: bool = False) -> dict:
    """Train (or resume) fold ``fold`` of the preprocessed dataset; returns the final checkpoint and the
    trainer's log. ``budget``: epochs, iterations_per_epoch, val_iterations_per_epoch, initial_lr, seed.

    A fold folder left by a training of other plans, splits or budget is removed first, so that only a killed run
    of this very training is resumed.
    """
    from lesionseg.nnunet.planning import plans_file

    plans = json.loads(plans_file(preprocessed).read_text())
    dataset_json = json.loads((preprocessed / DATASET_NAME / "dataset.json").read_text())
    splits = json.loads((preprocessed / DATASET_NAME / "splits_final.json").read_text())
    folder = _fold_folder(results, plans, configuration, fold)
    identity = hashlib.sha256(json.dumps({"plans": plans, "split": splits[fold], "budget": {k: budget[k] for k in RESULT_BUDGET},
                                          "configuration": configuration}, sort_keys=True).encode()).hexdigest()[:16]
    identity_file = folder / "lesionseg_identity.txt"
    if folder.exists() and (not identity_file.is_file() or identity_file.read_text() != identity):
        log.info("nnU-Net: %s holds another training's checkpoints; starting afresh", folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    identity_file.write_text(identity)
    torch.manual_seed(int(budget["seed"]))
    np.random.seed(int(budget["seed"]))
    with nnunet_environment(preprocessed=preprocessed, results=results, processes=threads,
                            augmentation_processes=augmentation_processes, compile_network=compile_network):
        trainer_type = budgeted_trainer(budget)
        latest = folder / "checkpoint_latest.pth"
        trainer = trainer_type(plans={**plans, "continue_training": latest.is_file()}, configuration=configuration,
                               fold=fold, dataset_json=dataset_json, device=device)
        if latest.is_file():
            trainer.load_checkpoint(str(latest))
            log.info("nnU-Net: resuming fold %d at epoch %d of %d", fold, trainer.current_epoch,
                     trainer.num_epochs)
        trainer.run_training()
        final = Path(trainer.output_folder) / "checkpoint_final.pth"
        checkpoint = torch.load(final, map_location="cpu", weights_only=False)
        logged = {key: trainer.logger.get_value(key, step=None) for key in
                  ("train_losses", "val_losses", "lrs", "dice_per_class_or_region", "mean_fg_dice", "ema_fg_dice",
                   "epoch_start_timestamps", "epoch_end_timestamps")}
    return {"checkpoint": checkpoint, "logged": logged, "plans": plans, "dataset_json": dataset_json}


def _fold_folder(results: Path, plans: Mapping[str, Any], configuration: str, fold: int) -> Path:
    """nnU-Net's output folder of a fold of this trainer, plans and configuration."""
    return results / DATASET_NAME / f"{TRAINER_NAME}__{plans['plans_name']}__{configuration}" / f"fold_{fold}"


def augmentation_workers(setting: int | str, device: torch.device, threads: int) -> int:
    """Data augmentation processes: as configured, or (``auto``) none on the CPU, whose cores train the network,
    and on a GPU the job's other cores, at most 12 (nnU-Net's choice for its own GPU nodes)."""
    if setting != "auto":
        return int(setting)
    return 0 if device.type == "cpu" else max(0, min(12, threads - 1))


def train_model_file(preprocessed: Path, results: Path, fold: int, *, model_name: str, dataset: str,
                     parameters: Mapping[str, Any], budget: Mapping[str, Any], scheme: LabelScheme,
                     modalities: Sequence[str], fingerprint: str, preprocessing: Mapping[str, Any],
                     train_subjects: Sequence[str], val_subjects: Sequence[str], threads: int, model_path: Path,
                     history_path: Path, curve_path: Path) -> None:
    """Rule nnunet_train: train (or resume) one fold on the job's device and write its model file, history and
    learning curve."""
    from lesionseg.inference.dense import default_device

    torch.set_num_threads(threads)
    device = default_device()
    log.info("nnU-Net %s of %s, fold %d (%s, %s planner) on %s: %d epochs of %d iterations", model_name, dataset,
             fold, parameters["configuration"], parameters["planner"], device, budget["epochs"],
             budget["iterations_per_epoch"])
    trained = train_fold(preprocessed, results, fold, parameters["configuration"], budget, device, threads,
                         augmentation_workers(budget["augmentation_processes"], device, threads),
                         compile_network=bool(budget["compile"]))
    write_trained_model(trained, model_path, history_path, curve_path, model_name=model_name, dataset=dataset,
                        parameters=parameters, budget=budget, scheme=scheme, modalities=modalities,
                        fingerprint=fingerprint, preprocessing=preprocessing, train_subjects=train_subjects,
                        val_subjects=val_subjects)


def write_trained_model(trained: Mapping[str, Any], model_path: Path, history_path: Path, curve_path: Path, *,
                        model_name: str, dataset: str, parameters: Mapping[str, Any], budget: Mapping[str, Any],
                        scheme: LabelScheme, modalities: Sequence[str], fingerprint: str,
                        preprocessing: Mapping[str, Any], train_subjects: Sequence[str],
                        val_subjects: Sequence[str]) -> None:
    """The trained fold as a model file, its history (CSV) and its learning curve."""
    from lesionseg.training.loop import write_history

    checkpoint, logged = trained["checkpoint"], trained["logged"]
    history = history_rows(logged, dice_names(scheme))
    ema = logged["ema_fg_dice"]
    record = {
        "name": model_name, "architecture": ARCHITECTURE,
        "parameters": {**parameters, "plans": trained["plans"], "dataset_json": trained["dataset_json"],
                       "trainer": checkpoint["trainer_name"],
                       "mirror_axes": [int(a) for a in checkpoint["inference_allowed_mirroring_axes"] or ()]},
        "in_channels": len(modalities), "n_classes": scheme.n_classes, "training": dict(budget), "phase": 1,
        "best_epoch": len(history), "best_score": float(ema[-1]) if ema else float("nan"), "history": history,
        "state_dict": {k: v.detach().cpu() for k, v in checkpoint["network_weights"].items()},
    }
    save_model_file(model_path, {
        "name": model_name, "networks": [record], "scheme": scheme.describe(),
        "modalities": list(modalities), "preprocessing": dict(preprocessing), "preprocessing_fingerprint": fingerprint,
        "provenance": {"dataset": dataset, "train_subjects": list(train_subjects),
                       "val_subjects": list(val_subjects), "versions": package_versions()},
    })
    write_history(str(history_path), history)
    plot_learning_curves(curve_path, {1: history}, {**scheme.class_colours, **scheme.region_colours},
                         f"{dataset}: {model_name} (nnU-Net {parameters['configuration']}, pseudo Dice on validation "
                         "patches)")
