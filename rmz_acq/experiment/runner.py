"""An experiment: an adaptive volume at every position and time point of a useq sequence.

Time points start on schedule.  At each one the positions are visited in
turn, each with an `AdaptiveScan` into ``RUN_DIR/p{p:03d}_t{t:04d}/`` (the
single-scan contract).  The experiment moves on as soon as a scan has its
last frame: that volume completes in the background (on the scan's own
thread) while the next position is imaged, and at most one volume is
completing at a time.  Each finished volume goes into
``RUN_DIR/volumes.ome.zarr`` and ``RUN_DIR/experiment.json`` is rewritten.

Everything that can be checked is checked before anything moves: every
position's focus plan against the focus travel, every position against the
XY travel, memory for two volumes at once, the run folder.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import useq
from numpy.typing import NDArray
from psygnal import Signal, SignalGroup
from pymmcore_plus import CMMCorePlus

from ..acquisition import AdaptiveScan, ScanPlan, ScanSettings
from ..errors import ConfigError, RmzError, StageSafetyError
from ..hardware import summarize, xy_limits_um
from ..io.outputs import RUN_FILES, RunFolder
from ..io.zarr_volumes import VolumeStore
from ..model.weights import LoadedModel
from ..preview.snapshots import PreviewWriter
from ..safety import (
    XYLimits,
    check_within_limits,
    check_xy_within_limits,
    format_um,
    travel_limits,
    xy_travel_limits,
)
from ..session import ReconstructionSession
from .report import ExperimentReport, VolumeRecord
from .sequence import ExperimentPlan, PositionPlan, plan_experiment

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["EXPERIMENT_FILES", "Experiment", "ExperimentSignals", "ScanStarted"]

EXPERIMENT_FILES = ("experiment.json",)
ZARR_NAME = "volumes.ome.zarr"
OnError = Literal["skip", "stop"]


@dataclass(frozen=True)
class ScanStarted:
    """A volume's scan is about to run (connect to ``scan.events`` to watch it)."""

    record: VolumeRecord
    scan: AdaptiveScan


class ExperimentSignals(SignalGroup):
    volumeStarted = Signal(ScanStarted)
    volumeFinished = Signal(VolumeRecord)
    finished = Signal(ExperimentReport)


def volume_folder(p: int, t: int) -> str:
    """The run folder of position ``p`` at time point ``t`` (contract)."""
    return f"p{p:03d}_t{t:04d}"


