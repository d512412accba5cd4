"""``rmz-acq``: sub-commands, progress and one-line errors.

A mistake the user can fix (a missing file, a bad range, a plan outside the
stage limits) ends with ``error: <what and how to fix it>`` on stderr and exit
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import RmzError

app = typer.Typer(
    name="rmz-acq",
    help="Adaptive volumetric wide-field imaging with Recurrent-MZ.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_USER_ERROR = 2


def _fail(message: str) -> typer.Exit:
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


@app.command()
def simulate(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Micro-Manager .cfg (simulated or real).")
    ],
    z_range: Annotated[
        str, typer.Option("--z-range", help="START:STOP:STEP in um, STOP included.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .ome.tif.")],
    exposure_ms: Annotated[
        float | None, typer.Option("--exposure-ms", help="Camera exposure (default: config's).")
    ] = None,
    z_limits: Annotated[
        str | None,
        typer.Option("--z-limits", help="LOW:HIGH focus travel in um, if the stage has none."),
    ] = None,
) -> None:
    """Acquire a full z-stack (the mechanical scan) and write an OME-TIFF."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ..hardware import load_core
    from ..zgrid import parse_z_range
    from ..zstack import FrameRecord, acquire_zstack

    try:
        zr = parse_z_range(z_range)
        limits = _parse_limits(z_limits)
        core = load_core(config)
        if exposure_ms is not None:
            if not exposure_ms > 0:
                raise RmzError(f"--exposure-ms must be positive, got {exposure_ms:g}")
            core.setExposure(exposure_ms)
        planes = zr.planes_um()
        with Progress(
            TextColumn("[bold]z-stack"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("z = {task.fields[z]} um"),
            transient=False,
            disable=not sys.stderr.isatty(),
        ) as progress:
            task = progress.add_task("scan", total=len(planes), z="-")

            def advance(record: FrameRecord) -> None:
                progress.update(task, advance=1, z=f"{record.measured_z_um:.3f}")

            records = acquire_zstack(
                core,
                planes.tolist(),
                output,
                z_step_um=zr.step_um,
                limits_um=limits,
                on_frame=advance,
            )
    except (RmzError, ValueError) as exc:
        raise _fail(str(exc)) from None
    measured = [r.measured_z_um for r in records]
    typer.echo(
        f"wrote {output}: {len(records)} planes, z {min(measured):.3f} to "
        f"{max(measured):.3f} um (measured)"
    )


def _parse_limits(text: str | None) -> tuple[float, float] | None:
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


def main() -> None:
    """Console-script entry point."""
    app()
