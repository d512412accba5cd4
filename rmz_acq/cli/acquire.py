"""``rmz-acq acquire`` (the adaptive scan) and ``rmz-acq view``."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import RmzError
from ._app import (
    CandidateStep,
    Device,
    ExposureMs,
    InferredModel,
    NextPlane,
    Precision,
    RelativeEpsilon,
    RelativeTo,
    StopAt,
    VolumeOrder,
    ZLimits,
    app,
    fail,
    model_for_config,
    parse_limits,
)
from ._signals import exit_cancelled, stop_on_signals


@app.command()
def acquire(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Micro-Manager .cfg (simulated or real).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder.")],
    model: InferredModel = None,
    z_range: Annotated[
        str | None,
        typer.Option("--z-range", help="Output planes START:STOP:STEP um (default: the model's)."),
    ] = None,
    candidates: Annotated[
        str | None, typer.Option("--candidates", help="Focus planes the scan may take, e.g. 3,6,9.")
    ] = None,
    candidate_step: CandidateStep = None,
    order: Annotated[
        str,
        typer.Option(
            "--order",
            help="Candidate order for --next-plane bisection: bisection, centre-out or as-given.",
        ),
    ] = "bisection",
    next_plane: NextPlane = None,
    stop_at: StopAt = None,
    relative_to: RelativeTo = None,
    volume_order: VolumeOrder = None,
    epsilon: Annotated[
        float | None,
        typer.Option("--epsilon", help="Stop when ||V_M - V_(M-1)||_F <= this (input units)."),
    ] = None,
    relative_epsilon: RelativeEpsilon = None,
    min_frames: Annotated[
        int | None,
        typer.Option(
            "--min-frames",
            help="The rule is not heard before this many frames (default: the model's; "
            "nuclei 9, beads 2).",
        ),
    ] = None,
    decision_margin: Annotated[
        float | None,
        typer.Option(
            "--decision-margin",
            help="When the change measured on the decision planes is within this fraction "
            "of epsilon, wait for the full grid's own change (default 0.25; 0: never wait, "
            "the stage is never held, and a stop may come a frame early or late).",
        ),
    ] = None,
    max_frames: Annotated[int | None, typer.Option("--max-frames")] = None,
    time_budget_s: Annotated[float | None, typer.Option("--time-budget-s")] = None,
    exposure_ms: ExposureMs = None,
    z_limits: ZLimits = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; move nothing.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Reuse a run folder: delete the files an earlier run wrote there (only those).",
        ),
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
    device: Device = None,
    precision: Precision = "float32",
    sequence: Annotated[
        Path | None,
        typer.Option(
            "--sequence",
            help="A useq MDASequence (.yaml/.json): an adaptive volume at every position and "
            "time point.",
        ),
    ] = None,
    on_error: Annotated[
        str,
        typer.Option(
            "--on-error", help="With --sequence: skip a failed volume and go on, or stop."
        ),
    ] = "skip",
    xy_limits: Annotated[
        str | None,
        typer.Option(
            "--xy-limits",
            help="XLOW:XHIGH,YLOW:YHIGH um: narrows the XY travel (required if it reports none).",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="A running Dask scheduler (tcp://HOST:PORT): complete each volume on its "
            "cluster instead of this machine.",
        ),
    ] = None,
) -> None:
    """Adaptive scan: sparse planes until the volume stops changing."""
    from ..acquisition import AdaptiveScan, FrameRecord, PlaneOrder, ScanPlan, ScanSettings
    from ..acquisition.policies import describe_policy
    from ..errors import AcquisitionError
    from ..hardware import load_core
    from ..model.weights import load_model
    from ..saturation import WARN_FRACTION
    from ..session import compute_dtype
    from ..zgrid import parse_z_list, parse_z_range

    stack = contextlib.ExitStack()  # what the command holds open (a cluster's client)
    try:
        compute_dtype(precision)
        if epsilon is not None and epsilon < 0:
            raise RmzError(f"--epsilon must be >= 0, got {epsilon:g}")
        if relative_epsilon is not None and relative_epsilon < 0:
            raise RmzError(f"--relative-epsilon must be >= 0, got {relative_epsilon:g}")
        if decision_margin is not None and not decision_margin >= 0:
            raise RmzError(f"--decision-margin must be >= 0, got {decision_margin:g}")
        if candidate_step is not None and not candidate_step > 0:
            raise RmzError(
                f"--candidate-step-um must be a positive spacing in um, got {candidate_step:g}"
            )
        try:
            plane_order = PlaneOrder(order)
        except ValueError:
            raise RmzError(
                f"--order {order!r}: choose {', '.join(o.value for o in PlaneOrder)}"
            ) from None
        limits = parse_limits(z_limits)
        if sequence is not None:
            given = {
                "--candidates": candidates,
                "--z-range": z_range,
                "--snapshots": snapshots or None,
                "--save-history": save_history or None,
            }
            clash = [flag for flag, value in given.items() if value is not None]
            if clash:
                raise RmzError(
                    f"{', '.join(clash)} cannot be used with --sequence (each position's z "
                    "sets its volume; a z_plan in the sequence gives the candidates)"
                )
        elif on_error != "skip" or xy_limits is not None:
            raise RmzError("--on-error and --xy-limits apply to --sequence experiments only")
        core = load_core(config)
        name = model_for_config(model, core)
        loaded = load_model(name, device or "cpu")
        settings = ScanSettings.for_model(
            loaded,
            epsilon=epsilon,
            relative_epsilon=relative_epsilon,
            min_frames=min_frames,
            decision_margin=decision_margin,
            max_frames=max_frames,
            time_budget_s=time_budget_s,
            exposure_ms=exposure_ms,
            save_history=save_history,
            strict=strict,
            precision=precision,
            next_plane=next_plane,
            stop_at=stop_at,
            relative_to=relative_to,
            volume_order=volume_order,
        )
        cluster = _cluster(scheduler) if scheduler is not None and not dry_run else None
        if cluster is not None:
            stack.callback(cluster.close)
            typer.echo(f"completing volumes on the Dask cluster at {scheduler}", err=True)
        if sequence is not None:
            from .experiment import run_experiment

            run_experiment(
                core,
                loaded,
                sequence,
                output,
                candidate_step_um=candidate_step,
                settings=settings,
                limits_um=limits,
                xy_limits=xy_limits,
                on_error=on_error,
                overwrite=overwrite,
                device=device,
                dry_run=dry_run,
                view=view,
                slicer=slicer,
                cluster=cluster,
            )
            return
        plan = ScanPlan.for_model(
            loaded,
            output_planes_um=parse_z_range(z_range).planes_um() if z_range is not None else None,
            candidates_um=parse_z_list(candidates) if candidates is not None else None,
            candidate_step_um=candidate_step,
            order=plane_order,
        )
        scan = AdaptiveScan(
            core,
            loaded,
            plan,
            settings,
            output,
            limits_um=limits,
            device=device,
            overwrite=overwrite,
            cluster=cluster,
        )
        for note in scan.warnings:
            typer.echo(f"warning: {note}", err=True)
        if dry_run:
            typer.echo(f"model: {loaded.name} ({loaded.sha256[:12]})")
            typer.echo(plan.describe())
            typer.echo(describe_policy(settings.next_plane, plan))
            lo, hi = scan.limits_um
            typer.echo(f"focus travel: {lo:g} to {hi:g} um")
            rule = (
                f"||V_M - V_(M-1)||_F <= {settings.epsilon:g}"
                if settings.epsilon is not None
                else f"relative change <= {settings.relative_epsilon:g}"
                + (
                    " (relative to the structure and the frames' noise)"
                    if settings.relative_to == "structure-noise"
                    else ""
                )
            )
            if scan.judge.planes_um is None:
                judged = "judged on every output plane"
            else:
                judged = (
                    f"judged on {len(scan.judge.planes_um)} of {len(plan.output_planes_um)} "
                    "output planes"
                )
                if settings.decision_margin > 0:
                    judged += (
                        f", on all of them within {settings.decision_margin:.0%} of the threshold"
                    )
            where = (
                ", only on evenly spaced planes (a complete sweep)"
                if settings.stop_at == "even"
                else ""
            )
            typer.echo(f"stop: {rule}, min {settings.min_frames} frames{where}; {judged}")
            if settings.volume_order == "z":
                typer.echo("volume: rebuilt from the frames sorted by z once the scan stops")
            return
        target = settings.epsilon if settings.epsilon is not None else settings.relative_epsilon
        most = min(len(plan.candidates_um), settings.max_frames or len(plan.candidates_um))

        def show(r: FrameRecord) -> None:  # as the rule judges each frame
            change = (
                r.decision_frobenius_change
                if settings.epsilon is not None
                else r.decision_relative_change
            )
            shown = "-" if change is None else f"{change:.4g}"
            why = f" [{r.plane_reason}]" if settings.next_plane != "bisection" else ""
            # an estimate near epsilon waits for the full grid's change
            deferred = r.decided_on == "full grid" and scan.decision is not None
            where = " on the full grid" if deferred else ""
            typer.echo(
                f"frame {r.index + 1}/{most} at z {r.measured_z_um:.3f} um{why}: "
                f"change {shown} (epsilon {target:g}), decided{where} in "
                f"{r.decision_s or 0:.2f} s",
                err=True,
            )
            if (r.saturated_fraction or 0.0) >= WARN_FRACTION:
                typer.echo(
                    f"warning: frame {r.index + 1} is saturated ({r.saturated_fraction:.2%} of "
                    "its pixels): the volume near it is unreliable; lower the exposure, gain "
                    "or light power (report.json has the details)",
                    err=True,
                )

        scan.events.decisionMade.connect(show)
        from ..preview.snapshots import PreviewWriter

        # preview.png when the scan ends (psygnal holds callbacks weakly: keep it alive)
        preview = PreviewWriter(scan)
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
        with stop_on_signals(scan.request_stop) as received:
            try:
                report = _run_with_viewer(scan, settings, slicer, received) if view else scan.run()
            except AcquisitionError as exc:
                typer.echo(
                    f"error: {exc} (frames so far and report.json are in {output})", err=True
                )
                raise typer.Exit(1) from None
            except KeyboardInterrupt:  # a second signal: the scan wrote what it had
                report = scan.report
                if report is None:
                    raise
                received.append(signal.SIGINT)
    except (RmzError, ValueError) as exc:
        raise fail(exc) from None
    finally:
        stack.close()
    if received:
        raise exit_cancelled(
            received[0],
            f"{len(report.frames)} frames taken; frames, volume and report.json are in {output}",
        )
    if preview.written is None:
        typer.echo(f"warning: {output / 'preview.png'} could not be drawn", err=True)
    d = report.durations_s
    typer.echo(
        f"{report.stop_reason.value} after {len(report.frames)} of {len(plan.candidates_um)} "
        f"candidate planes; {d['total']:.1f} s (acquisition {d['acquisition']:.1f} s, "
        f"decisions {d['decision']:.1f} s, volume done {d['after_last_frame']:.1f} s after "
        f"the last frame); wrote {output}"
    )


def _run_with_viewer(scan: Any, settings: Any, slicer: bool, received: list[int]) -> Any:
    """The scan on a worker thread while its viewer runs on this (main) thread."""
    from ._qt import qt_application, run_beside_window

    qt_application()
    from ..preview.viewer import ScanViewer

    viewer = ScanViewer(
        scan.summary.pixel_size_um,
        epsilon=settings.epsilon,
        relative_epsilon=settings.relative_epsilon,
        slicer=slicer,
    )
    viewer.attach(scan)
    viewer.resize(1100, 800)
    viewer.show()
    run_beside_window(scan.run, scan.cancel, received)
    return scan.report


@app.command("view")
def view_run(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `rmz-acq acquire`.")],
    slicer: Annotated[
        bool, typer.Option("--slicer", help="Add ndv's 2D/3D slicer (OpenGL).")
    ] = False,
) -> None:
    """Open a finished run or experiment (volume, acquired planes, convergence) in the viewer."""
    try:
        from qtpy.QtWidgets import QApplication

        from ..preview.viewer import open_run
    except ImportError as exc:
        raise fail(f"the viewer needs: pip install 'rmz_acq[view]' ({exc})") from None
    from ..io.run_folder import RunFiles

    files = RunFiles(run_dir)
    experiment = files.is_experiment
    if not experiment and not files.finished:
        raise fail(
            f"{run_dir} is not a run folder (volume.ome.tif and report.json, or "
            "experiment.json, expected)"
        )
    qt_app = QApplication.instance() or QApplication([])
    try:
        if experiment:
            from ..preview.experiment_viewer import open_experiment

            viewer: Any = open_experiment(run_dir, slicer=slicer)
        else:
            viewer = open_run(run_dir, slicer=slicer)
    except (RmzError, ValueError, KeyError) as exc:
        raise fail(f"cannot open {run_dir}: {exc}") from None
    viewer.resize(1100, 800)
    viewer.show()
    qt_app.exec()


def _cluster(scheduler: str) -> Any:
    """A client of the running Dask cluster at ``scheduler`` (one clear error if unreachable)."""
    from ..cluster import client_for

    return client_for(scheduler, workers=1, threads=1)
