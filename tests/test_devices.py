"""Devices of the network jobs: a GPU (slot) of its own for every job, with one GPU too."""

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
    monkeypatch.setattr(devices, "_gpu_memory_share", 1.0)


def release_gpu(monkeypatch) -> None:
    """Forget this process's GPU lock, as a new job would start without one."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(devices, "_held_gpu_lock", None)


def hold_gpu_in_another_process(lock_dir, gpus: list[str], jobs_per_gpu: int = 1) -> subprocess.Popen:
    """A process that takes a GPU with pin_gpu and keeps it until its stdin closes."""
    code = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        from lesionseg.devices import pin_gpu
        print(pin_gpu({jobs_per_gpu}, gpus={gpus!r}, lock_dir=Path({str(lock_dir)!r})), flush=True)
        sys.stdin.read()
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_each_job_takes_a_gpu_of_its_own(no_device_set, tmp_path, monkeypatch):
    other = hold_gpu_in_another_process(tmp_path, ["0", "1"])
    try:
        assert other.stdout.readline().strip() == "0"
        assert devices.pin_gpu(gpus=["0", "1"], lock_dir=tmp_path) == "1"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
        # With both taken, a third job waits (here: gives up after a moment, saying why).
        release_gpu(monkeypatch)
        with pytest.raises(TimeoutError, match="--resources gpu=2"):
            devices.pin_gpu(gpus=["0", "1"], lock_dir=tmp_path, timeout_s=0.2, poll_s=0.05)
    finally:
        other.stdin.close()
        other.wait()
    # A finished (or killed) job's GPU is free again.
    release_gpu(monkeypatch)
    assert devices.pin_gpu(gpus=["0", "1"], lock_dir=tmp_path / "fresh") == "0"


def test_one_gpu_is_not_shared_unless_jobs_per_gpu_allows(no_device_set, tmp_path, monkeypatch):
    other = hold_gpu_in_another_process(tmp_path, ["0"])
    try:
        assert other.stdout.readline().strip() == "0"
        with pytest.raises(TimeoutError, match="--resources gpu=1"):
            devices.pin_gpu(gpus=["0"], lock_dir=tmp_path, timeout_s=0.2, poll_s=0.05)
    finally:
        other.stdin.close()
        other.wait()
    release_gpu(monkeypatch)
    other = hold_gpu_in_another_process(tmp_path / "shared", ["0"], jobs_per_gpu=2)
    try:
        assert other.stdout.readline().strip() == "0"
        assert devices.pin_gpu(2, gpus=["0"], lock_dir=tmp_path / "shared", timeout_s=0.2) == "0"
        assert devices.gpu_memory_share() == 0.5  # each of the two plans for half the memory
    finally:
        other.stdin.close()
        other.wait()


def test_the_devices_slurm_or_the_user_listed_are_the_ones_locked(no_device_set, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,GPU-5f2c")
    assert devices.visible_gpus() == ["3", "GPU-5f2c"]
    assert devices.pin_gpu(lock_dir=tmp_path) == "3"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert [p.name for p in tmp_path.iterdir()] == ["gpu-3.slot0.lock"]
    # Every SLURM job has GPUs of its own, numbered from 0 in each: their locks must not meet.
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    first = devices.default_lock_dir()
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert devices.default_lock_dir() != first


def test_no_lock_without_gpus(no_device_set, tmp_path, monkeypatch):
    assert devices.pin_gpu(gpus=[], lock_dir=tmp_path) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # GPUs hidden on purpose
    assert devices.pin_gpu(lock_dir=tmp_path) is None
    assert not list(tmp_path.iterdir())


def test_count_gpus_without_nvidia_smi_is_zero(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(devices.shutil, "which", lambda name: None)
    assert devices.count_gpus() == 0
    assert devices.gpu_job_slots(jobs_per_gpu=2) == 0


def test_gpu_slots_bound_the_concurrent_network_jobs(tmp_path, monkeypatch):
    """Snakemake's gpu resource (set in the Snakefile) counts the GPUs nvidia-smi lists, times jobs_per_gpu."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA Test (UUID: GPU-a)'\necho 'GPU 1: NVIDIA Test (UUID: GPU-b)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices.gpu_names() == ["NVIDIA Test", "NVIDIA Test"]
    assert devices.gpu_job_slots() == 2 and devices.gpu_job_slots(jobs_per_gpu=3) == 6
