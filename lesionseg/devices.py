"""Devices of the jobs that run networks: the CPU allocator's pages and the GPU each job uses."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

# The lock of the GPU slot this process holds (kept open for the life of the process), and its share of the memory.
_held_gpu_lock: IO[str] | None = None
_gpu_memory_share = 1.0


def use_huge_pages() -> None:
    """Let PyTorch's CPU allocator use transparent huge pages.

    Dense inference of a 1 mm volume spends much of its time in page faults
    otherwise (bench/inference.py --huge-pages: about 40% faster on 2 cores).
    PyTorch reads the variable at its first allocation, so call this before any
    tensor exists; a value the user set is kept.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def gpu_names() -> list[str]:
    """The NVIDIA GPUs of this machine (``nvidia-smi -L``), listed without initialising CUDA (which would fix
    the visible devices); empty without a driver."""
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return []
    try:
        listing = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    # "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-...)" -> "NVIDIA H100 80GB HBM3"
    return [line.split(":", 1)[1].split("(UUID")[0].strip() for line in listing.splitlines()
            if line.startswith("GPU ") and ":" in line]


def visible_gpus() -> list[str]:
    """The GPUs this process may use: those ``CUDA_VISIBLE_DEVICES`` lists (indices or UUIDs; empty when set to
    nothing), else every NVIDIA GPU of the machine (:func:`gpu_names`)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [device.strip() for device in listed.split(",") if device.strip() and device.strip() != "-1"]
    return [str(index) for index in range(len(gpu_names()))]


def count_gpus() -> int:
    """The GPUs this process may use (:func:`visible_gpus`)."""
    return len(visible_gpus())


def gpu_job_slots(jobs_per_gpu: int = 1) -> int:
    """How many network jobs may run at once on this machine's GPUs: ``jobs_per_gpu`` per GPU, 0 without one."""
    return count_gpus() * jobs_per_gpu


def default_lock_dir() -> Path:
    """Where the GPU locks live: per user and, inside a SLURM job, per job (each SLURM job has GPUs of its own,
    numbered from 0 in every job)."""
    job = os.environ.get("SLURM_JOB_ID")
    return Path(tempfile.gettempdir()) / (f"lesionseg-gpu-locks-{os.getuid()}" + (f"-slurm{job}" if job else ""))


def gpu_memory_share() -> float:
    """The part of its GPU's memory this process plans for: 1 / ``jobs_per_gpu`` of :func:`pin_gpu` (1 if it
    took no lock)."""
    return _gpu_memory_share


def _lock_name(device: str) -> str:
    return "gpu-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in device)


def _try_lock(path: Path) -> IO[str] | None:
    handle = open(path, "w")  # noqa: SIM115 - held while the job runs
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def pin_gpu(jobs_per_gpu: int = 1, gpus: Sequence[str] | None = None, lock_dir: Path | None = None,
            timeout_s: float | None = None, poll_s: float = 5.0) -> str | None:
    """Give this job a GPU (one of ``jobs_per_gpu`` slots of it) and make it the only one CUDA sees.

    Snakemake's ``gpu`` resource bounds how many GPU jobs run at once (the
    Snakefile sets it to :func:`gpu_job_slots` unless ``--resources gpu=K``
    says otherwise) but not which device each one uses, so every job would
    start on device 0. Each job instead takes the first free slot of the
    visible devices (``gpus``; default :func:`visible_gpus`: those
    ``CUDA_VISIBLE_DEVICES`` lists, as a SLURM allocation or the user set it,
    else all): it holds an exclusive file lock on it, released by the kernel
    when the process ends, even when killed, and sets ``CUDA_VISIBLE_DEVICES``
    to that device. With one GPU too, so that two network jobs never share it
    unless ``jobs_per_gpu`` allows; each then plans for its share of the memory
    (:func:`gpu_memory_share`). When every slot is taken, it waits. Call before
    torch initialises CUDA. Returns the device chosen, or None without GPUs.
    """
    global _held_gpu_lock, _gpu_memory_share
    if _held_gpu_lock is not None:
        return os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = visible_gpus() if gpus is None else list(gpus)
    if not gpus:
        return None
    lock_dir = lock_dir or default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    started, waiting_logged = time.monotonic(), False
    while True:
        for slot in range(jobs_per_gpu):
            for device in gpus:
                handle = _try_lock(lock_dir / f"{_lock_name(device)}.slot{slot}.lock")
                if handle is None:
                    continue
                _held_gpu_lock, _gpu_memory_share = handle, 1.0 / jobs_per_gpu
                os.environ["CUDA_VISIBLE_DEVICES"] = device
                log.info("using GPU %s (slot %d of %d; CUDA_VISIBLE_DEVICES=%s)", device, slot + 1, jobs_per_gpu,
                         device)
                return device
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise TimeoutError(f"all {len(gpus) * jobs_per_gpu} GPU slots stayed in use by other lesionseg jobs for "
                               f"{timeout_s:.0f} s (locks in {lock_dir}); limit concurrent GPU jobs with "
                               f"--resources gpu={len(gpus) * jobs_per_gpu}")
        if not waiting_logged:
            log.info("all %d GPU slots are in use by other jobs; waiting for one (run with --resources gpu=%d "
                     "to avoid the wait)", len(gpus) * jobs_per_gpu, len(gpus) * jobs_per_gpu)
            waiting_logged = True
        time.sleep(poll_s)


def prepare_torch_process(jobs_per_gpu: int = 1) -> None:
    """Set-up of a job that runs networks; call before torch allocates memory or initialises CUDA."""
    use_huge_pages()
    pin_gpu(jobs_per_gpu)
