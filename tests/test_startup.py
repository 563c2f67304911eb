"""Start-up cost per job: the Snakefile's parse (Snakemake's, and on a cluster every job's) imports none of the
heavy packages, and the modules of the rules that run no network import no torch."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Seconds each (torch about 1.5 s); nibabel (lesionseg.io, a few tens of milliseconds) is not among them.
HEAVY = ("torch", "numba", "nnunetv2", "ants", "SimpleITK", "matplotlib", "scipy.ndimage", "scipy.stats")

_MODULES_AFTER = """
import sys
try:
{code}
finally:
    print("@@modules", *sorted(sys.modules))
"""


def modules_after(code: str, cwd: Path) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    indented = "\n".join(f"    {line}" for line in code.splitlines())
    done = subprocess.run([sys.executable, "-c", _MODULES_AFTER.format(code=indented)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("@@modules ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return set(lines[-1].split()[1:])


def heavy_in(modules: set[str]) -> list[str]:
    return [name for name in HEAVY if name in modules]


def test_the_snakefile_parses_without_heavy_packages(tmp_path):
    argv = ["-s", str(ROOT / "Snakefile"), "--configfile", str(ROOT / "config" / "config.yaml"), "--list-rules"]
    code = f"""from snakemake.cli import main
try:
    main({argv!r})
except SystemExit as end:
    assert not end.code, end.code"""
    modules = modules_after(code, tmp_path)
    assert "lesionseg.training.settings" in modules  # the config's models were checked
    assert heavy_in(modules) == []


@pytest.mark.parametrize("module", [
    "lesionseg.inference.steps",  # nnunet_case reads its images with it; its network steps import torch on use
    "lesionseg.inference.segmentation_steps",
    "lesionseg.nnunet.layout",
    "lesionseg.preprocessing.steps",
    "lesionseg.evaluation.steps",
    "lesionseg.evaluation.calibration",
    "lesionseg.evaluation.quality_steps",
    "lesionseg.reporting.overlays",
])
def test_the_modules_of_rules_without_a_network_import_no_torch(module, tmp_path):
    modules = modules_after(f"import {module}", tmp_path)
    assert "torch" not in modules and "numba" not in modules


def test_overlays_import_no_tables():
    modules = modules_after("import lesionseg.reporting.overlays", ROOT)
    assert "pandas" not in modules and "scipy.stats" not in modules
