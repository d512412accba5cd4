"""``rmz-acq``: sub-commands, progress and one-line errors.

A mistake the user can fix (a missing file, a bad range, a plan outside the
stage limits) ends with ``error: <what and how to fix it>`` on stderr and exit
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
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


@app.command()
def acquire(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Micro-Manager .cfg (simulated or real).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Preset or weights (default: from the config's optics)."
        ),
    ] = None,
    z_range: Annotated[
        str | None,
        typer.Option("--z-range", help="Output planes START:STOP:STEP um (default: the model's)."),
    ] = None,
    candidates: Annotated[
        str | None, typer.Option("--candidates", help="Focus planes the scan may take, e.g. 3,6,9.")
    ] = None,
    candidate_step: Annotated[
        float | None,
        typer.Option("--candidate-step", help="Candidate spacing (default: half the model's)."),
    ] = None,
    order: Annotated[
        str, typer.Option("--order", help="bisection, centre-out or as-given.")
    ] = "bisection",
    epsilon: Annotated[
        float | None,
        typer.Option("--epsilon", help="Stop when ||V_M - V_(M-1)||_F <= this (input units)."),
    ] = None,
    relative_epsilon: Annotated[
        float | None,
        typer.Option("--relative-epsilon", help="Stop when the change / ||V_M||_F <= this."),
    ] = None,
    min_frames: Annotated[int, typer.Option("--min-frames")] = 2,
    max_frames: Annotated[int | None, typer.Option("--max-frames")] = None,
    time_budget_s: Annotated[float | None, typer.Option("--time-budget-s")] = None,
    exposure_ms: Annotated[float | None, typer.Option("--exposure-ms")] = None,
    z_limits: Annotated[
        str | None, typer.Option("--z-limits", help="LOW:HIGH focus travel, if the stage has none.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; move nothing.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Refuse if optics or pixel size differ from the model's."),
    ] = False,
    save_history: Annotated[
        bool, typer.Option("--save-history", help="Also write the volume after every frame.")
    ] = False,
    snapshots: Annotated[
        bool, typer.Option("--snapshots", help="Write RUN_DIR/snapshots/frame_NN.png per frame.")
    ] = False,
    view: Annotated[
        bool, typer.Option("--view", help="Open the live viewer (needs rmz_acq[view]).")
    ] = False,
    slicer: Annotated[
        bool, typer.Option("--slicer", help="With --view: add ndv's 2D/3D slicer (OpenGL).")
    ] = False,
    device: Annotated[str | None, typer.Option("--device")] = None,
) -> None:
    """Adaptive scan: sparse planes until the volume stops changing."""
    from ..acquisition import AdaptiveScan, PlaneOrder, ScanPlan, ScanSettings, VolumeUpdate
    from ..acquisition.controller import DEFAULT_RELATIVE_EPSILON
    from ..errors import AcquisitionError
    from ..hardware import load_core
    from ..model.weights import load_model
    from ..zgrid import parse_z_list, parse_z_range

    try:
        if epsilon is not None and epsilon < 0:
            raise RmzError(f"--epsilon must be >= 0, got {epsilon:g}")
        if relative_epsilon is not None and relative_epsilon < 0:
            raise RmzError(f"--relative-epsilon must be >= 0, got {relative_epsilon:g}")
        try:
            plane_order = PlaneOrder(order)
        except ValueError:
            raise RmzError(
                f"--order {order!r}: choose {', '.join(o.value for o in PlaneOrder)}"
            ) from None
        limits = _parse_limits(z_limits)
        core = load_core(config)
        name = model or _preset_for(core)
        loaded = load_model(name, device or "cpu")
        conditions = loaded.conditions
        if z_range is not None:
            planes = parse_z_range(z_range).planes_um()
        elif conditions:
            planes = parse_z_range(
                f"0:{conditions['depth_um']}:{conditions['output_step_um']}"
            ).planes_um()
        else:
            raise RmzError("this model states no output range; give --z-range")
        spacing = float(conditions.get("input_spacing_um", 2 * (candidate_step or 1.0)))
        candidate_list = parse_z_list(candidates) if candidates is not None else None
        if candidate_list is None and candidate_step is None:
            half = spacing / 2
            lo, hi = float(planes[0]) + half, float(planes[-1]) - half
            count = int(np.floor((hi - lo) / half + 1e-6)) + 1 if hi >= lo else 1
            candidate_list = (
                [lo + half * i for i in range(count)] if hi >= lo else [float(planes.mean())]
            )
        plan = ScanPlan.build(
            planes,
            candidates_um=candidate_list,
            candidate_step_um=candidate_step,
            order=plane_order,
            reach_um=max(spacing, 1.0),
        )
        settings = ScanSettings(
            epsilon=epsilon,
            relative_epsilon=relative_epsilon
            if relative_epsilon is not None
            else (None if epsilon is not None else DEFAULT_RELATIVE_EPSILON),
            min_frames=min_frames,
            max_frames=max_frames,
            time_budget_s=time_budget_s,
            exposure_ms=exposure_ms,
            save_history=save_history,
            strict=strict,
        )
        scan = AdaptiveScan(core, loaded, plan, settings, output, limits_um=limits, device=device)
        for note in scan.warnings:
            typer.echo(f"warning: {note}", err=True)
        if dry_run:
            typer.echo(f"model: {loaded.name} ({loaded.sha256[:12]})")
            typer.echo(plan.describe())
            rule = (
                f"||V_M - V_(M-1)||_F <= {settings.epsilon:g}"
                if settings.epsilon is not None
                else f"relative change <= {settings.relative_epsilon:g}"
            )
            typer.echo(f"stop: {rule}, min {settings.min_frames} frames")
            return
        target = settings.epsilon if settings.epsilon is not None else settings.relative_epsilon

        def show(update: VolumeUpdate) -> None:
            r = update.record
            change = r.frobenius_change if settings.epsilon is not None else r.relative_change
            shown = "-" if change is None else f"{change:.4g}"
            typer.echo(
                f"frame {r.index + 1}/{len(plan.candidates_um)} at z {r.measured_z_um:.3f} um: "
                f"change {shown} (epsilon {target:g}), {r.reconstruction_s:.1f} s",
                err=True,
            )

        scan.events.volumeUpdated.connect(show)
        if snapshots:
            from ..preview.snapshots import SnapshotWriter

            # psygnal holds callbacks weakly: keep the writer alive for the scan.
            writer = SnapshotWriter(
                output / "snapshots",
                scan.summary.pixel_size_um,
                epsilon=settings.epsilon,
                relative_epsilon=settings.relative_epsilon,
            )
            scan.events.volumeUpdated.connect(writer)
        try:
            report = _run_with_viewer(scan, settings, slicer) if view else scan.run()
        except AcquisitionError as exc:
            typer.echo(f"error: {exc} (frames so far and report.json are in {output})", err=True)
            raise typer.Exit(1) from None
    except (RmzError, ValueError) as exc:
        raise _fail(str(exc)) from None
    d = report.durations_s
    typer.echo(
        f"{report.stop_reason.value} after {len(report.frames)} of {len(plan.candidates_um)} "
        f"candidate planes; {d['total']:.1f} s (acquisition {d['acquisition']:.1f} s, "
        f"reconstruction {d['reconstruction']:.1f} s); wrote {output}"
    )


def _run_with_viewer(scan: Any, settings: Any, slicer: bool) -> Any:
    """Scan on a worker thread while the Qt viewer runs on this (main) thread."""
    try:
        from qtpy.QtWidgets import QApplication

        from ..preview.viewer import ScanViewer, start_scan
    except ImportError as exc:
        raise RmzError(
            f"--view needs the viewer extra: pip install 'rmz_acq[view]' ({exc})"
        ) from None
    qt_app = QApplication.instance() or QApplication([])
    viewer = ScanViewer(
        scan.summary.pixel_size_um,
        epsilon=settings.epsilon,
        relative_epsilon=settings.relative_epsilon,
        slicer=slicer,
    )
    viewer.resize(1100, 800)
    viewer.show()
    worker = start_scan(scan, viewer)
    qt_app.exec()  # returns when the window is closed
    if worker.is_alive():  # closed mid-scan: stop the microscope, keep what was taken
        scan.cancel()
        worker.join()
    if worker.failures:  # type: ignore[attr-defined]
        raise worker.failures[0]  # type: ignore[attr-defined]
    return scan.report


@app.command("view")
def view_run(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `rmz-acq acquire`.")],
    slicer: Annotated[
        bool, typer.Option("--slicer", help="Add ndv's 2D/3D slicer (OpenGL).")
    ] = False,
) -> None:
    """Open a finished run (volume, acquired planes, convergence) in the viewer."""
    try:
        from qtpy.QtWidgets import QApplication

        from ..preview.viewer import open_run
    except ImportError as exc:
        raise _fail(f"the viewer needs: pip install 'rmz_acq[view]' ({exc})") from None
    if not (run_dir / "volume.ome.tif").is_file() or not (run_dir / "report.json").is_file():
        raise _fail(f"{run_dir} is not a run folder (volume.ome.tif and report.json expected)")
    qt_app = QApplication.instance() or QApplication([])
    try:
        viewer = open_run(run_dir, slicer=slicer)
    except (RmzError, ValueError, KeyError) as exc:
        raise _fail(f"cannot open {run_dir}: {exc}") from None
    viewer.resize(1100, 800)
    viewer.show()
    qt_app.exec()


def _preset_for(core: Any) -> str:
    """The preset whose emission wavelength is nearest the simulated microscope's."""
    from ..acquisition.controller import simulated_optics
    from ..training.conditions import PRESET_CONDITIONS

    optics = simulated_optics(core)
    if optics is None:
        raise RmzError(
            "the configuration does not state its optics; choose a model with --model "
            "(beads, nuclei or a weights file)"
        )
    return min(
        PRESET_CONDITIONS,
        key=lambda name: abs(PRESET_CONDITIONS[name].emission_wavelength_nm - optics[1]),
    )


