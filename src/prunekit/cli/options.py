"""Parsing of repeated ``KEY=VALUE`` command-line options (``--model-arg``, ``--set``)."""

from __future__ import annotations

from typing import Any

import yaml

from prunekit.errors import ConfigError


def key_values(pairs: list[str], option: str) -> dict[str, Any]:
    """``["width=8", "blocks=[3, 3, 3]"]`` -> ``{"width": 8, "blocks": [3, 3, 3]}`` (values are
    YAML, as in a recipe)."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} {pair!r}: expected KEY=VALUE, e.g. blocks=[3,3,3]")
        try:
            kwargs[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"{option} {pair!r}: the value is not valid YAML: {err}") from None
    return kwargs