class Experiment:
    """Adaptive volumes at every position and time point of a useq ``MDASequence``.

    Parameters
    ----------
    core
        A loaded core (an XY stage when the sequence has x, y positions).
    model
        The network.
    sequence
        A useq ``MDASequence`` (or an `ExperimentPlan` made from one):
        stage positions (z: the centre of the position's volume), grid plan,
        time plan, optional relative z plan (candidate planes around each
        position's z).
    run_dir
        Where everything goes.
    settings
        Each scan's stop rule (default: the model's, `ScanSettings.for_model`).
    candidate_step_um
        Candidate spacing where the sequence has no z plan (default: the model's).
    limits_um, xy_limits_um
        Focus and XY travel: narrow what the stages report, required where
        they report none.
    on_error
        ``"skip"``: a volume that fails is recorded and the experiment goes
        on; ``"stop"``: the experiment ends after it.
    overwrite
        Delete what an earlier experiment wrote in ``run_dir`` instead of refusing.
    device
        Where the network runs.
    cluster
        A ``distributed.Client``: each volume is completed on its cluster
        (`rmz_acq.cluster.RemoteCompletion`) while the next is taken.

    Raises
    ------
    InvalidValueError
        The sequence asks for something rmz_acq cannot honour.
    StageSafetyError
        A position or a focus plane lies outside the travel, or no limits are known.
    ConfigError
        The sequence moves in XY but the configuration has no XY stage.
    RmzError
        Two volumes at once would not fit in memory; the run folder is taken.
    """

    def __init__(
        self,
        core: CMMCorePlus,
        model: LoadedModel,
        sequence: useq.MDASequence | ExperimentPlan,
        run_dir: str | Path,
        *,
        settings: ScanSettings | None = None,
        candidate_step_um: float | None = None,
        limits_um: tuple[float, float] | None = None,
        xy_limits_um: XYLimits | None = None,
        on_error: OnError = "skip",
        overwrite: bool = False,
        device: str | None = None,
        cluster: Client | None = None,
    ) -> None:
        if on_error not in ("skip", "stop"):
            raise RmzError(f"on_error {on_error!r}: choose 'skip' or 'stop'")
        self.core = core
        self.model = model
        self.plan = sequence if isinstance(sequence, ExperimentPlan) else plan_experiment(sequence)
        self.settings = settings or ScanSettings.for_model(model)
        self.on_error: OnError = on_error
        self.overwrite = overwrite
        self.device = device
        self.cluster = cluster
        self.run_dir = Path(run_dir)
        self.events = ExperimentSignals()
        self._previews: list[PreviewWriter] = []
        self.summary = summarize(core)
        self.limits_um, note = travel_limits(self.summary.focus_limits_um, limits_um)
        self.warnings = [note] if note else []
        base = ScanPlan.for_model(model, candidate_step_um=candidate_step_um)
        self.scan_plans = [self._plan_at(base, position) for position in self.plan.positions]
        self._check_focus()
        self.xy_limits_um = self._check_xy(xy_limits_um)
        self._check_memory()
        self.folder = ExperimentFolder(self.run_dir)
        self.folder.check(overwrite=overwrite)
        self._cancel = threading.Event()
        self._current: AdaptiveScan | None = None
        self._report_lock = threading.Lock()
        self.report: ExperimentReport | None = None

    # the plan, checked ------------------------------------------------------------

    def _plan_at(self, base: ScanPlan, position: PositionPlan) -> ScanPlan:
        """The model's plan moved to the position's z (the centre of its volume)."""
        out = np.asarray(base.output_planes_um, np.float64)
        centre = (float(out.min()) + float(out.max())) / 2
        reference = centre if position.z_um is None else float(position.z_um)
        shift = reference - centre
        if self.plan.candidate_offsets_um is not None:
            candidates = [reference + dz for dz in self.plan.candidate_offsets_um]
        else:
            candidates = [z + shift for z in base.candidates_um]
        return ScanPlan.build(
            np.round(out + shift, 9),
            candidates_um=[round(z, 9) for z in candidates],
            order=base.order,
            reach_um=base.reach_um,
        )

    def _check_focus(self) -> None:
        outside = []
        for position, plan in zip(self.plan.positions, self.scan_plans, strict=True):
            try:
                check_within_limits(plan.candidates_um, self.limits_um)
            except StageSafetyError:
                outside.append(
                    f"{position.name} (planes {format_um(min(plan.candidates_um))} to "
                    f"{format_um(max(plan.candidates_um))} um)"
                )
        if outside:
            lo, hi = self.limits_um
            raise StageSafetyError(
                f"the focus planes of {len(outside)} position(s) reach outside the focus "
                f"travel [{format_um(lo)}, {format_um(hi)}] um: "
                + ", ".join(outside[:5])
                + "; nothing moved (fix the positions' z or the z plan)"
            )

    def _check_xy(self, user: XYLimits | None) -> XYLimits | None:
        placed = [p for p in self.plan.positions if p.x_um is not None or p.y_um is not None]
        if not placed:
            return None
        if not self.core.getXYStageDevice():
            raise ConfigError(
                "the sequence gives x, y stage positions but the configuration has no XY "
                "stage; add one to the config, or remove the positions' x and y"
            )
        limits, notes = xy_travel_limits(xy_limits_um(self.core), user)
        self.warnings.extend(notes)
        x0, y0 = self.core.getXYPosition()
        check_xy_within_limits(
            [
                (p.name, x0 if p.x_um is None else p.x_um, y0 if p.y_um is None else p.y_um)
                for p in placed
            ],
            limits,
        )
        return limits

    def _check_memory(self) -> None:
        """Two volumes live at once: one completing while the next is taken."""
        height, width = self.summary.image_shape
        session = ReconstructionSession(self.model, self.scan_plans[0].output_planes_um)
        one = len(session.output_planes_um) * height * width * 4
        one += session.state_nbytes_for(height, width)
        frames = len(self.scan_plans[0].candidates_um)
        session.check_memory(height, width, extra_host_bytes=one, frames=frames)

    # control --------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop after the frame in flight; everything taken is written.  Any thread."""
        self._cancel.set()
        if (scan := self._current) is not None:
            scan.cancel()

    def request_stop(self) -> None:
        """`cancel` for a signal handler (takes no lock)."""
        self._cancel.set()
        if (scan := self._current) is not None:
            scan.request_stop()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # the experiment --------------------------------------------------------------

    def run(self) -> ExperimentReport:
        """Run every time point; returns (and writes) the report.

        Raises
        ------
        RunLockedError
            Another run holds the folder.
        """
        with self.folder.locked():
            self.folder.check(overwrite=self.overwrite)
            if self.overwrite:
                self.folder.clear()
            return self._run()

    def _new_report(self) -> ExperimentReport:
        return ExperimentReport(
            sequence=self.plan.sequence,
            model={"name": self.model.name, "sha256": self.model.sha256},
            positions=[
                {
                    "p": p.index,
                    "name": p.name,
                    "x_um": p.x_um,
                    "y_um": p.y_um,
                    "z_um": p.z_um,
                    "output_planes_um": [plan.output_planes_um[0], plan.output_planes_um[-1]],
                    "candidates_um": list(plan.candidates_um),
                }
                for p, plan in zip(self.plan.positions, self.scan_plans, strict=True)
            ],
            time_points_s=list(self.plan.time_points_s),
            on_error=self.on_error,
            warnings=list(self.warnings),
        )

    def _write_report(self) -> None:
        assert self.report is not None
        with self._report_lock:
            self.report.update_lateness()
            self.report.write(self.run_dir / "experiment.json")

    def _store(self) -> VolumeStore:
        first = {plan.output_planes_um[0] for plan in self.scan_plans}
        planes = self.scan_plans[0].output_planes_um
        if len(first) > 1:
            self.warnings.append(
                "positions' volumes start at different z: volumes.ome.zarr puts plane 0 at "
                "z = 0 (experiment.json has each position's planes)"
            )
        height, width = self.summary.image_shape
        step = float(np.diff(planes).mean()) if len(planes) > 1 else 1.0
        pixel = self.summary.pixel_size_um
        return VolumeStore(
            self.run_dir / ZARR_NAME,
            [p.name for p in self.plan.positions],
            len(self.plan.time_points_s),
            (len(planes), height, width),
            (step, pixel, pixel),
            z_origin_um=float(planes[0]) if len(first) == 1 else 0.0,
            interval_s=self.plan.interval_s,
            xy_um=[(p.x_um, p.y_um) for p in self.plan.positions],
        )

    def _run(self) -> ExperimentReport:
        self.report = report = self._new_report()
        self._write_report()
        store = self._store()
        self._scan_durations: dict[str, dict[str, float]] = {}
        self._started = time.perf_counter()
        completing: list[threading.Thread] = []
        stop: str | None = None
        try:
            for t, scheduled in enumerate(self.plan.time_points_s):
                if self._cancel.wait(max(0.0, self._started + scheduled - time.perf_counter())):
                    stop = "cancelled"
                    break
                for position, plan in zip(self.plan.positions, self.scan_plans, strict=True):
                    if self._cancel.is_set():
                        stop = "cancelled"
                        break
                    while len(completing) > 1:  # at most one volume completes behind the scan
                        completing.pop(0).join()
                    stop = self._volume(position, t, scheduled, plan, store, completing)
                    if stop is not None:
                        break
                if stop is not None:
                    break
        except BaseException as exc:
            report.error = f"{type(exc).__name__}: {exc}"
            stop = "cancelled" if isinstance(exc, KeyboardInterrupt) else "error"
            self.cancel()  # the scan in flight stops after its frame; the rest is written
            raise
        finally:
            for thread in completing:
                thread.join()
            try:
                store.close()
            except Exception as exc:
                report.error = report.error or f"{ZARR_NAME} not closed ({exc})"
            report.stop_reason = stop or "completed"
            report.durations_s = {
                "total": time.perf_counter() - self._started,
                "acquisition": sum(
                    v.get("acquisition", 0.0) for v in self._scan_durations.values()
                ),
            }
            report.finished = True
            self._write_report()
            self.events.finished.emit(report)
        return report

    def _volume(
        self,
        position: PositionPlan,
        t: int,
        scheduled: float,
        plan: ScanPlan,
        store: VolumeStore,
        completing: list[threading.Thread],
    ) -> str | None:
        """Take one volume; returns the experiment's stop reason when it must end now."""
        assert self.report is not None
        now = time.perf_counter() - self._started
        record = VolumeRecord(
            p=position.index,
            t=t,
            position=position.name,
            position_um={"x": position.x_um, "y": position.y_um, "z": position.z_um},
            scheduled_s=scheduled,
            started_s=now,
            late_s=max(0.0, now - scheduled),
            run=volume_folder(position.index, t),
        )
        with self._report_lock:
            self.report.volumes.append(record)
        self._write_report()
        xy = None
        if position.x_um is not None or position.y_um is not None:
            x0, y0 = self.core.getXYPosition()
            xy = (
                x0 if position.x_um is None else position.x_um,
                y0 if position.y_um is None else position.y_um,
            )
        try:
            scan = AdaptiveScan(
                self.core,
                self.model,
                plan,
                self.settings,
                self.run_dir / record.run,
                limits_um=self.limits_um,
                device=self.device,
                position_um=xy,
                xy_limits_um=self.xy_limits_um,
                cluster=self.cluster,
            )
        except Exception as exc:  # the scan could not even be set up
            self._failed(record, exc, store)
            return "error" if self.on_error == "stop" else None
        # each volume's preview.png; a writer lets go of its scan once it has drawn
        self._previews = [p for p in self._previews if not p.done] + [PreviewWriter(scan)]
        self.events.volumeStarted.emit(ScanStarted(record, scan))
        self._current = scan
        thread = threading.Thread(
            target=self._complete, args=(scan, record, store), name=f"rmz_acq {record.run}"
        )
        thread.start()
        completing.append(thread)
        while not scan.acquired.wait(0.05) and thread.is_alive():
            pass
        self._current = None
        error = scan.acquisition_error
        if isinstance(error, KeyboardInterrupt) or scan.cancelled:
            thread.join()
            return "cancelled"
        if error is not None and self.on_error == "stop":
            thread.join()
            self.report.error = f"{record.run}: {type(error).__name__}: {error}"
            return "error"
        return None

    def _complete(self, scan: AdaptiveScan, record: VolumeRecord, store: VolumeStore) -> None:
        """The scan's own thread: run it, then file its volume (in the zarr, in the report)."""
        volume: NDArray[np.float32] | None = None
        try:
            scan.run()
        except BaseException as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        finally:
            report = scan.report
            if report is not None:
                record.stop_reason = report.stop_reason.value
                record.frames = len(report.frames)
                self._scan_durations[record.run] = dict(report.durations_s)
                if report.error and record.error is None:
                    record.error = report.error
            else:
                record.stop_reason = "error"
            volume = scan.volume
            try:
                store.put(record.p, record.t, volume)
                record.in_zarr = volume is not None
            except Exception as exc:
                record.error = (record.error or "") + f"; not written to {ZARR_NAME}: {exc}"
            record.finished_s = time.perf_counter() - self._started
            self._write_report()
            self.events.volumeFinished.emit(record)

    def _failed(self, record: VolumeRecord, exc: BaseException, store: VolumeStore) -> None:
        record.stop_reason = "error"
        record.error = f"{type(exc).__name__}: {exc}"
        record.finished_s = time.perf_counter() - self._started
        store.put(record.p, record.t, None)
        self._write_report()
        self.events.volumeFinished.emit(record)