@app.command()
def reconstruct(
    frames: Annotated[Path, typer.Argument(help="Input frames (OME-TIFF with PositionZ).")],
    z_range: Annotated[
        str, typer.Option("--z-range", help="Output planes START:STOP:STEP in um, STOP included.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output volume .ome.tif.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Preset (beads, nuclei) or weights file.")
    ] = "nuclei",
    z: Annotated[
        str | None,
        typer.Option("--z", help="Frame z list in um (overrides PositionZ), e.g. 3,9,15."),
    ] = None,
    pixel_size_um: Annotated[
        float | None, typer.Option("--pixel-size-um", help="If the frames do not state it.")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda.")] = None,
) -> None:
    """Reconstruct a volume from M frames at arbitrary z."""
    from ..reconstruct import reconstruct_file
    from ..session import PushResult
    from ..zgrid import parse_z_list, parse_z_range

    try:
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
            on_push=report,
        )
    except (RmzError, ValueError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"wrote {path}: {len(planes)} planes from {planes[0]:g} to {planes[-1]:g} um")


@app.command()
def evaluate(
    volume: Annotated[Path, typer.Argument(help="Reconstructed volume (OME-TIFF).")],
    ground_truth: Annotated[
        Path, typer.Option("--ground-truth", "-g", help="Mechanically scanned z-stack.")
    ],
    frames: Annotated[Path, typer.Option("--frames", "-f", help="The input frames used.")],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model for the single-input baseline (preset or file)."),
    ] = None,
    beads: Annotated[
        bool, typer.Option("--beads/--no-beads", help="Also fit bead widths (FWHM).")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="JSON report (default: beside volume).")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PSNR-vs-z PNG (default: beside volume).")
    ] = None,
    device: Annotated[str | None, typer.Option("--device")] = None,
) -> None:
    """Score a volume and the baselines against ground truth, plane by plane."""
    from rich.console import Console
    from rich.table import Table

    from ..evaluation.report import (
        evaluate_files,
        plot_bead_histograms,
        plot_evaluation,
        write_json,
    )
    from ..model.weights import load_model

    try:
        loaded = load_model(model, device or "cpu") if model is not None else None
        result = evaluate_files(
            volume, ground_truth, frames, model=loaded, beads=beads, device=device
        )
    except (RmzError, ValueError) as exc:
        raise _fail(str(exc)) from None
    stem = volume.name.removesuffix(".tif").removesuffix(".ome")
    json_path = write_json(result, output or volume.with_name(f"{stem}.evaluation.json"))
    png_path = plot_evaluation(result, plot or volume.with_name(f"{stem}.psnr.png"))
    if result.beads:
        plot_bead_histograms(result, volume.with_name(f"{stem}.fwhm.png"))
    table = Table(title="mean over non-input planes")
    for column in ("method", "PSNR dB", "NRMSE %", "SSIM"):
        table.add_column(column, justify="right" if column != "method" else "left")
    for method, scores in result.means().items():
        table.add_row(
            method, f"{scores['psnr']:.2f}", f"{scores['nrmse']:.2f}", f"{scores['ssim']:.3f}"
        )
    console = Console()
    console.print(table)
    if result.beads:
        bead_table = Table(title=f"{result.beads['isolated_beads']} isolated beads")
        for column in ("volume", "fitted", "mean FWHM um", "KL to truth"):
            bead_table.add_column(column, justify="right" if column != "volume" else "left")
        for name, stats in result.beads.items():
            if isinstance(stats, dict):
                bead_table.add_row(
                    name,
                    f"{stats['fitted']} ({100 * stats['fitted_fraction']:.0f}%)",
                    f"{stats['mean_fwhm_um']:.3f}",
                    f"{stats['kl_to_ground_truth']:.3f}",
                )
        console.print(bead_table)
    typer.echo(f"wrote {json_path} and {png_path}")


