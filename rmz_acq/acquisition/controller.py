"""The adaptive scan: sparse planes through ``core.mda``, decided at the microscope's pace.

Events are produced one at a time by a generator that the MDA runner pulls
from.  The runner asks for the next event only after the previous one was
executed, and each frame reaches the scan on the runner's thread the moment
the engine produces it (`connect_on_runner_thread`), so when the generator
resumes the frame is there: it is written to disk, pushed into a small
*decision* session (a few evenly spread output planes) and judged by the
stop rules before the stage moves again.  The whole output grid is brought
up to date from the same frames on a worker thread (`Completion`) while the
stage moves on; the scan ends when the rule fires, the volume when the
completion has caught up.

Signals (psygnal):

- ``frameAcquired(AcquiredFrame)``: a frame is on disk (runner thread);
- ``decisionMade(FrameRecord)``: the stop rule has judged a frame (runner
  thread, before the next move);
- ``volumeUpdated(VolumeUpdate)``: the full volume after a frame, and its
  change (the completion's worker thread, or the runner's when the scan
  decides on the full grid);
- ``finished(ScanReport)``: the scan ended, files are written.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import useq
from numpy.typing import NDArray
from psygnal import Signal, SignalGroup
from pymmcore_plus import CMMCorePlus

from ..errors import AcquisitionError, ConfigError, RmzError, StageSafetyError
from ..hardware import MicroscopeSummary, connect_on_runner_thread, light_path_open, summarize
from ..hardware import xy_limits_um as xy_stage_limits
from ..io import FrameStackWriter, write_zstack
from ..io.outputs import RunFolder
from ..io.run_folder import FRAMES, REPORT, UNUSED_FRAMES, VOLUME, RunFiles
from ..model.weights import LoadedModel
from ..safety import (
    XYLimits,
    check_within_limits,
    check_xy_within_limits,
    travel_limits,
    xy_travel_limits,
)
from ..saturation import camera_ceiling, find_saturation, saturation_note
from ..session import PushResult, ReconstructionSession, compute_dtype
from .completion import Completion
from .judge import ScanJudge, Verdict
from .plan import ScanPlan
from .policies import NextPlanePolicy, PlaneChoice, ScanState, choosable_planes, make_policy
from .report import FrameRecord, ScanReport
from .settings import (
    DEFAULT_RELATIVE_EPSILON,
    PRESET_RELATIVE_EPSILON,
    ScanSettings,
    default_relative_epsilon,
    sorts_by_z,
)
from .stop_rules import StopReason

if TYPE_CHECKING:
    from distributed import Client


__all__ = [
    "DEFAULT_RELATIVE_EPSILON",
    "PRESET_RELATIVE_EPSILON",
    "AcquiredFrame",
    "AdaptiveScan",
    "ScanSettings",
    "VolumeUpdate",
    "compatibility_warnings",
    "default_relative_epsilon",
]


@dataclass(frozen=True, slots=True)
class VolumeUpdate:
    """The volume after frame ``record.index`` (live array: copy to keep)."""

    record: FrameRecord
    volume: NDArray[np.float32]
    output_planes_um: NDArray[np.float64]


class AcquiredFrame(NamedTuple):
    """A frame on disk, not yet pushed."""

    frame_index: int
    commanded_z_um: float
    measured_z_um: float


class ScanSignals(SignalGroup):
    frameAcquired = Signal(AcquiredFrame)
    decisionMade = Signal(FrameRecord)
    volumeUpdated = Signal(VolumeUpdate)
    finished = Signal(ScanReport)


def compatibility_warnings(
    core: CMMCorePlus, summary: MicroscopeSummary, model: LoadedModel
) -> list[str]:
    """Where the microscope differs from what the model was trained for."""
    wanted = model.conditions
    notes = []
    trained_pixel = wanted.get("pixel_size_um")
    if trained_pixel and abs(summary.pixel_size_um / trained_pixel - 1) > 0.05:
        notes.append(
            f"pixel size {summary.pixel_size_um:g} um differs from the {trained_pixel:g} um "
            f"model {model.name!r} was trained for"
        )
    optics = simulated_optics(core)
    if optics is None:
        if wanted:
            notes.append(
                "the configuration does not state its optics; model "
                f"{model.name!r} expects NA {wanted.get('numerical_aperture')} and "
                f"{wanted.get('emission_wavelength_nm')} nm emission"
            )
        return notes
    na, wavelength = optics
    if wanted.get("numerical_aperture") and abs(na - wanted["numerical_aperture"]) > 0.05:
        notes.append(f"NA {na:g} differs from the model's {wanted['numerical_aperture']:g}")
    if (
        wanted.get("emission_wavelength_nm")
        and abs(wavelength - wanted["emission_wavelength_nm"]) > 20
    ):
        notes.append(
            f"emission {wavelength:g} nm differs from the model's "
            f"{wanted['emission_wavelength_nm']:g} nm"
        )
    return notes


def simulated_optics(core: CMMCorePlus) -> tuple[float, float] | None:
    for label in core.getLoadedDevices():
        if core.hasProperty(label, "NumericalAperture") and core.hasProperty(
            label, "EmissionWavelengthNm"
        ):
            return (
                float(core.getProperty(label, "NumericalAperture")),
                float(core.getProperty(label, "EmissionWavelengthNm")),
            )
    return None


def simulated_sample(core: CMMCorePlus) -> str | None:
    """The simulated microscope's ``SampleKind`` (beads, nuclei, structures, tiff); None on
    a real one."""
    for label in core.getLoadedDevices():
        if core.hasProperty(label, "SampleKind"):
            return str(core.getProperty(label, "SampleKind"))
    return None


# How far an XY stage may land from the position asked for (µm).
XY_TOLERANCE_UM = 1.0

IN_PROGRESS = (
    "the scan has not finished: it is still running, or its process was stopped before "
    "it could end this report (the frames taken are in frames.ome.tif)"
)


class AdaptiveScan:
    """One adaptive scan of one sample.

    Everything that can be checked is checked before anything moves: the
    candidates against the focus travel, the volume against free memory, the
    run folder (refused when it holds files, unless ``overwrite``).  While
    the scan runs the folder is locked, ``report.json`` is rewritten after
    every frame, and each frame is on disk before it is reconstructed.

    Parameters
    ----------
    core
        A loaded core with camera, focus stage and shutter.
    model
        The network (preset or weights file).
    plan
        Candidate planes in acquisition order and the output grid.
    settings
        Stop rule and limits.
    run_dir
        Where ``frames.ome.tif``, ``volume.ome.tif`` and ``report.json`` go
        (`rmz_acq.io.run_folder`); ``preview.png`` comes from
        ``rmz_acq.preview.PreviewWriter(scan)``, which the command line
        attaches (the scan never imports the preview package).
    limits_um
        Focus travel limits: required when the stage reports none, otherwise
        they can only narrow the stage's (`rmz_acq.safety.travel_limits`).
    device
        Where the network runs (default: CUDA when available).
    overwrite
        Delete what an earlier run wrote in ``run_dir`` instead of refusing.
    policy
        Where each frame is taken (default: ``settings.next_plane``,
        `rmz_acq.acquisition.policies`).  A policy may choose any candidate,
        or any output plane between the lowest and the highest candidate.
    position_um
        ``(x, y)`` the XY stage moves to before the first frame (an
        experiment's position), checked against ``xy_limits_um`` (which can
        only narrow what the XY stage reports; required where it reports
        none).  ``None``: the XY stage stays where it is.
    cluster
        A ``distributed.Client``: the full grid is completed on a worker of
        its cluster (`rmz_acq.cluster.RemoteCompletion`) instead of a thread
        here; the volume is the same.  The decision planes stay here.

    Raises
    ------
    StageSafetyError
        A candidate lies outside the travel limits, or no limits are known.
    RmzError
        The volume would not fit in memory; the run folder is taken or not
        writable; ``strict`` and the optics differ from the model's.
    """

    def __init__(
        self,
        core: CMMCorePlus,
        model: LoadedModel,
        plan: ScanPlan,
        settings: ScanSettings,
        run_dir: str | Path,
        *,
        limits_um: tuple[float, float] | None = None,
        device: str | None = None,
        overwrite: bool = False,
        policy: NextPlanePolicy | None = None,
        position_um: tuple[float, float] | None = None,
        xy_limits_um: XYLimits | None = None,
        cluster: Client | None = None,
    ) -> None:
        self.core = core
        self.cluster = cluster
        self._device = device
        self.position_um = position_um
        if position_um is not None:
            xy_limits, _ = xy_travel_limits(xy_stage_limits(core), xy_limits_um)
            check_xy_within_limits([("the scan's position", *position_um)], xy_limits)
        # Set once the microscope is free again (the last frame is in, the
        # shutter closed); the volume may still be completing.
        self.acquired = threading.Event()
        self.acquisition_error: BaseException | None = None  # known when ``acquired`` is set
        self.model = model
        self.plan = plan
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.files = RunFiles(self.run_dir)
        self.overwrite = overwrite
        self.events = ScanSignals()
        self.policy = policy if policy is not None else make_policy(settings.next_plane)
        self.summary = summarize(core)
        self.limits_um, narrowed = travel_limits(self.summary.focus_limits_um, limits_um)
        self.warnings = compatibility_warnings(core, self.summary, model)
        if narrowed:
            self.warnings.insert(0, narrowed)
        if settings.strict and self.warnings:
            raise ConfigError("refusing to scan (--strict): " + "; ".join(self.warnings))
        try:
            plan.check_stage_limits(self.limits_um)
        except StageSafetyError as exc:
            raise StageSafetyError(f"{exc} ({narrowed})" if narrowed else str(exc)) from None
        self.folder = RunFolder(self.run_dir)
        self.folder.check(overwrite=overwrite)
        self.session = ReconstructionSession(
            model,
            plan.output_planes_um,
            device=device,
            compute_dtype=compute_dtype(settings.precision),
        )
        # The stop rule's planes: a few, spread evenly, pushed as each frame
        # arrives (no decision session when they would be most of the grid).
        self.judge = ScanJudge(model, plan, settings, device=device)
        self.plane_batch: int | None = None  # set when the whole grid's state does not fit
        self._check_memory()
        self._cancel = threading.Event()
        self._report_lock = threading.Lock()
        self._arrived: list[tuple[NDArray[Any], float, float]] = []  # image, z, arrival
        self._unused: FrameStackWriter | None = None
        self._completion: Completion | None = None
        self._volume: NDArray[np.float32] | None = None
        self.report: ScanReport | None = None

    @property
    def volume(self) -> NDArray[np.float32] | None:
        """The volume from the frames pushed so far (the final one once `run` returned)."""
        return self._volume if self._volume is not None else self.session.volume

    @property
    def decision(self) -> ReconstructionSession | None:
        """The session of the decision planes (``None``: the full grid decides)."""
        return self.judge.session

    def _check_memory(self) -> None:
        """Stream the whole grid if its state fits, else build it a batch of planes at a time.

        In the second case the frames are kept (they are small beside the
        state) and the volume is built after the scan stops
        (`rmz_acq.plane_batches`); the stop rule's decision planes work as
        always.  Refused when not even that fits.
        """
        height, width = self.summary.image_shape
        volume = len(self.plan.output_planes_um) * height * width * 4
        history = volume * len(self.plan.candidates_um) if self.settings.save_history else 0
        kept = len(self.plan.candidates_um) * height * width * 4
        frames = len(self.plan.candidates_um)
        self.plane_batch = self.session.plane_batch_that_fits(
            height, width, extra_host_bytes=history + kept, frames=frames
        )
        if self.plane_batch is not None:
            if self.decision is None:  # the grid is small: no decision planes to scan on
                self.session.check_memory(height, width, extra_host_bytes=history, frames=frames)
            self.warnings.append(
                f"the recurrent state of all {len(self.plan.output_planes_um)} output planes "
                f"does not fit in memory: the volume is built {self.plane_batch} planes at a "
                "time after the scan stops (the stop rule is not affected)"
            )

    # control -------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop after the frame in flight; safe from any thread.

        The frame in flight, if any, is kept in ``unused_frames.ome.tif``.
        """
        self._cancel.set()
        self.core.mda.cancel()  # also ends a pause or a wait between events

    def request_stop(self) -> None:
        """`cancel` for a signal handler: takes no lock, so it cannot deadlock.

        The scan stops before the next move (the MDA runner asks for the next
        event on the thread the handler interrupted).
        """
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def set_paused(self, paused: bool) -> None:
        """Pause or resume between frames (the microscope stays idle, shutter as is)."""
        self.core.mda.set_paused(paused)

    def toggle_pause(self) -> None:
        """Pause a running scan, or resume a paused one."""
        self.set_paused(not self.core.mda.is_paused())

    # the scan ------------------------------------------------------------------

    def _on_frame(self, image: NDArray[Any], event: useq.MDAEvent, meta: dict[str, Any]) -> None:
        # On the runner's thread, as the engine produces the frame.
        position = meta.get("position", {}) if isinstance(meta, dict) else {}
        measured = position.get("z")
        if measured is None:
            measured = self.core.getPosition()
        self._arrived.append((np.array(image, copy=True), float(measured), time.perf_counter()))

    def run(self) -> ScanReport:
        """Scan until a stop rule fires; returns (and writes) the report.

        Errors from the hardware end the scan with stop reason ``error``:
        the frames taken so far, the volume and the report are still written,
        and the exception is raised again afterwards.  ``KeyboardInterrupt``
        ends it as ``cancelled`` (everything written), then propagates.

        Raises
        ------
        RunLockedError
            Another scan holds the run folder.
        OutputExistsError
            The folder filled up since the scan was planned (and no ``overwrite``).
        AcquisitionError
            The scan or the writing of its results failed; ``report.error`` says how.
        """
        with self.folder.locked():
            self.folder.check(overwrite=self.overwrite)
            if self.overwrite:
                self.folder.clear()
            return self._run()

    # one scan ----------------------------------------------------------------

    def _new_report(self) -> ScanReport:
        return ScanReport(
            stop_reason=StopReason.ERROR,
            error=IN_PROGRESS,
            epsilon=self.settings.epsilon,
            relative_epsilon=None
            if self.settings.epsilon is not None
            else self.settings.relative_epsilon,
            model={
                "name": self.model.name,
                "sha256": self.model.sha256,
                "path": str(self.model.path),
                **(
                    {"linear_blend": self.model.linear_blend.describe()}
                    if self.model.linear_blend is not None
                    else {}
                ),
            },
            output_planes_um=list(self.plan.output_planes_um),
            candidates_um=list(self.plan.candidates_um),
            settings=self.settings.model_dump(),
            volume_order="as-taken",  # "z" once rebuilt sorted by z
            warnings=list(self.warnings),
            pixel_size_um=self.summary.pixel_size_um,
            focus_limits_um=list(self.limits_um),
            next_plane=self.policy.name,
        )

    def _write_report(self) -> None:
        assert self.report is not None
        with self._report_lock:
            self.report.write(self.files.report)

    def _keep_unused(self, image: NDArray[Any], measured: float, commanded: float) -> None:
        """A frame taken but not used (arrived after a cancel): kept, never dropped."""
        assert self.report is not None
        if self._unused is None:
            self._unused = FrameStackWriter(self.files.unused_frames, self.summary.pixel_size_um)
        self._unused.append(image, measured, commanded_z_um=commanded)
        self.report.unused_frames.append({"commanded_z_um": commanded, "measured_z_um": measured})

    def _run(self) -> ScanReport:
        self.report = report = self._new_report()
        self._write_report()  # a scan that dies still leaves its plan and grid
        self._frames = FrameStackWriter(self.files.frames, self.summary.pixel_size_um)
        self._unused = None
        self._arrived = []
        self._history: list[NDArray[np.float32]] = []
        self._started = time.perf_counter()
        self._completion = (
            self._start_completion()
            if self.decision is not None and self.plane_batch is None
            else None
        )
        # the frames, when the volume is built after the scan: plane-major, or in z order
        self._kept: list[tuple[NDArray[Any], float]] = []
        self._volume = None
        stop: list[StopReason] = []
        failure: BaseException | None = None
        connect_on_runner_thread(self.core.mda.events.frameReady, self._on_frame)
        try:
            if self.position_um is not None:
                self._move_xy(*self.position_um)
            with light_path_open(self.core):
                self.core.mda.run(self._events(stop))
        except BaseException as exc:  # the hardware, our own checks, or Ctrl-C
            failure = exc
        finally:
            self.core.mda.events.frameReady.disconnect(self._on_frame)
            self.acquisition_error = failure
            self.acquired.set()
            decided = time.perf_counter()
            for image, measured, _ in self._arrived:  # taken after the scan stopped using frames
                with contextlib.suppress(Exception):
                    self._keep_unused(image, measured, float("nan"))
            try:
                if self._completion is not None:
                    self._completion.finish()
                    self._volume = self._completion.volume()
                if self.plane_batch is not None and self._kept:
                    self._build_by_plane_batches()  # the records' changes, as taken
                if sorts_by_z(self.settings.volume_order, len(self._kept), self.model):
                    self._rebuild_in_z_order()
                    report.volume_order = "z"
            except Exception as exc:
                failure = failure or exc
            interrupted = isinstance(failure, KeyboardInterrupt)
            if interrupted or (self._cancel.is_set() and not stop):
                stop.insert(0, StopReason.CANCELLED)
            report.stop_reason = (
                StopReason.ERROR
                if failure is not None and not interrupted
                else (stop[0] if stop else StopReason.MAX_FRAMES)
            )
            report.error = (
                f"{type(failure).__name__}: {failure}"
                if failure is not None and not interrupted
                else None
            )
            problems = self._finish(report)
            total = time.perf_counter() - self._started
            deciding = sum(f.decision_s or 0.0 for f in report.frames)
            report.durations_s = {
                "acquisition": max(decided - self._started - deciding, 0.0),
                "decision": deciding,
                "reconstruction": sum(f.reconstruction_s for f in report.frames),
                "after_last_frame": time.perf_counter() - decided,
                "total": total,
            }
            with contextlib.suppress(Exception):
                self._write_report()
        self.events.finished.emit(report)
        if isinstance(failure, KeyboardInterrupt):
            raise failure  # after everything was written, as a cancel
        if failure is None:
            if problems:
                raise AcquisitionError(f"the scan's results were not all written: {report.error}")
            return report
        if isinstance(failure, RmzError) or not isinstance(failure, Exception):
            raise failure
        raise AcquisitionError(f"scan ended with an error: {report.error}") from failure

    def _move_xy(self, x: float, y: float) -> None:
        """Move the XY stage to the scan's position and check that it got there.

        Done here rather than through the events: pymmcore-plus's engine logs
        a failed XY move and carries on, which would image the wrong place.
        """
        stage = self.core.getXYStageDevice()
        if not stage:
            raise AcquisitionError("the scan has an XY position but the core has no XY stage")
        self.core.setXYPosition(x, y)
        self.core.waitForDevice(stage)
        at = self.core.getXYPosition()
        if max(abs(at[0] - x), abs(at[1] - y)) > XY_TOLERANCE_UM:
            raise AcquisitionError(
                f"the XY stage is at ({at[0]:g}, {at[1]:g}) um, not at ({x:g}, {y:g}) um as "
                "asked; no frame was taken there"
            )

    def _events(self, stop: list[StopReason]) -> Iterator[useq.MDAEvent]:
        """One event per frame until a stop; each frame is judged, and its
        successor's plane chosen, before the next move."""
        choosable = choosable_planes(self.plan.candidates_um, self.plan.output_planes_um)
        state = ScanState(candidates_um=self.plan.candidates_um, choosable_um=choosable)
        for index in range(len(self.plan.candidates_um)):
            if self._cancel.is_set():
                stop.append(StopReason.CANCELLED)
                return
            choice = self.policy.choose(state)
            if choice is None:  # the policy has nothing left worth taking
                stop.append(StopReason.MAX_FRAMES)
                return
            z = self._checked_choice(choice, state)
            yield useq.MDAEvent(index={"z": index}, z_pos=z, exposure=self.settings.exposure_ms)
            if not self._arrived:
                raise AcquisitionError(
                    f"the camera delivered no frame at z = {z:g} um (the snap failed; see the log)"
                )
            image, measured, arrived = self._arrived.pop(0)
            if self._cancel.is_set():
                self._keep_unused(image, measured, z)
                stop.append(StopReason.CANCELLED)
                return
            verdict = self._take(index, choice, image, measured, arrived)
            if verdict.stop is not None:
                stop.append(verdict.stop)
                return
            state = state.after(
                z, self.judge.judged_planes_um, verdict.plane_changes, verdict.plane_signal
            )

    def _checked_choice(self, choice: PlaneChoice, state: ScanState) -> float:
        """The policy's plane, refused unless the plan allows it; never trust a move."""
        z = float(choice.z_um)
        allowed = np.asarray(state.choosable_um)
        if not np.any(np.abs(allowed - z) <= 1e-9):
            raise StageSafetyError(
                f"next-plane policy {self.policy.name!r} chose z = {z!r} um, which is not a "
                f"plane the plan allows ({allowed[0]:g} to {allowed[-1]:g} um); nothing moved"
            )
        if state.taken_um and np.min(np.abs(np.asarray(state.taken_um) - z)) <= 1e-9:
            raise AcquisitionError(
                f"next-plane policy {self.policy.name!r} chose z = {z:g} um a second time"
            )
        check_within_limits([z], self.limits_um)  # the plan was checked; never trust
        return z

    def _take(
        self,
        index: int,
        choice: PlaneChoice,
        image: NDArray[Any],
        measured: float,
        arrived: float,
    ) -> Verdict:
        """Keep one frame and judge it (the verdict's ``stop``: ``None`` to go on)."""
        assert self.report is not None
        z = choice.z_um
        self._frames.append(image, measured, exposure_ms=self.core.getExposure(), commanded_z_um=z)
        if not self._frames.intact():
            raise AcquisitionError(
                f"the run folder {self.run_dir} (or its frames.ome.tif) was removed during the "
                f"scan; stopped after frame {index + 1} so no more frames are taken blind"
            )
        if self._completion is not None and self._completion.error is not None:
            raise self._completion.error
        self.events.frameAcquired.emit(AcquiredFrame(index, z, measured))
        saturation = find_saturation(image, camera_ceiling(self.summary.bit_depth, image.dtype))
        if saturation.worth_warning:
            note = saturation_note(f"frame {index + 1} at z {measured:.3f} um", saturation)
            with self._report_lock:
                self.report.warnings.append(note)
        record = FrameRecord(
            index=index,
            commanded_z_um=z,
            measured_z_um=measured,
            time_s=arrived - self._started,
            frobenius_change=None,
            relative_change=None,
            reconstruction_s=0.0,
            plane_score=choice.score,
            plane_reason=choice.why,
            saturated_fraction=saturation.fraction,
        )
        with self._report_lock:
            self.report.frames.append(record)
        completion, full = self._completion, None
        if completion is None and self.plane_batch is None:  # the full grid, here and now
            full = self.session.push(image, measured)
        elif completion is not None:  # the full grid follows on the completion's thread
            completion.submit(index, image, measured)
        if self.plane_batch is not None or self.settings.volume_order == "z":
            # the full grid is built (again) once the scan stops
            self._kept.append((image, measured))
        verdict = self.judge.judge(
            index,
            image,
            measured,
            elapsed_s=time.perf_counter() - self._started,
            full=full,
            # near the threshold: wait for the completion to reach this frame
            full_changes=None
            if completion is None
            else functools.partial(completion.changes, index, self._cancel.is_set),
            planned_um=z,
        )
        on_full_grid = verdict.full_grid or self.judge.session is None
        with self._report_lock:  # the completion may have filled in its figures meanwhile
            position = next(i for i, f in enumerate(self.report.frames) if f.index == index)
            record = self.report.frames[position] = replace(
                self.report.frames[position],
                decision_s=time.perf_counter() - arrived,
                decision_frobenius_change=verdict.frobenius_change,
                decision_relative_change=verdict.relative_change,
                decided_on="full grid" if on_full_grid else "decision planes",
            )
        if full is not None:
            self._on_completed(index, full)
        else:
            self._write_report()
        self.events.decisionMade.emit(record)
        return verdict

    def _start_completion(self) -> Completion:
        """The full grid's worker: a thread here, or an actor on the Dask cluster."""
        if self.cluster is None:
            return Completion(self.session, self._on_completed)
        from ..cluster import RemoteCompletion

        return RemoteCompletion(
            self.cluster,
            self.model.path,
            self.session.output_planes_um.tolist(),
            device=None if self._device is None else str(self._device),
            precision=self.settings.precision,
            on_pushed=self._on_completed,
        )

    def _build_by_plane_batches(self) -> None:
        """The volume from the kept frames, ``plane_batch`` output planes at a time."""
        from ..plane_batches import reconstruct_by_plane_batches

        assert self.report is not None and self.plane_batch is not None
        built = reconstruct_by_plane_batches(
            self.model,
            [image for image, _ in self._kept],
            [z for _, z in self._kept],
            self.session.output_planes_um,
            batch_planes=self.plane_batch,
            device=self.session.device,
            compute_dtype=self.session.compute_dtype,
        )
        self._volume = built.volume
        with self._report_lock:
            for i, record in enumerate(self.report.frames):
                self.report.frames[i] = replace(
                    record,
                    frobenius_change=built.frobenius_changes[i],
                    relative_change=built.relative_changes[i],
                    reconstruction_s=built.seconds[i],
                )
        last = self.report.frames[-1]
        self.events.volumeUpdated.emit(
            VolumeUpdate(last, built.volume, self.session.output_planes_um)
        )

    def _rebuild_in_z_order(self) -> None:
        """The final volume from the frames sorted by z, lowest first (``volume_order="z"``).

        As ``rmz-acq reconstruct RUN/frames.ome.tif --order z`` builds it (the
        measured z, a stable sort, and the intensity statistics of all the
        frames together: `stack_normalization`), so it is the same whatever
        order the scan took its planes in; the frames' records keep the
        changes of the scan as it ran.
        """
        from ..plane_batches import reconstruct_by_plane_batches
        from ..reconstruct import stack_normalization

        assert self.report is not None
        measured = np.asarray([z for _, z in self._kept])
        order = np.argsort(measured, kind="stable")
        if len(order) < 2:
            return
        self.session.reset()  # the as-taken grid's state is not needed any more
        planes = self.session.output_planes_um
        built = reconstruct_by_plane_batches(
            self.model,
            [self._kept[i][0] for i in order],
            measured[order].tolist(),
            planes,
            batch_planes=self.plane_batch or len(planes),
            device=self.session.device,
            compute_dtype=self.session.compute_dtype,
            normalization=stack_normalization(self.model, [image for image, _ in self._kept]),
        )
        self._volume = built.volume
        self.events.volumeUpdated.emit(VolumeUpdate(self.report.frames[-1], built.volume, planes))

    def _on_completed(self, index: int, result: PushResult) -> None:
        """The full grid has taken frame ``index``: fill in its record, tell the listeners."""
        assert self.report is not None
        with self._report_lock:
            position = next(i for i, f in enumerate(self.report.frames) if f.index == index)
            record = replace(
                self.report.frames[position],
                frobenius_change=result.frobenius_change,
                relative_change=result.relative_change,
                reconstruction_s=result.reconstruction_s,
            )
            self.report.frames[position] = record
        # The runner's own write, per frame, reports a disk that fails; this
        # one only adds the full grid's figures.
        with contextlib.suppress(OSError):
            self._write_report()
        if self.settings.save_history:
            self._history.append(result.volume.copy())
        self.events.volumeUpdated.emit(
            VolumeUpdate(record, result.volume, self.session.output_planes_um)
        )

    def _finish(self, report: ScanReport) -> list[str]:
        """Write the volume, preview and final report; what could not be written.

        Each file is attempted on its own, so a failure (a full disk, the
        folder removed) loses only that file; the report, written last,
        says what is missing and why.
        """
        problems: list[str] = []

        def attempt(what: str, write: Any) -> None:
            try:
                write()
            except Exception as exc:
                problems.append(f"{what} not written ({type(exc).__name__}: {exc})")

        attempt(FRAMES, self._frames.close)
        if self._unused is not None:
            attempt(UNUSED_FRAMES, self._unused.close)
        planes = self.session.output_planes_um
        pixel = self.summary.pixel_size_um
        step = float(np.diff(planes).mean()) if len(planes) > 1 else None
        volume = self._volume if self._volume is not None else self.session.volume
        if volume is not None and not np.isfinite(volume).all():
            problems.append(f"{VOLUME} not written: it holds non-finite values (NaN or inf)")
            volume = None
        if volume is not None:
            name = f"rmz_acq {self.model.name} {self.model.sha256[:12]}"
            attempt(
                VOLUME,
                lambda: write_zstack(
                    self.files.volume,
                    volume,
                    planes,
                    pixel,
                    z_step_um=step,
                    name=name,
                ),
            )
            for i, past in enumerate(self._history):
                target = self.files.volume_after(i + 1)
                attempt(
                    target.name,
                    lambda past=past, target=target: write_zstack(
                        target, past, planes, pixel, z_step_um=step, name=name
                    ),
                )
        if problems:
            stopped = report.stop_reason.value
            report.stop_reason = StopReason.ERROR
            earlier = [report.error] if report.error else []
            report.error = "; ".join([*earlier, *problems, f"the scan stopped: {stopped}"])
        report.finished = True
        attempt(REPORT, self._write_report)
        return problems
