"""Exceptions raised by prunekit.

Every error names what was wrong and where (a layer, a parameter, a file, a unit index), so that a
user can act on it without reading the source. All derive from :class:`PrunekitError`; each also
derives from the built-in exception a Python user would expect (``ValueError``, ``TypeError``, ...).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable


class PrunekitError(Exception):
    """Base class of every error prunekit raises on purpose."""


class ConfigError(PrunekitError, ValueError):
    """An argument, option or recipe field has a value prunekit cannot use."""


class UnknownNameError(ConfigError):
    """A registry was asked for a name it does not hold."""


class DataError(PrunekitError, ValueError):
    """Data needed for scoring or evaluation is missing, empty or malformed."""


class ScoreError(PrunekitError, ValueError):
    """Scores are malformed: wrong shape, NaN or infinite values."""


class SelectionError(PrunekitError, ValueError):
    """A selection cannot meet its constraints (e.g. minimum widths make a sparsity unreachable)."""


class UnsupportedLayerError(PrunekitError, TypeError):
    """A layer or operation has no rule telling prunekit how to view or shrink it. Its message
    names the operation and the module, and ends with :func:`exclude_hint` (the user's way
    around it without writing a rule)."""


def exclude_hint(module: str) -> str:
    """The way around an unsupported operation in ``module`` that needs no new rule: the
    ``exclude`` option of :func:`prunekit.prune` (``--exclude`` on the command line, ``exclude:``
    in a recipe), which keeps the widths of everything that module touches."""
    where = module or "<the model's own forward>"
    pattern = f"exclude=[{module!r}]" if module else "exclude=[<the layers around it>]"
    return (
        f"or pass {pattern} to prunekit.prune (--exclude / recipe 'exclude:') to keep the "
        f"widths of everything {where} touches"
    )


class SaveFileError(PrunekitError, ValueError):
    """A save file is missing, corrupt, or does not match the model it is loaded into."""


def closest(name: str, choices: Iterable[str]) -> str:
    """Return a ``" (did you mean 'x'?)"`` hint for ``name`` among ``choices``, or ``""``."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_sparsity(value: float, where: str = "sparsity") -> float:
    """Return ``value`` as a float if it is a sparsity in [0, 1), else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number in [0, 1), got {value!r}")
    value = float(value)
    if math.isnan(value) or not 0.0 <= value < 1.0:
        raise ConfigError(
            f"{where} must be in [0, 1) (the fraction of units removed), got {value!r}"
        )
    return value
