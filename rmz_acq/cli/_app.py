"""The ``rmz-acq`` application object, its root options and one-line errors.

A mistake the user can fix (a missing file, a bad range, a plan outside the
stage limits) ends with ``error: <what and how to fix it>`` on stderr and exit
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import RmzError

__all__ = ["EXIT_USER_ERROR", "Precision", "app", "fail", "parse_limits"]

app = typer.Typer(
    name="rmz-acq",
    help="Adaptive volumetric wide-field imaging with Recurrent-MZ.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_USER_ERROR = 2

# ``--precision`` of every command that reconstructs (checked by session.compute_dtype).
Precision = Annotated[
    str,
    typer.Option(
        "--precision",
        help="float32, or bfloat16: 1.5-2x faster on CPUs with native bfloat16.",
    ),
]


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USER_ERROR)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True)
    ] = False,
) -> None:
    if version:
        from .. import __version__

        typer.echo(f"rmz-acq {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


def parse_limits(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    parts = text.split(":")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise RmzError(f"--z-limits {text!r} must be LOW:HIGH in um, e.g. -5:25") from None
    if not lo < hi:
        raise RmzError(f"--z-limits {text!r}: LOW must be below HIGH")
    return lo, hi
