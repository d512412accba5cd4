"""``rmz-acq simulate``: the mechanical z-stack (ground truth)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import RmzError
from ._app import app, fail, parse_limits


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
        limits = parse_limits(z_limits)
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
        raise fail(str(exc)) from None
    measured = [r.measured_z_um for r in records]
    typer.echo(
        f"wrote {output}: {len(records)} planes, z {min(measured):.3f} to "
        f"{max(measured):.3f} um (measured)"
    )
