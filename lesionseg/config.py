"""Loading and validating the workflow configuration.

The schema (``schemas/config.schema.yaml``) is the single description of the
config; the Snakefile validates with ``snakemake.utils.validate`` and the
``lesionseg check`` command with :func:`load_config`, both filling in defaults.
Combinations the schema cannot express clearly are checked when the datasets are
built (:func:`lesionseg.datasets.datasets_from_config`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message says where and how to fix it."""


def load_schema() -> dict[str, Any]:
    if not SCHEMA_PATH.is_file():
        raise ConfigError(f"config schema not found at {SCHEMA_PATH}; run lesionseg from its source checkout")
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _validator_filling_defaults(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    import jsonschema  # on use: most jobs import this module for ConfigError alone

    base = jsonschema.validators.validator_for(schema)
    set_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from set_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": properties_with_defaults})(schema)


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` validated against the schema, with defaults filled in."""
    config = copy.deepcopy(dict(config))
    validator = _validator_filling_defaults(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {'/'.join(str(p) for p in e.absolute_path) or '<top>'}: {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    # Defaults of nested objects are filled when those objects are validated, which
    # happens after their parent's defaults are set: validate once more to reach them.
    validator.validate(config)
    return config


# Mappings whose order means something: a label scheme's classes are the network's outputs, in order;
# a generic dataset's per-modality image templates give the channel order when 'modalities:' is absent.
ORDERED_KEYS = frozenset({"labels", "images"})


def sorted_keys(value: Any) -> Any:
    """``value`` with the keys of its mappings sorted, except below ``ORDERED_KEYS``; lists keep their order.

    Elsewhere key order carries no meaning in the config, but Snakemake compares
    rule params as written: sorting makes a reordered config re-run nothing.
    """
    if isinstance(value, Mapping):
        return {key: value[key] if key in ORDERED_KEYS else sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return value


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it (defaults filled in)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the config must be a mapping with a 'datasets:' key")
    try:
        return validate_config(config)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
