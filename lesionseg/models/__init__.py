"""The networks: architecture name -> builder, with the papers' defaults.

A model in the config names an architecture and overrides any of its
hyper-parameters; the defaults reproduce the papers (anchors.md sections 1-2).
Which hyper-parameters each architecture takes, and their defaults, are declared
as data in :mod:`lesionseg.architectures` (torch-free: the Snakefile checks the
config's models with it); here each name is paired with its builder.
Every model is fully convolutional and exposes ``dims`` (2 or 3), ``n_classes``,
``input_size(output)`` / ``output_size(input)``, ``receptive_field`` and
``output_layer`` (the layer phase-2 training retrains).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from lesionseg.architectures import CASCADES, HYPERPARAMETERS, architecture_parameters
from lesionseg.models.deepmedic import CascadedDeepMedic, DeepMedic
from lesionseg.models.havaei import (
    InputCascadeCNN,
    LocalCascadeCNN,
    MFCascadeCNN,
    TwoPathCNN,
    paper_parameter_count,
)


@dataclass(frozen=True)
class Architecture:
    """How to build one family of networks, and its defaults."""

    build: Callable[..., nn.Module]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


def _cascaded_deepmedic(in_channels: int, n_classes: int, **params: Any) -> CascadedDeepMedic:
    """Two DeepMedics of the same hyper-parameters; the first's weights come from its own training."""
    first = DeepMedic(in_channels, n_classes, **params)
    return CascadedDeepMedic(first, DeepMedic(in_channels + n_classes, n_classes, **params))


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "deepmedic": DeepMedic,
    "deepmedic-residual": DeepMedic,
    "cascaded-deepmedic": _cascaded_deepmedic,
    "twopathcnn": TwoPathCNN,
    "inputcascadecnn": InputCascadeCNN,
    "localcascadecnn": LocalCascadeCNN,
    "mfcascadecnn": MFCascadeCNN,
}

ARCHITECTURES: dict[str, Architecture] = {
    name: Architecture(BUILDERS[name], declared.defaults, declared.description)
    for name, declared in HYPERPARAMETERS.items()
}


def build_model(name: str, in_channels: int, n_classes: int, overrides: Mapping[str, Any] | None = None) -> nn.Module:
    """A freshly initialised network of architecture ``name``."""
    parameters = architecture_parameters(name, overrides)
    return ARCHITECTURES[name].build(in_channels, n_classes, **parameters)


__all__ = [
    "ARCHITECTURES",
    "BUILDERS",
    "CASCADES",
    "Architecture",
    "CascadedDeepMedic",
    "DeepMedic",
    "InputCascadeCNN",
    "LocalCascadeCNN",
    "MFCascadeCNN",
    "TwoPathCNN",
    "architecture_parameters",
    "build_model",
    "paper_parameter_count",
]
