"""``rmz-acq reconstruct`` (one file of frames) and ``reconstruct-runs`` (a folder of runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import RmzError
from ..io.run_folder import VOLUME
from ._app import Device, Model, Precision, app, fail


@app.command()
def reconstruct(
    frames: Annotated[Path, typer.Argument(help="Input frames (OME-TIFF with PositionZ).")],
    z_range: Annotated[
        str, typer.Option("--z-range", help="Output planes START:STOP:STEP in um, STOP included.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output volume .ome.tif.")],
    model: Model,
    z: Annotated[
        str | None,
        typer.Option("--z", help="Frame z list in um (overrides PositionZ), e.g. 3,9,15."),
    ] = None,
    pixel_size_um: Annotated[
        float | None, typer.Option("--pixel-size-um", help="If the frames do not state it.")
    ] = None,
    device: Device = None,
    precision: Precision = "float32",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the output file if it exists.")
    ] = False,
    order: Annotated[
        str | None,
        typer.Option(
            "--order",
            help="Push the frames as-taken (the file's order, scaled by the first frame's "
            "intensity statistics) or as a z-stack (z: sorted by z, lowest first, scaled by "
            "all the frames' statistics together). Default: as the run's scan built its "
            "volume (report.json beside a run's frames.ome.tif); for any other file z, "
            "unless it holds more frames than the model was trained on.",
        ),
    ] = None,
) -> None:
    """Reconstruct a volume from M frames at arbitrary z."""
    from ..reconstruct import reconstruct_file
    from ..session import PushResult, compute_dtype
    from ..zgrid import parse_z_list, parse_z_range

    try:
        compute_dtype(precision)
        planes = parse_z_range(z_range).planes_um()
        z_list = parse_z_list(z) if z is not None else None

        def report(result: PushResult) -> None:
            change = (
                "-" if result.frobenius_change is None else f"{result.relative_change:.4f} relative"
            )
            typer.echo(
                f"frame {result.frame_index + 1}: {result.reconstruction_s:.2f} s, change {change}",
                err=True,
            )

        path = reconstruct_file(
            frames,
            output,
            planes,
            model,
            z_override=z_list,
            pixel_size_um=pixel_size_um,
            device=device,
            precision=precision,
            on_push=report,
            overwrite=overwrite,
            order=order,
        )
    except (RmzError, ValueError) as exc:
        raise fail(exc) from None
    typer.echo(f"wrote {path}: {len(planes)} planes from {planes[0]:g} to {planes[-1]:g} um")


@app.command("reconstruct-runs")
def reconstruct_runs(
    folder: Annotated[Path, typer.Argument(help="Folder of runs (RUN_DIR/frames.ome.tif).")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="A preset, .safetensors weights file or zoo package. Default: the model the "
            "runs' report.json files name, when it is here with the same SHA-256; "
            "required otherwise.",
        ),
    ] = None,
    z_range: Annotated[
        str | None,
        typer.Option(
            "--z-range",
            help="Output planes START:STOP:STEP in um (default: each run's report.json).",
        ),
    ] = None,
    output_name: Annotated[
        str, typer.Option("--output-name", help="Volume file written in each run folder.")
    ] = VOLUME,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace volumes that are already there.")
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            help="Local Dask workers, runs reconstructed at once (default: one per core).",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="A running Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: this machine).",
        ),
    ] = None,
    pixel_size_um: Annotated[
        float | None,
        typer.Option("--pixel-size-um", help="For frames that do not state it."),
    ] = None,
    plane_groups: Annotated[
        int | None,
        typer.Option(
            "--plane-groups",
            help="Split each run into this many groups of output planes, one task each "
            "(default: only runs too large for half a worker's memory).",
        ),
    ] = None,
    device: Device = None,
    precision: Precision = "float32",
) -> None:
    """Reconstruct every run in a folder, several at once (locally or on a Dask cluster)."""
    from ..batch import RunResult, find_runs, model_of_runs, worker_split
    from ..batch import reconstruct_runs as run_batch
    from ..session import compute_dtype
    from ..zgrid import parse_z_range

    try:
        compute_dtype(precision)
        planes = parse_z_range(z_range).planes_um() if z_range is not None else None
        if plane_groups is not None and plane_groups < 1:
            raise RmzError(f"--plane-groups must be 1 or more, got {plane_groups}")
        if pixel_size_um is not None and not pixel_size_um > 0:
            raise RmzError(f"--pixel-size-um must be positive, got {pixel_size_um:g}")
        runs, skipped, unusable = find_runs(
            folder,
            planes,
            output_name=output_name,
            overwrite=overwrite,
            pixel_size_um=pixel_size_um,
        )
        for path in skipped:
            typer.echo(f"skipped {path}: already there (--overwrite replaces it)", err=True)
        for run_dir, reason in unusable:
            typer.echo(f"skipped {run_dir}: {reason}", err=True)
        if not runs:
            typer.echo("nothing to do")
            if unusable:
                raise fail(f"{len(unusable)} run(s) could not be reconstructed (see above)")
            return
        if model is None:
            model = model_of_runs(runs)
            typer.echo(f"model: {model}, as the runs' reports name it", err=True)
        processes, threads = worker_split(len(runs), jobs)
        if scheduler is not None:
            typer.echo(f"{len(runs)} runs, on the Dask cluster at {scheduler}", err=True)
        elif processes > 1:
            typer.echo(
                f"{len(runs)} runs on a local Dask cluster of {processes} workers with "
                f"{threads} threads each",
                err=True,
            )
        else:
            typer.echo(f"{len(runs)} runs, one at a time with {threads} threads", err=True)

        def report(result: RunResult, done: int, total: int) -> None:
            status = "ok" if result.ok else f"FAILED: {result.error}"
            typer.echo(
                f"[{done}/{total}] {result.run.output} {result.seconds:.1f} s {status}", err=True
            )

        results = run_batch(
            runs,
            model,
            jobs=jobs,
            scheduler=scheduler,
            device=device,
            precision=precision,
            plane_groups=plane_groups,
            on_done=report,
        )
    except (RmzError, ValueError) as exc:
        raise fail(exc) from None
    failed = [r for r in results if not r.ok]
    typer.echo(f"reconstructed {len(results) - len(failed)} of {len(results)} runs")
    if unusable:
        raise fail(
            f"{len(unusable)} run(s) skipped for lack of an output grid: "
            + ", ".join(str(p) for p, _ in unusable)
        )
    if failed:
        raise fail(f"{len(failed)} runs failed: " + ", ".join(str(r.run.frames) for r in failed))
