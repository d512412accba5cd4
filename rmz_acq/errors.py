"""Errors a user can fix: the command line prints their message, no traceback."""

from __future__ import annotations

__all__ = [
    "AcquisitionError",
    "ConfigError",
    "DataWarning",
    "InvalidValueError",
    "OutputExistsError",
    "RmzError",
    "RunLockedError",
    "StageSafetyError",
]


class RmzError(Exception):
    """Base of every error caused by input the user can correct."""


class InvalidValueError(RmzError, ValueError):
    """A value the user gave is malformed or out of range (also a ``ValueError``)."""


class ConfigError(RmzError):
    """A Micro-Manager configuration cannot be loaded or lacks a device."""


class StageSafetyError(RmzError):
    """A planned focus position lies outside the stage's travel limits."""


class AcquisitionError(RmzError):
    """The acquisition did not deliver the frames it planned."""


class DataWarning(UserWarning):
    """Data were read or written with a loss the user should know about."""


class OutputExistsError(RmzError):
    """An output file or run folder is already there (``--overwrite`` replaces it)."""


class RunLockedError(RmzError):
    """Another scan holds the run folder."""


def validation_message(exc: Exception, *, as_flags: bool = False) -> str:
    """A pydantic ``ValidationError`` in one line: ``field: what is wrong (got X)``.

    With ``as_flags`` a field is named as its command-line flag
    (``max_frames`` -> ``--max-frames``).  Any other exception gives its text
    with the whitespace collapsed.
    """
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return " ".join(str(exc).split())
    parts = []
    for error in errors():
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        location = ".".join(str(p) for p in error.get("loc", ()))
        if not location:
            parts.append(message)
            continue
        name = "--" + location.replace("_", "-") if as_flags else location
        value = error.get("input")
        got = "" if isinstance(value, dict) or value is None else f" (got {value!r})"
        parts.append(f"{name}: {message[:1].lower()}{message[1:]}{got}")
    return "; ".join(parts)
