"""The conda environments, the package metadata and the lock file pin the same versions."""

import re
import tomllib

import yaml

from conftest import REPO


def lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_every_conda_environment_agrees_with_the_lock():
    pins = lock()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        assert pip, env
        for requirement in pip:
            name, version = requirement.split("==")
            assert pins.get(name.lower().replace("_", "-")) == version, f"{env.name}: {requirement}"


def test_direct_dependencies_are_satisfied_by_the_lock():
    from packaging.requirements import Requirement

    pins = lock()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name]), f"{spec} vs lock {pins[name]}"
    assert pins["torch"] == "2.13.0"
    assert re.match(r"2\.[0-3]\.", pins["numpy"]) and int(pins["packaging"].split(".")[0]) < 26
