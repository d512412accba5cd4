"""``rmz-acq``: the console-script entry point; each sub-command lives in its own module."""

from __future__ import annotations

from . import (  # noqa: F401  (they register commands)
    acquire,
    average,
    evaluate,
    export,
    reconstruct,
    stack,
    train,
    validate,
)
from ._app import app, run_app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point: one-line errors for user mistakes (`run_app`)."""
    run_app()
