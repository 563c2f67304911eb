"""Optimisers and learning-rate schedules of the two papers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn


class NesterovRMSprop(torch.optim.Optimizer):
    """RMSProp with Nesterov momentum, as DeepMedic trains (Kamnitsas et al. 2017).

    ``v = rho * v + (1 - rho) * g^2``; ``step = lr * g / (sqrt(v) + eps)``;
    ``m = momentum * m - step``; ``w += momentum * m - step``.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-4,
                 momentum: float = 0.6) -> None:
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                state = self.state[parameter]
                if not state:
                    state["square_average"] = torch.zeros_like(parameter)
                    state["velocity"] = torch.zeros_like(parameter)
                square, velocity = state["square_average"], state["velocity"]
                square.mul_(group["rho"]).addcmul_(parameter.grad, parameter.grad, value=1 - group["rho"])
                step = parameter.grad / (square.sqrt() + group["eps"]) * group["lr"]
                velocity.mul_(group["momentum"]).sub_(step)
                parameter.add_(velocity * group["momentum"] - step)
        return loss


def make_optimizer(parameters: Iterable[nn.Parameter], settings: Mapping[str, Any], lr: float) -> torch.optim.Optimizer:
    """The optimiser named in ``settings`` (``rmsprop``: DeepMedic; ``sgd``: Havaei) at learning rate ``lr``.

    L2 is applied as weight decay; L1 is added to the loss by :func:`l1_penalty`.
    """
    name = settings["name"]
    if name == "rmsprop":
        return NesterovRMSprop(parameters, lr, settings["rho"], settings["eps"], settings["momentum"])
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=settings["momentum"])
    raise ValueError(f"unknown optimizer {name!r}; use rmsprop or sgd")


def learning_rate(base: float, epoch: int, settings: Mapping[str, Any]) -> float:
    """Learning rate at ``epoch`` (0-based): halved at each epoch of ``lr_halve_at`` and decayed by ``lr_decay``."""
    lr = base * 0.5 ** sum(1 for e in settings["lr_halve_at"] if epoch >= e)
    return lr * settings["optimizer"].get("lr_decay", 1.0) ** epoch


def momentum(epoch: int, epochs: int, optimizer_settings: Mapping[str, Any]) -> float:
    """Havaei's momentum, ramped linearly from its start to ``momentum_final`` over the epochs."""
    start = optimizer_settings["momentum"]
    final = optimizer_settings.get("momentum_final", start)
    return start + (final - start) * (epoch / max(1, epochs - 1))


def set_hyperparameters(optimizer: torch.optim.Optimizer, lr: float, momentum_value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
        group["momentum"] = momentum_value


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of absolute weights of the trainable convolution kernels."""
    return sum(m.weight.abs().sum() for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.Conv3d) and m.weight.requires_grad)
