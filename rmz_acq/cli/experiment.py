"""``rmz-acq acquire --sequence``: an experiment, with progress and a clean cancel."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import typer

from ..errors import RmzError
from ._signals import exit_cancelled, stop_on_signals

__all__ = ["parse_xy_limits", "run_experiment"]


def parse_xy_limits(text: str | None) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """``XLOW:XHIGH,YLOW:YHIGH`` in µm."""
    if text is None:
        return None
    example = "e.g. -500:500,-500:500"
    try:
        x, y = text.split(",")
        axes = [tuple(float(v) for v in part.split(":")) for part in (x, y)]
    except ValueError:
        raise RmzError(
            f"--xy-limits {text!r} must be XLOW:XHIGH,YLOW:YHIGH in um, {example}"
        ) from None
    if any(len(a) != 2 or not a[0] < a[1] for a in axes):
        raise RmzError(f"--xy-limits {text!r}: each LOW must be below its HIGH, {example}")
    return (axes[0][0], axes[0][1]), (axes[1][0], axes[1][1])


def run_experiment(
    core: Any,
    model: Any,
    sequence_path: Path,
    output: Path,
    *,
    candidate_step_um: float | None,
    settings: Any,
    limits_um: tuple[float, float] | None,
    xy_limits: str | None,
    on_error: str,
    overwrite: bool,
    device: str | None,
    dry_run: bool,
    view: bool,
    slicer: bool,
    cluster: Any = None,
) -> None:
    from ..experiment import Experiment, ScanStarted, VolumeRecord, load_sequence
    from ..experiment.runner import describe

    if on_error not in ("skip", "stop"):
        raise RmzError(f"--on-error {on_error!r}: choose skip or stop")
    experiment = Experiment(
        core,
        model,
        load_sequence(sequence_path),
        output,
        settings=settings,
        candidate_step_um=candidate_step_um,
        limits_um=limits_um,
        xy_limits_um=parse_xy_limits(xy_limits),
        on_error=on_error,  # type: ignore[arg-type]
        overwrite=overwrite,
        device=device,
        cluster=cluster,
    )
    for note in experiment.warnings:
        typer.echo(f"warning: {note}", err=True)
    if dry_run:
        typer.echo(f"model: {model.name} ({model.sha256[:12]})")
        typer.echo(describe(experiment))
        lo, hi = experiment.limits_um
        typer.echo(f"focus travel: {lo:g} to {hi:g} um")
        if experiment.xy_limits_um is not None:
            (xlo, xhi), (ylo, yhi) = experiment.xy_limits_um
            typer.echo(f"XY travel: x {xlo:g} to {xhi:g}, y {ylo:g} to {yhi:g} um")
        return
    total = experiment.plan.volumes

    def started(event: ScanStarted) -> None:
        r = event.record
        late = f", {r.late_s:.1f} s behind schedule" if r.late_s > 0.05 else ""
        typer.echo(
            f"volume {len(experiment.report.volumes) if experiment.report else 0}/{total}: "
            f"{r.position} at time point {r.t} (t = {r.started_s:.1f} s{late})",
            err=True,
        )

    def finished(r: VolumeRecord) -> None:
        outcome = r.error if r.stop_reason == "error" else f"{r.stop_reason}, {r.frames} frames"
        typer.echo(f"  {r.run}: {outcome}", err=True)

    experiment.events.volumeStarted.connect(started)
    experiment.events.volumeFinished.connect(finished)
    with stop_on_signals(experiment.request_stop) as received:
        try:
            report = _with_viewer(experiment, slicer, received) if view else experiment.run()
        except KeyboardInterrupt:
            report = experiment.report
            if report is None:
                raise
            received.append(signal.SIGINT)
    done = [v for v in report.volumes if v.stop_reason not in (None, "error")]
    failed = [v for v in report.volumes if v.stop_reason == "error"]
    if received:
        raise exit_cancelled(
            received[0], f"{len(done)} of {total} volumes taken; everything is in {output}"
        )
    frames = sum(v.frames for v in done) / len(done) if done else 0.0
    typer.echo(
        f"{report.stop_reason}: {len(done)} of {total} volumes ({frames:.1f} frames each"
        + (f", {len(failed)} failed" if failed else "")
        + f"), {report.durations_s.get('total', 0.0):.1f} s; latest time point start "
        f"{report.lateness.get('max_late_s', 0.0):.1f} s behind schedule; wrote {output}"
    )
    if report.stop_reason == "error":
        raise typer.Exit(1)


def _with_viewer(experiment: Any, slicer: bool, received: list[int]) -> Any:
    """The experiment on a worker thread while its viewer runs on this (main) thread."""
    from ._qt import qt_application, run_beside_window

    qt_application()
    from ..preview.experiment_viewer import ExperimentViewer

    viewer = ExperimentViewer(
        experiment.run_dir,
        [p.name for p in experiment.plan.positions],
        len(experiment.plan.time_points_s),
        experiment.summary.pixel_size_um,
        epsilon=experiment.settings.epsilon,
        relative_epsilon=experiment.settings.relative_epsilon,
        slicer=slicer,
    )
    viewer.attach(experiment)
    viewer.resize(1100, 850)
    viewer.show()
    run_beside_window(experiment.run, experiment.cancel, received)
    return experiment.report
