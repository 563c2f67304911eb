"""The CUDA paths' decisions, checked on the CPU: memory planned per job, batches made ahead, backends, devices.

What needs a GPU to run at all (kernels, streams, the gradient scaler's
arithmetic) is checked by bench/gpu.py on a CUDA machine.
"""

from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pytest
import torch

from lesionseg import devices
from lesionseg.crf import CRFParameters
from lesionseg.crf import tuning
from lesionseg.inference import dense
from lesionseg.labels import LABEL_SCHEMES
from lesionseg.models.havaei import TwoPathCNN
from lesionseg.training.feeding import PrefetchedBatches, configure_backends

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # a device object only: nothing here runs on it
GB = 2**30


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device of 80 GB as torch.cuda reports it, with what this process holds and what is free settable."""
    state = {"total": 80 * GB, "allocated": 1 * GB, "reserved": 2 * GB, "free": 70 * GB}

    class Properties:
        total_memory = state["total"]

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Properties)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: state["allocated"])
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: state["reserved"])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (state["free"], state["total"]))
    monkeypatch.setattr(devices, "_gpu_memory_share", 1.0)
    return state


def test_segment_memory_is_planned_from_the_device_not_from_what_is_free(fake_gpu, monkeypatch):
    planned = dense.CUDA_USABLE_FRACTION * 80 * GB - 1 * GB  # the device, less the networks this job holds
    assert dense.memory_budget(CUDA) == int(planned)
    # Two jobs sharing the GPU (gpus: jobs_per_gpu: 2) plan for half each.
    monkeypatch.setattr(devices, "_gpu_memory_share", 0.5)
    assert dense.memory_budget(CUDA) == int(dense.CUDA_USABLE_FRACTION * 40 * GB - 1 * GB)


def test_a_gpu_used_outside_the_workflow_bounds_the_plan_with_a_warning(fake_gpu, caplog):
    fake_gpu["free"] = 10 * GB
    with caplog.at_level(logging.WARNING, logger="lesionseg.inference.dense"):
        budget = dense.memory_budget(CUDA)
    assert budget == 10 * GB + 2 * GB - 1 * GB  # free, plus the allocator's unused blocks
    assert "another process uses it" in caplog.text


def test_2d_batches_shrink_to_fit_the_memory_budget_and_give_the_same_result():
    torch.manual_seed(0)
    model = TwoPathCNN(2, 3).eval()
    rng = np.random.default_rng(0)
    image = rng.standard_normal((2, 40, 36, 6)).astype(np.float32)
    mask = np.ones(image.shape[1:], dtype=bool)
    one_slice = dense.estimate_memory(model, 2, (40, 36), 1)
    plan = dense.plan_tiles(model, mask, 2, CPU, batch_size=6, memory_budget_mb=2.5 * one_slice / 2**20)
    assert plan.batch_size == 2  # two slices fit, six would not
    assert dense.plan_tiles(model, mask, 2, CPU, batch_size=6, memory_budget_mb=2048).batch_size == 6
    small = dense.predict_volume(model, image, mask, CPU, batch_size=6, memory_budget_mb=2.5 * one_slice / 2**20)
    large = dense.predict_volume(model, image, mask, CPU, batch_size=6, memory_budget_mb=2048)
    np.testing.assert_allclose(small, large, atol=1e-6)


def test_bfloat16_is_refused_on_a_gpu_without_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    model = TwoPathCNN(1, 2)
    with pytest.raises(ValueError, match="bfloat16 is not supported by this GPU .Tesla V100"):
        dense.predict_volume(model, np.zeros((1, 8, 8, 2), np.float32), np.ones((8, 8, 2), bool), CUDA,
                             precision="bfloat16")


def test_prefetched_batches_are_those_drawn_in_order():
    def draws(rng):
        return lambda: (rng.standard_normal((2, 3)).astype(np.float32), rng.integers(0, 5, 2))

    drawn_in_the_loop = draws(np.random.default_rng(7))
    expected = [drawn_in_the_loop() for _ in range(5)]
    batches = PrefetchedBatches(draws(np.random.default_rng(7)), 5, pin=False, depth=2)
    got = list(batches)
    assert len(got) == 5 and batches.waited_s >= 0
    for (x, y), (ex, ey) in zip(got, expected, strict=True):
        assert isinstance(x, torch.Tensor) and np.array_equal(x.numpy(), ex) and np.array_equal(y.numpy(), ey)


def test_an_error_making_a_batch_reaches_the_training_loop():
    calls = iter(range(10))

    def make_batch():
        if next(calls) == 2:
            raise ValueError("subject s3: segment outside the volume")
        return np.zeros(1, np.float32), np.zeros(1, np.int64)

    with pytest.raises(ValueError, match="segment outside the volume"):
        list(PrefetchedBatches(make_batch, 5, pin=False))


def test_a_loop_that_stops_early_stops_the_batch_thread():
    with pytest.raises(KeyboardInterrupt), PrefetchedBatches(
            lambda: (np.zeros(1, np.float32), np.zeros(1, np.int64)), 1000, pin=False, depth=2) as batches:
        for index, _ in enumerate(batches):
            if index == 3:
                raise KeyboardInterrupt  # a killed job, or an error in the training step
    assert not any(thread.name == "training-batches" and thread.is_alive() for thread in threading.enumerate())


def test_backends_deterministic_or_autotuned(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        configure_backends(CUDA, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        configure_backends(CUDA, deterministic=False)
        assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
        configure_backends(CPU, deterministic=False)
        assert not torch.backends.cudnn.benchmark
    finally:
        configure_backends(CPU, deterministic=False)


def test_crf_tuning_runs_the_crf_on_the_jobs_device(monkeypatch):
    used = []

    class RecordingCRF:
        """Records the device each subject's kernels are built on; its marginals are the probabilities."""

        def __init__(self, probabilities, images, spacing, parameters, mask=None, device=None):
            used.append(device)
            self.probabilities = probabilities

        def marginals(self, parameters):
            return self.probabilities

    monkeypatch.setattr(tuning, "MeanFieldCRF", RecordingCRF)
    scheme = LABEL_SCHEMES["brats2013"]
    probabilities = np.full((scheme.n_classes, 4, 4, 4), 1 / scheme.n_classes, np.float32)
    case = tuning.ValidationCase("s1", probabilities, np.zeros((4, 4, 4, 4), np.float32),
                                 np.zeros((4, 4, 4), np.uint8), np.ones((4, 4, 4), bool), (1.0, 1.0, 1.0))
    tuning.tune_crf([case], scheme, CRFParameters(), trials=3, seed=0, device="cuda:0")
    assert used == ["cuda:0"] * 3  # one set of kernels per trial (one weight draw per sigma draw)
