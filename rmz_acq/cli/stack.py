"""``rmz-acq stack``: the mechanical z-stack (ground truth), on any config.

``rmz-acq simulate`` is its old name, kept as an alias: it never simulated
anything itself (a simulated config does that) and runs on real configs too.
"""

from __future__ import annotations

import functools
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import AcquisitionError, RmzError
from ._app import ExposureMs, ZLimits, app, fail, parse_limits
from ._signals import exit_cancelled, stop_on_signals


@app.command()
def stack(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Micro-Manager .cfg (simulated or real).")
    ],
    z_range: Annotated[
        str, typer.Option("--z-range", help="START:STOP:STEP in um, STOP included.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .ome.tif.")],
    exposure_ms: ExposureMs = None,
    z_limits: ZLimits = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the output file if it exists.")
    ] = False,
) -> None:
    """Acquire a full z-stack (the mechanical scan) and write an OME-TIFF."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ..hardware import focus_limits_um, load_core
    from ..io.outputs import check_output_file
    from ..safety import check_within_limits, travel_limits
    from ..zgrid import parse_z_range
    from ..zstack import FrameRecord, acquire_zstack

    try:
        zr = parse_z_range(z_range)
        limits = parse_limits(z_limits)
        if exposure_ms is not None and not exposure_ms > 0:
            raise RmzError(f"--exposure-ms must be positive, got {exposure_ms:g}")
        check_output_file(output, overwrite=overwrite)
        core = load_core(config)
        planes = zr.planes_um()
        limits, narrowed = travel_limits(focus_limits_um(core), limits)
        if narrowed:
            typer.echo(f"warning: {narrowed}", err=True)
        check_within_limits(planes.tolist(), limits)
        if exposure_ms is not None:
            core.setExposure(exposure_ms)
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

            stop = threading.Event()
            with stop_on_signals(stop.set) as received:
                records = acquire_zstack(
                    core,
                    planes.tolist(),
                    output,
                    z_step_um=zr.step_um,
                    limits_um=limits,
                    on_frame=advance,
                    should_stop=stop.is_set,
                )
    except AcquisitionError as exc:  # the hardware failed mid-stack: the file keeps its frames
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except (RmzError, ValueError) as exc:
        raise fail(exc) from None
    if received:
        raise exit_cancelled(received[0], f"{len(records)} of {len(planes)} planes in {output}")
    measured = [r.measured_z_um for r in records]
    typer.echo(
        f"wrote {output}: {len(records)} planes, z {min(measured):.3f} to "
        f"{max(measured):.3f} um (measured)"
    )


@app.command("simulate", help="The old name of `stack`, kept as an alias.")
@functools.wraps(stack)
def _simulate(*args: Any, **kwargs: Any) -> None:
    typer.echo("note: `rmz-acq simulate` is now `rmz-acq stack` (same options)", err=True)
    stack(*args, **kwargs)