class ExperimentFolder(RunFolder):
    """An experiment's folder: experiment.json, volumes.ome.zarr, one folder per volume."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, EXPERIMENT_FILES)

    def clear(self) -> list[Path]:
        removed = super().clear()
        zarr = self.path / ZARR_NAME
        if (zarr / "zarr.json").is_file():
            shutil.rmtree(zarr)
            removed.append(zarr)
        for folder in sorted(self.path.glob("p[0-9][0-9][0-9]_t[0-9][0-9][0-9][0-9]")):
            if folder.is_dir():
                removed.extend(RunFolder(folder, RUN_FILES).clear())
                lock = folder / ".rmz_acq.lock"
                lock.unlink(missing_ok=True)
                if not any(folder.iterdir()):
                    folder.rmdir()
        return removed


def describe(experiment: Experiment) -> str:
    """The experiment's plan in words (for ``--dry-run``)."""
    plan = experiment.plan
    lines = [
        f"experiment: {len(plan.positions)} position(s) x {len(plan.time_points_s)} time "
        f"point(s) = {plan.volumes} volumes"
        + (f", every {plan.interval_s:g} s" if plan.interval_s else "")
    ]
    for position, scan_plan in zip(plan.positions, experiment.scan_plans, strict=True):
        where = ", ".join(
            f"{axis} {value:g}"
            for axis, value in (("x", position.x_um), ("y", position.y_um), ("z", position.z_um))
            if value is not None
        )
        out = scan_plan.output_planes_um
        lines.append(
            f"  {position.name}: {where or 'the stage where it is'}; volume {out[0]:g} to "
            f"{out[-1]:g} um; candidates "
            + ", ".join(f"{z:g}" for z in sorted(scan_plan.candidates_um))
        )
    return "\n".join(lines)
