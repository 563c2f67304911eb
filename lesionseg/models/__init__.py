"""The networks, declared once as data: architecture name -> builder and paper defaults.

A model in the config names an architecture and overrides any of its
hyper-parameters; the defaults reproduce the papers (anchors.md sections 1-2).
Every model is fully convolutional and exposes ``dims`` (2 or 3), ``n_classes``,
``input_size(output)`` / ``output_size(input)``, ``receptive_field`` and
``output_layer`` (the layer phase-2 training retrains).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

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


ARCHITECTURES: dict[str, Architecture] = {
    "deepmedic": Architecture(
        DeepMedic,
        {"maps": [30, 30, 40, 40, 40, 40, 50, 50], "subsample_factors": [3], "fc_maps": [150, 150],
         "dropout": 0.5, "residual_layers": []},
        "Kamnitsas et al. 2017: normal + factor-3 pathway, FC 150, as in the paper",
    ),
    "deepmedic-residual": Architecture(
        DeepMedic,
        {"maps": [30, 30, 40, 40, 40, 40, 50, 50], "subsample_factors": [3, 5], "fc_maps": [250, 250],
         "dropout": 0.5, "residual_layers": [4, 6, 8]},
        "the later DeepMedic: residual connections at layers 4, 6, 8, factor-3 and factor-5 pathways, FC 250",
    ),
    "cascaded-deepmedic": Architecture(
        _cascaded_deepmedic,
        {"maps": [30, 30, 40, 40, 40, 40, 50, 50], "subsample_factors": [3], "fc_maps": [150, 150],
         "dropout": 0.5, "residual_layers": []},
        "beyond both papers: a DeepMedic fed the class probabilities of a first, frozen DeepMedic",
    ),
    "twopathcnn": Architecture(TwoPathCNN, {"maxout": 2, "dropout": 0.2}, "Havaei et al. 2017 TwoPathCNN"),
    "inputcascadecnn": Architecture(InputCascadeCNN, {"maxout": 2, "dropout": 0.2}, "Havaei InputCascadeCNN"),
    "localcascadecnn": Architecture(LocalCascadeCNN, {"maxout": 2, "dropout": 0.2}, "Havaei LocalCascadeCNN"),
    "mfcascadecnn": Architecture(MFCascadeCNN, {"maxout": 2, "dropout": 0.2}, "Havaei MFCascadeCNN"),
}

CASCADES = ("cascaded-deepmedic", "inputcascadecnn", "localcascadecnn", "mfcascadecnn")


def architecture_parameters(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The hyper-parameters of architecture ``name``: its defaults updated by ``overrides``, checked."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; use one of {', '.join(ARCHITECTURES)}")
    architecture = ARCHITECTURES[name]
    accepted = inspect.signature(
        DeepMedic if architecture.build is _cascaded_deepmedic else architecture.build
    ).parameters
    unknown = sorted(set(overrides or {}) - (set(accepted) - {"in_channels", "n_classes", "first"}))
    if unknown:
        raise ValueError(f"architecture {name!r} has no hyper-parameter(s) {unknown}")
    return {**architecture.defaults, **(overrides or {})}


def build_model(name: str, in_channels: int, n_classes: int, overrides: Mapping[str, Any] | None = None) -> nn.Module:
    """A freshly initialised network of architecture ``name``."""
    parameters = architecture_parameters(name, overrides)
    return ARCHITECTURES[name].build(in_channels, n_classes, **parameters)


__all__ = [
    "ARCHITECTURES",
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
