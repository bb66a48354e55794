"""pydantic validation and prunekit errors, both ways: a prunekit check run inside a validator
becomes the ``ValueError`` pydantic reports (:func:`as_value_error`), and a pydantic error becomes
one line per bad field (:func:`describe_errors`) raised as the most specific prunekit error behind
it (:func:`error_class`)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from prunekit.errors import ConfigError, PrunekitError


def as_value_error(check: Any, value: Any) -> Any:
    """``check(value)``, with a prunekit error turned into the ValueError pydantic reports (the
    prunekit error stays its ``__cause__``, see :func:`error_class`)."""
    try:
        return check(value)
    except PrunekitError as err:
        raise ValueError(str(err)) from err


def error_class(err: ValidationError) -> type[ConfigError]:
    """The most specific prunekit error behind a validation error (an unknown registry name
    stays an :class:`~prunekit.errors.UnknownNameError`), else :class:`ConfigError`."""
    for e in err.errors():
        cause = getattr((e.get("ctx") or {}).get("error"), "__cause__", None)
        if isinstance(cause, ConfigError):
            return type(cause)
    return ConfigError


def describe_errors(err: ValidationError, prefix: str = "") -> str:
    """One line per bad field of a pydantic error: ``path: message``."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        path = ".".join(p for p in (prefix, loc) if p)
        message = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{path}: {message}" if path else message)
    return "; ".join(parts)
