"""Saved models: weights plus everything needed to use them safely on new data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lesionseg.io import atomic_path
from lesionseg.models import build_model


class ModelMismatchError(ValueError):
    """A saved model does not fit the data it is asked to process."""


def save_model(path: str | Path, model: nn.Module, metadata: dict[str, Any]) -> None:
    """Write the weights and metadata (architecture, classes, modalities, fingerprint...) atomically."""
    with atomic_path(path) as tmp:
        torch.save({"state_dict": model.state_dict(), **metadata}, tmp)


def load_model(path: str | Path, expected_fingerprint: str | None = None,
               device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The saved network (eval mode) and its metadata; refuses a preprocessing fingerprint that differs."""
    saved = torch.load(path, map_location=device, weights_only=False)
    if expected_fingerprint is not None and saved["preprocessing_fingerprint"] != expected_fingerprint:
        raise ModelMismatchError(
            f"{path}: the model was trained on data preprocessed differently (fingerprint "
            f"{saved['preprocessing_fingerprint']}, data {expected_fingerprint}); retrain it or preprocess the data "
            "with the model's settings"
        )
    model = build_model(saved["architecture"], saved["in_channels"], saved["n_classes"], saved["parameters"])
    model.load_state_dict(saved["state_dict"])
    metadata = {k: v for k, v in saved.items() if k != "state_dict"}
    return model.to(device).eval(), metadata
