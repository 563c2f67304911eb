"""Training batches made ahead of the network, in a background thread, and the backends set for training.

Cutting segments and augmenting them is host work; done in the training loop
itself it leaves a GPU idle between steps. :class:`PrefetchedBatches` makes the
batches of an epoch in one background thread, a few ahead, in pinned memory on
CUDA so that their copies to the device are asynchronous. One thread draws every
batch in order from the epoch's generator, so the batches are exactly those the
loop would draw itself: a resumed training stays exact. (A ``DataLoader`` with
worker processes would need a generator per worker and the volumes copied into
each; cutting is cheap next to a training step, so one thread keeps up.)
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

log = logging.getLogger(__name__)

# Batches made ahead of the one training: enough to hide a slow cut, few enough to hold little memory.
PREFETCH_DEPTH = 3
# What cuBLAS needs to be deterministic (torch's reproducibility notes).
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"

MakeBatch = Callable[[], tuple[np.ndarray, np.ndarray]]


class PrefetchedBatches:
    """``count`` batches ``(inputs, targets)`` as CPU tensors, made by ``make_batch`` in a background thread.

    With ``pin`` they are in pinned memory (copy them with ``non_blocking=True``).
    An error in ``make_batch`` is raised where the batch is taken. Iterate once,
    inside ``with`` so that the thread stops however the loop ends;
    :attr:`waited_s` is the time the consumer spent waiting for batches.
    """

    def __init__(self, make_batch: MakeBatch, count: int, pin: bool, depth: int = PREFETCH_DEPTH) -> None:
        self._make_batch, self._count, self._pin = make_batch, count, pin
        self._queue: queue.Queue[tuple[torch.Tensor, torch.Tensor] | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="training-batches", daemon=True)
        self.waited_s = 0.0

    def _produce(self) -> None:
        try:
            for _ in range(self._count):
                inputs, targets = (torch.from_numpy(array) for array in self._make_batch())
                if self._pin:
                    inputs, targets = inputs.pin_memory(), targets.pin_memory()
                if not self._put((inputs, targets)):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(error)

    def _put(self, item: tuple[torch.Tensor, torch.Tensor] | BaseException) -> bool:
        """Queue ``item`` unless the consumer stopped; False if it did."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __enter__(self) -> PrefetchedBatches:
        return self

    def __exit__(self, *exception: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._thread.start()
        for _ in range(self._count):
            started = time.perf_counter()
            item = self._queue.get()
            self.waited_s += time.perf_counter() - started
            if isinstance(item, BaseException):
                raise item
            yield item


def configure_backends(device: torch.device, deterministic: bool) -> None:
    """Set torch up for training on ``device``: deterministic algorithms where asked, else cuDNN's autotuner.

    Training segments have one size, so ``cudnn.benchmark`` picks the fastest
    convolution once per shape. ``deterministic`` makes CUDA runs repeatable
    (cuBLAS workspace, deterministic cuDNN, ``torch.use_deterministic_algorithms``);
    operations that have no deterministic CUDA kernel only warn, as torch
    allows, and stay the one source of run-to-run differences. The CPU is
    deterministic either way.
    """
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
    if device.type == "cuda":
        log.info("CUDA training: %s", "deterministic algorithms" if deterministic else "cuDNN autotuner")
