"""Devices of the network jobs: one GPU per job on a multi-GPU workstation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from lesionseg import devices


@pytest.fixture
def no_device_set(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(devices, "_held_gpu_lock", None)


def hold_gpu_in_another_process(lock_dir, gpus: int) -> subprocess.Popen:
    """A process that takes a GPU with pin_gpu and keeps it until its stdin closes."""
    code = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        from lesionseg.devices import pin_gpu
        print(pin_gpu(gpus={gpus}, lock_dir=Path({str(lock_dir)!r})), flush=True)
        sys.stdin.read()
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_each_job_takes_a_gpu_of_its_own(no_device_set, tmp_path, monkeypatch):
    other = hold_gpu_in_another_process(tmp_path, gpus=2)
    try:
        assert other.stdout.readline().strip() == "0"
        assert devices.pin_gpu(gpus=2, lock_dir=tmp_path) == "1"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
        # With both taken, a third job waits (here: gives up after a moment, saying why).
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
        with pytest.raises(TimeoutError, match="--resources gpu=2"):
            devices.pin_gpu(gpus=2, lock_dir=tmp_path, timeout_s=0.2, poll_s=0.05)
    finally:
        other.stdin.close()
        other.wait()
    # A finished (or killed) job's GPU is free again.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(devices, "_held_gpu_lock", None)
    assert devices.pin_gpu(gpus=2, lock_dir=tmp_path / "fresh") == "0"


def test_a_device_chosen_by_slurm_or_the_user_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert devices.pin_gpu(gpus=4, lock_dir=tmp_path) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3" and not list(tmp_path.iterdir())


def test_no_choice_without_several_gpus(no_device_set, tmp_path):
    assert devices.pin_gpu(gpus=0, lock_dir=tmp_path) is None
    assert devices.pin_gpu(gpus=1, lock_dir=tmp_path) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_count_gpus_without_nvidia_smi_is_zero(monkeypatch):
    monkeypatch.setattr(devices.shutil, "which", lambda name: None)
    assert devices.count_gpus() == 0
