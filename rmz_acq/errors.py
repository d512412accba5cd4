"""Errors a user can fix: the command line prints their message, no traceback."""

from __future__ import annotations

__all__ = ["AcquisitionError", "ConfigError", "RmzError", "StageSafetyError"]


class RmzError(Exception):
    """Base of every error caused by input the user can correct."""


class ConfigError(RmzError):
    """A Micro-Manager configuration cannot be loaded or lacks a device."""


class StageSafetyError(RmzError):
    """A planned focus position lies outside the stage's travel limits."""


class AcquisitionError(RmzError):
    """The acquisition did not deliver the frames it planned."""
