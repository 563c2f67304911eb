"""A model file's nnU-Net applied to a preprocessed subject by nnU-Net's own predictor.

``nnUNetPredictor`` is initialised from the model file alone (plans, configuration, dataset.json, weights and
mirroring axes; no nnU-Net folder is read), and predicts with its sliding window, Gaussian weighting and, when
asked, test-time mirroring, on the job's device. It resamples to its planned spacing and back itself, so its
probabilities come out on the subject's preprocessing grid, where the pipeline's other networks leave theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lesionseg.labels import scheme_from_config
from lesionseg.nnunet import INFERENCE_DEFAULTS
from lesionseg.nnunet.layout import class_probabilities, from_nnunet_axes, region_layers, to_nnunet_axes


class NnUNetModel(nn.Module):
    """An nnU-Net network with what its predictor needs (a model file's record), as the pipeline's networks are
    modules: ``in_channels``, ``n_classes`` and :meth:`predict`."""

    def __init__(self, record: Mapping[str, Any], scheme: Mapping[str, Any]) -> None:
        super().__init__()
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        parameters = record["parameters"]
        self.plans_manager = PlansManager(dict(parameters["plans"]))
        self.configuration_manager = self.plans_manager.get_configuration(parameters["configuration"])
        self.dataset_json = dict(parameters["dataset_json"])
        self.trainer_name = parameters["trainer"]
        self.mirror_axes = tuple(parameters["mirror_axes"])
        self.in_channels, self.n_classes = int(record["in_channels"]), int(record["n_classes"])
        label_manager = self.plans_manager.get_label_manager(self.dataset_json)
        layers = region_layers(scheme_from_config(scheme, name=scheme["name"]))
        self.layers = [index for _, index in layers] if layers is not None else None
        self.network = get_network_from_plans(
            self.configuration_manager.network_arch_class_name, self.configuration_manager.network_arch_init_kwargs,
            self.configuration_manager.network_arch_init_kwargs_req_import, self.in_channels,
            label_manager.num_segmentation_heads, allow_init=False, deep_supervision=False)
        self.network.load_state_dict(record["state_dict"])

    def predict(self, image: np.ndarray, spacing: Sequence[float], device: torch.device,
                settings: Mapping[str, Any], progress: bool = True) -> np.ndarray:
        """Class probabilities ``(n_classes, x, y, z)`` float32 of an image ``(c, x, y, z)`` with voxel sizes
        ``spacing`` (mm, x y z). ``settings``: mirroring, tile_step_size (:data:`INFERENCE_DEFAULTS`)."""
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        settings = {**INFERENCE_DEFAULTS, **settings}
        predictor = nnUNetPredictor(tile_step_size=float(settings["tile_step_size"]), use_gaussian=True,
                                    use_mirroring=bool(settings["mirroring"]),
                                    perform_everything_on_device=device.type == "cuda", device=device,
                                    verbose=False, verbose_preprocessing=False, allow_tqdm=progress)
        parameters = {k: v.to(device) for k, v in self.network.state_dict().items()}
        predictor.manual_initialization(self.network.to(device).eval(), self.plans_manager, self.configuration_manager,
                                        [parameters], self.dataset_json, self.trainer_name, self.mirror_axes)
        _, probabilities = predictor.predict_single_npy_array(
            to_nnunet_axes(image.astype(np.float32)), {"spacing": [float(s) for s in reversed(spacing)]}, None, None,
            True)
        outputs = from_nnunet_axes(np.asarray(probabilities, dtype=np.float32))
        return class_probabilities(outputs, self.layers, self.n_classes)
