"""The conda environments, the package metadata and the lock file pin the same versions, and every rule's
conda environment provides what its script imports."""

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterable
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO
from script_imports import PACKAGE, absolute_module, third_party_imports


def lock(name: str = "requirements.lock") -> dict[str, str]:
    """The pins of a lock file (what running needs; ``requirements-test.lock``: what the tests need beyond it)."""
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def pip_requirements(env: Path) -> list[str]:
    """The ``pip:`` list of a conda environment file."""
    spec = yaml.safe_load(env.read_text())
    return next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))


def test_every_conda_environment_agrees_with_the_lock():
    pins = lock()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        pip = pip_requirements(env)
        assert pip, env
        for requirement in pip:
            name, version = requirement.split("==")
            assert pins.get(name.lower().replace("_", "-")) == version, f"{env.name}: {requirement}"


def test_direct_dependencies_are_satisfied_by_the_lock():
    pins = lock()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name]), f"{spec} vs lock {pins[name]}"
    assert (pins["torch"], pins["torchvision"]) == ("2.14.1", "0.29.1")  # a release pair: one build of both
    assert re.match(r"2\.[0-3]\.", pins["numpy"]) and int(pins["packaging"].split(".")[0]) < 26


def test_test_dependencies_are_pinned_apart_from_what_running_needs():
    running, testing = lock(), lock("requirements-test.lock")
    assert not set(running) & set(testing), "a package is pinned in both lock files"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for spec in project["optional-dependencies"]["test"]:
        requirement = Requirement(spec)
        name = requirement.name.lower().replace("_", "-")
        assert name in testing, f"{name} is not in requirements-test.lock"
        assert requirement.specifier.contains(testing[name]), f"{spec} vs lock {testing[name]}"


# --- What each rule's script imports, against what its environment installs --------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict:
    """The rules as Snakemake parses them, and the search path of their script jobs (tests/workflow_rules.py).
    Without PYTHONPATH, which Snakemake removes from the jobs of a conda environment."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    described = subprocess.run([sys.executable, str(REPO / "tests" / "workflow_rules.py"), str(REPO / "Snakefile")],
                               capture_output=True, text=True, env=environment)
    assert described.returncode == 0, described.stderr
    return json.loads(described.stdout)


@cache
def module_distributions() -> dict[str, list[str]]:
    """Top-level module -> the installed distributions that provide it (scanning them takes a while)."""
    return metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    """The installed distributions that provide a top-level module (``yaml`` -> ``pyyaml``)."""
    providers = module_distributions().get(module)
    assert providers, f"module {module!r} is not installed in the test environment: no distribution to check"
    return {canonicalize_name(name) for name in providers}


@cache
def runtime_requirements(distribution: str) -> frozenset[str]:
    """The distributions that a distribution requires on this platform, without extras (installed metadata)."""
    requirements = (Requirement(line) for line in metadata.requires(distribution) or [])
    return frozenset(canonicalize_name(r.name) for r in requirements if r.marker is None or r.marker.evaluate())


def installed_by(requirements: Iterable[str]) -> set[str]:
    """The distributions that installing these requirements brings, with their dependencies' dependencies."""
    installed, pending = set(), [canonicalize_name(Requirement(line).name) for line in requirements]
    while pending:
        name = pending.pop()
        if name not in installed:
            installed.add(name)
            pending.extend(runtime_requirements(name))
    return installed


def script_rules(workflow: dict) -> list[dict]:
    """The rules that run a script (all but ``all``)."""
    rules = [rule for rule in workflow["rules"] if rule["script"]]
    assert len(rules) > 20, "the workflow's rules were not found"
    return rules


def test_script_imports_follow_what_runs(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import os
        from typing import TYPE_CHECKING
        from lesionseg.io import read_image
        if TYPE_CHECKING:
            import pandas
        def called():
            import scipy.ndimage
        def never_called():
            import torch
        called()
    """))
    assert third_party_imports(script) == {"nibabel": "lesionseg.io", "numpy": "lesionseg.io",
                                           "SimpleITK": "lesionseg.io.read_image", "scipy": "script.py.called"}
    assert absolute_module("lesionseg.inference.steps", False, "methods", 1) == "lesionseg.inference.methods"
    assert absolute_module("lesionseg.inference", True, None, 1) == "lesionseg.inference"
    assert absolute_module("lesionseg.inference.steps", False, "io", 2) == "lesionseg.io"


def test_every_script_rule_names_a_conda_environment(workflow):
    missing = [rule["name"] for rule in script_rules(workflow) if not rule["conda"]]
    assert not missing, f"rules with a script and no conda environment: {missing}"


def test_every_rule_environment_provides_what_its_script_imports(workflow):
    gaps = []
    for rule in script_rules(workflow):
        env = Path(rule["conda"])
        installed = installed_by(pip_requirements(env))
        for module, importer in sorted(third_party_imports(Path(rule["script"])).items()):
            if not distributions_of(module) & installed:
                gaps.append(f"rule {rule['name']}: {env.name} installs nothing that provides {module!r} "
                            f"(imported by {importer})")
    assert not gaps, "\n".join(gaps)


def test_script_jobs_find_lesionseg_in_the_workflow_directory(workflow):
    # No environment installs lesionseg: Snakemake appends its own process's sys.path, where including the
    # Snakefile put the workflow's directory, to the sys.path of every script job, a conda environment's too
    # (PYTHONPATH would not do: Snakemake removes it from those jobs).
    assert str(REPO) in workflow["job_search_path"]
    assert (REPO / PACKAGE).is_dir()
    for env in (REPO / "envs").glob("*.yaml"):
        installed = installed_by(pip_requirements(env))
        assert PACKAGE not in installed, f"{env.name}: a {PACKAGE} installed there would hide the workflow's own"
