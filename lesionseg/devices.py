"""Devices of the jobs that run networks: the CPU allocator's pages and the GPU each job uses."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

# The lock of the GPU this process holds; kept open for the life of the process.
_held_gpu_lock: IO[str] | None = None


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


def count_gpus() -> int:
    """NVIDIA GPUs of this machine (:func:`gpu_names`)."""
    return len(gpu_names())


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"lesionseg-gpu-locks-{os.getuid()}"


def pin_gpu(gpus: int | None = None, lock_dir: Path | None = None, timeout_s: float | None = None,
            poll_s: float = 5.0) -> str | None:
    """Give this job a GPU of its own and make it the only one CUDA sees.

    Snakemake's ``gpu`` resource bounds how many GPU jobs run at once
    (``--resources gpu=K``) but not which device each one uses, so every job
    would start on device 0. Each job instead takes the lowest free device: it
    holds an exclusive file lock on it (released by the kernel when the
    process ends, even when killed) and sets ``CUDA_VISIBLE_DEVICES``. When
    every device is taken, it waits. A value already set, by SLURM for the
    GPUs it allocated or by the user, is kept. Call before torch initialises
    CUDA. Returns the device index chosen, or None.
    """
    global _held_gpu_lock
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return None
    gpus = count_gpus() if gpus is None else gpus
    if gpus <= 1:
        return None  # nothing to choose (one GPU is shared as Snakemake's gpu resource allows)
    lock_dir = lock_dir or default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    started, waiting_logged = time.monotonic(), False
    while True:
        for device in range(gpus):
            handle = open(lock_dir / f"gpu{device}.lock", "w")  # noqa: SIM115 - held while the job runs
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            _held_gpu_lock = handle
            os.environ["CUDA_VISIBLE_DEVICES"] = str(device)
            log.info("using GPU %d of %d (CUDA_VISIBLE_DEVICES=%d)", device, gpus, device)
            return str(device)
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise TimeoutError(f"all {gpus} GPUs stayed in use by other lesionseg jobs for {timeout_s:.0f} s "
                               f"(locks in {lock_dir}); limit concurrent GPU jobs with --resources gpu={gpus}")
        if not waiting_logged:
            log.info("all %d GPUs are in use by other jobs; waiting for one (run with --resources gpu=%d "
                     "to avoid the wait)", gpus, gpus)
            waiting_logged = True
        time.sleep(poll_s)


def prepare_torch_process() -> None:
    """Set-up of a job that runs networks; call before torch allocates memory or initialises CUDA."""
    use_huge_pages()
    pin_gpu()