@app.command()
def train(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Run folder (checkpoints, log, weights).")
    ],
    preset: Annotated[
        str, typer.Option("--preset", help="Imaging conditions: beads or nuclei.")
    ] = "nuclei",
    stacks: Annotated[
        Path | None,
        typer.Option("--stacks", help="Folder of your own OME-TIFF z-stacks (default: simulate)."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Optimiser steps.")] = 3000,
    crop_px: Annotated[int, typer.Option("--crop", help="Training crop size (px).")] = 128,
    volumes: Annotated[int, typer.Option("--volumes", help="Simulated volumes to draw from.")] = 24,
    fov_px: Annotated[int, typer.Option("--fov", help="Simulated field of view (px).")] = 256,
    base_channels: Annotated[int, typer.Option("--base-channels")] = 8,
    depth: Annotated[int, typer.Option("--depth")] = 4,
    learning_rate: Annotated[float, typer.Option("--lr")] = 1e-3,
    foreground_weight: Annotated[
        float, typer.Option("--foreground-weight", help="Extra BerHu weight of bright pixels.")
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    resume: Annotated[bool, typer.Option("--resume/--no-resume")] = True,
    stop_after: Annotated[
        int | None,
        typer.Option("--stop-after", help="Stop with a checkpoint after N steps; resume later."),
    ] = None,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every")] = 250,
    init: Annotated[
        Path | None, typer.Option("--init", help="Start from these weights (fine-tune).")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu or cuda (default: best).")
    ] = None,
) -> None:
    """Train Recurrent-MZ on simulated volumes or your own z-stacks."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
    )

    from ..training.conditions import PRESET_CONDITIONS
    from ..training.data import load_stack_volumes
    from ..training.trainer import TrainingSettings
    from ..training.trainer import train as run_training

    try:
        if preset not in PRESET_CONDITIONS:
            raise RmzError(f"unknown --preset {preset!r}; choose {', '.join(PRESET_CONDITIONS)}")
        settings = TrainingSettings(
            steps=steps,
            crop_px=crop_px,
            n_volumes=volumes,
            fov_px=fov_px,
            base_channels=base_channels,
            depth=depth,
            learning_rate=learning_rate,
            foreground_weight=foreground_weight,
            seed=seed,
            checkpoint_every=checkpoint_every,
            validate_every=checkpoint_every,
        )
        own = load_stack_volumes(stacks) if stacks is not None else None
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            disable=not sys.stderr.isatty(),
        ) as progress:
            tasks: dict[str, TaskID] = {}

            def show(phase: str, done: int, total: int, metrics: dict[str, float]) -> None:
                if phase not in tasks:
                    tasks[phase] = progress.add_task(phase, total=total, info="")
                info = " ".join(f"{k}={v:.3g}" for k, v in metrics.items())
                progress.update(tasks[phase], completed=done, info=info)
                # Without a terminal (logs, CI, nohup) print a line now and then.
                if not sys.stderr.isatty() and (
                    done == total or done % max(1, total // 20) == 0 or "psnr" in metrics
                ):
                    typer.echo(f"{phase} {done}/{total} {info}", err=True)

            summary = run_training(
                output,
                PRESET_CONDITIONS[preset],
                settings,
                name=preset,
                stacks=own,
                device=device,
                resume=resume,
                stop_after=stop_after,
                init_from=init,
                on_progress=show,
            )
    except (RmzError, ValueError) as exc:
        raise _fail(str(exc)) from None
    scores = " ".join(f"{k}={v:.3f}" for k, v in summary.last_validation.items())
    if summary.weights is None:
        typer.echo(f"stopped after {summary.steps} steps; run again to resume ({scores})")
        return
    typer.echo(
        f"wrote {summary.weights} after {summary.steps} steps ({summary.seconds:.0f} s); {scores}"
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
