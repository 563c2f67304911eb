"""Job set-up: one GPU per job on a multi-GPU workstation, resource estimates, canonical config."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from lesionseg import resources, runtime
from lesionseg.config import sorted_keys


@pytest.fixture
def no_device_set(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(runtime, "_held_gpu_lock", None)


def hold_gpu_in_another_process(lock_dir, gpus: int) -> subprocess.Popen:
    """A process that takes a GPU with pin_gpu and keeps it until its stdin closes."""
    code = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        from lesionseg.runtime import pin_gpu
        print(pin_gpu(gpus={gpus}, lock_dir=Path({str(lock_dir)!r})), flush=True)
        sys.stdin.read()
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return process


def test_each_job_takes_a_gpu_of_its_own(no_device_set, tmp_path, monkeypatch):
    other = hold_gpu_in_another_process(tmp_path, gpus=2)
    try:
        assert other.stdout.readline().strip() == "0"
        assert runtime.pin_gpu(gpus=2, lock_dir=tmp_path) == "1"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
        # With both taken, a third job waits (here: gives up after a moment, saying why).
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
        with pytest.raises(TimeoutError, match="--resources gpu=2"):
            runtime.pin_gpu(gpus=2, lock_dir=tmp_path, timeout_s=0.2, poll_s=0.05)
    finally:
        other.stdin.close()
        other.wait()
    # A finished (or killed) job's GPU is free again.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(runtime, "_held_gpu_lock", None)
    assert runtime.pin_gpu(gpus=2, lock_dir=tmp_path / "fresh") == "0"


def test_a_device_chosen_by_slurm_or_the_user_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert runtime.pin_gpu(gpus=4, lock_dir=tmp_path) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3" and not list(tmp_path.iterdir())


def test_no_choice_without_several_gpus(no_device_set, tmp_path):
    assert runtime.pin_gpu(gpus=0, lock_dir=tmp_path) is None
    assert runtime.pin_gpu(gpus=1, lock_dir=tmp_path) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_count_gpus_without_nvidia_smi_is_zero(monkeypatch):
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    assert runtime.count_gpus() == 0


TRAINING = {"epochs": 35, "batches_per_epoch": 200, "phase2": {"epochs": 5}, "subjects_per_epoch": 50}


def test_training_estimates_grow_with_the_work():
    assert resources.training_runtime_minutes(TRAINING, 1, n_val=10) > \
        resources.training_runtime_minutes(TRAINING, 2, n_val=10) > \
        resources.training_runtime_minutes({**TRAINING, "phase2": {"epochs": 1}}, 2, n_val=10)
    assert resources.training_runtime_minutes(TRAINING, 1, n_val=20) > resources.training_runtime_minutes(
        TRAINING, 1, n_val=0)
    # Memory: the subjects one epoch holds, not the whole training set.
    small = resources.training_mem_mb(input_mb=100, n_train=10, subjects_per_epoch=50)
    assert resources.training_mem_mb(input_mb=1000, n_train=100, subjects_per_epoch=50) > small
    assert resources.training_mem_mb(input_mb=1000, n_train=100, subjects_per_epoch=10) < \
        resources.training_mem_mb(input_mb=1000, n_train=100, subjects_per_epoch=50)


def test_sorted_keys_is_recursive_and_keeps_list_order():
    config = {"b": {"z": 1, "a": [{"y": 2, "x": 3}, 5]}, "a": [3, 1, 2]}
    canonical = sorted_keys(config)
    assert canonical == config
    assert list(canonical) == ["a", "b"] and list(canonical["b"]) == ["a", "z"]
    assert list(canonical["b"]["a"][0]) == ["x", "y"] and canonical["a"] == [3, 1, 2]


def test_sorted_keys_keeps_the_order_of_label_classes():
    """Class order is the network's output order (class 0 holds the background): never sorted."""
    config = {"datasets": {"mine": {"labels": {"classes": {"normal": [0], "lesion": [1]}}, "root": "x"}}}
    canonical = sorted_keys(config)
    assert list(canonical["datasets"]["mine"]["labels"]["classes"]) == ["normal", "lesion"]
    assert list(canonical["datasets"]["mine"]) == ["labels", "root"]
