"""The adaptive scan: sparse planes through ``core.mda``, a volume after every frame.

Events are produced one at a time by a generator that the MDA runner pulls
from.  The runner asks for the next event only after the previous one was
executed, and the generator asks the frame queue for that frame before it
decides anything, so each frame is on disk, pushed into the session and
judged by the stop rules before the stage moves again.  Reconstruction runs
inside the generator, on the runner's thread, never in a ``frameReady``
callback (which pymmcore-plus delivers on the Qt main thread once a
QApplication exists).

Signals (psygnal), all emitted on the thread that runs `AdaptiveScan.run`
(the MDA runner's thread):

- ``frameAcquired(AcquiredFrame)``: a frame is on disk (before the push);
- ``volumeUpdated(VolumeUpdate)``: the volume after a push, and its change;
- ``finished(ScanReport)``: the scan ended, files are written.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import useq
from numpy.typing import NDArray
from psygnal import Signal, SignalGroup
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymmcore_plus import CMMCorePlus

from ..errors import AcquisitionError, ConfigError, RmzError, StageSafetyError
from ..hardware import MicroscopeSummary, connect_on_runner_thread, light_path_open, summarize
from ..io import FrameStackWriter, write_zstack
from ..io.outputs import RunFolder
from ..model.weights import LoadedModel
from ..safety import check_within_limits, travel_limits
from ..session import ReconstructionSession, compute_dtype
from .plan import ScanPlan
from .report import FrameRecord, ScanReport, write_preview
from .stop_rules import (
    FrobeniusChange,
    MaxFrames,
    RelativeChange,
    ScanProgress,
    StopReason,
    StopRule,
    TimeBudget,
    first_stop,
)

__all__ = [
    "AcquiredFrame",
    "AdaptiveScan",
    "ScanSettings",
    "VolumeUpdate",
    "compatibility_warnings",
    "default_relative_epsilon",
]

DEFAULT_RELATIVE_EPSILON = 0.1  # from benchmarks/bench_adaptive.py, see README
# Per preset, from benchmarks/bench_adaptive.py --sample worm / --sample beads:
# nuclei volumes gain 2 dB from frame 4 to frame 6 and change by 4-6 % of
# their norm per frame after that; sparse beads change a small share of the
# volume's norm with each frame (0.02-0.06 relative, on and on), and keep
# sharpening up to 8-9 frames.
PRESET_RELATIVE_EPSILON = {"nuclei": 0.05, "beads": 0.02}


def default_relative_epsilon(model_name: str) -> float:
    """The relative epsilon a scan with this model stops at by default.

    The shipped presets have their own (measured); any other model gets
    `DEFAULT_RELATIVE_EPSILON`.
    """
    return PRESET_RELATIVE_EPSILON.get(model_name, DEFAULT_RELATIVE_EPSILON)


def _frame_timeout_s() -> float:
    # Without Qt, frameReady is emitted on the runner thread before it asks
    # for the next event, so a missing frame is a failed snap (pymmcore-plus
    # only logs those).  With a QApplication the frame is delivered through
    # the Qt event loop and may come a little later.
    import sys

    qt = sys.modules.get("qtpy.QtWidgets") or sys.modules.get("PyQt6.QtWidgets")
    app = getattr(qt, "QApplication", None)
    return 30.0 if app is not None and app.instance() is not None else 2.0


class ScanSettings(BaseModel):
    """Stop rule and limits of an adaptive scan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epsilon: float | None = Field(None, ge=0, description="absolute ||V_M - V_(M-1)||_F")
    relative_epsilon: float | None = Field(DEFAULT_RELATIVE_EPSILON, ge=0)
    min_frames: int = Field(2, ge=1)
    max_frames: int | None = Field(None, ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    exposure_ms: float | None = Field(None, gt=0)
    save_history: bool = False
    strict: bool = False
    precision: Literal["float32", "bfloat16"] = "float32"

    @model_validator(mode="after")
    def _a_rule(self) -> ScanSettings:
        if self.max_frames is not None and self.max_frames < self.min_frames:
            raise ValueError(f"max_frames {self.max_frames} is below min_frames {self.min_frames}")
        return self

    def rules(self) -> list[StopRule]:
        rules: list[StopRule] = []
        if self.epsilon is not None:
            rules.append(FrobeniusChange(self.epsilon))
        if self.relative_epsilon is not None and self.epsilon is None:
            rules.append(RelativeChange(self.relative_epsilon))
        if self.max_frames is not None:
            rules.append(MaxFrames(self.max_frames))
        if self.time_budget_s is not None:
            rules.append(TimeBudget(self.time_budget_s))
        return rules


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
        Where ``frames.ome.tif``, ``volume.ome.tif``, ``report.json`` and
        ``preview.png`` go.
    limits_um
        Focus travel limits: required when the stage reports none, otherwise
        they can only narrow the stage's (`rmz_acq.safety.travel_limits`).
    device
        Where the network runs (default: CUDA when available).
    overwrite
        Delete what an earlier run wrote in ``run_dir`` instead of refusing.

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
    ) -> None:
        self.core = core
        self.model = model
        self.plan = plan
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.overwrite = overwrite
        self.events = ScanSignals()
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
        self._check_memory()
        self._frames: queue.Queue[tuple[NDArray[Any], float] | None] = queue.Queue()
        self._cancel = threading.Event()
        self.report: ScanReport | None = None

    def _check_memory(self) -> None:
        height, width = self.summary.image_shape
        volume = len(self.plan.output_planes_um) * height * width * 4
        history = volume * len(self.plan.candidates_um) if self.settings.save_history else 0
        self.session.check_memory(height, width, extra_host_bytes=history)

    # control -------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop after the frame in flight; safe from any thread.

        The frame in flight, if any, is kept in ``unused_frames.ome.tif``.
        """
        self._cancel.set()
        self._frames.put(None)  # wake the generator if it waits for a frame
        self.core.mda.cancel()

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
        position = meta.get("position", {}) if isinstance(meta, dict) else {}
        measured = position.get("z")
        if measured is None:
            measured = self.core.getPosition()
        self._frames.put((np.array(image, copy=True), float(measured)))

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

    def _run(self) -> ScanReport:
        pixel = self.summary.pixel_size_um
        report_path = self.run_dir / "report.json"
        frames_writer = FrameStackWriter(self.run_dir / "frames.ome.tif", pixel)
        unused: list[FrameStackWriter] = []
        report = ScanReport(
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
            },
            output_planes_um=list(self.plan.output_planes_um),
            candidates_um=list(self.plan.candidates_um),
            settings=self.settings.model_dump(),
            warnings=list(self.warnings),
            pixel_size_um=pixel,
            focus_limits_um=list(self.limits_um),
        )
        report.write(report_path)  # a scan that dies still leaves its plan and grid
        history: list[NDArray[np.float32]] = []
        started = time.perf_counter()
        reconstruction_s = 0.0
        rules = self.settings.rules()
        decided: list[StopReason] = []
        failure: BaseException | None = None

        def keep_unused(image: NDArray[Any], measured: float, commanded: float) -> None:
            if not unused:
                unused.append(FrameStackWriter(self.run_dir / "unused_frames.ome.tif", pixel))
            unused[0].append(image, measured, commanded_z_um=commanded)
            report.unused_frames.append({"commanded_z_um": commanded, "measured_z_um": measured})

        def event_stream() -> Iterator[useq.MDAEvent]:
            nonlocal reconstruction_s
            for index, z in enumerate(self.plan.candidates_um):
                if self._cancel.is_set():
                    decided.append(StopReason.CANCELLED)
                    return
                check_within_limits([z], self.limits_um)  # the plan was checked; never trust
                yield useq.MDAEvent(index={"z": index}, z_pos=z, exposure=self.settings.exposure_ms)
                try:
                    item = self._frames.get(timeout=_frame_timeout_s())
                except queue.Empty:
                    raise AcquisitionError(
                        f"the camera delivered no frame at z = {z:g} um (the snap failed; "
                        "see the log)"
                    ) from None
                if item is None:  # cancelled while waiting; a late frame is drained later
                    decided.append(StopReason.CANCELLED)
                    return
                image, measured = item
                arrived = time.perf_counter() - started
                if self._cancel.is_set():
                    keep_unused(image, measured, z)
                    decided.append(StopReason.CANCELLED)
                    return
                frames_writer.append(
                    image, measured, exposure_ms=self.core.getExposure(), commanded_z_um=z
                )
                if not frames_writer.intact():
                    raise AcquisitionError(
                        f"the run folder {self.run_dir} (or its frames.ome.tif) was removed "
                        f"during the scan; stopped after frame {index + 1} so no more frames "
                        "are taken blind"
                    )
                self.events.frameAcquired.emit(AcquiredFrame(index, z, measured))
                result = self.session.push(image, measured)
                reconstruction_s += result.reconstruction_s
                record = FrameRecord(
                    index=index,
                    commanded_z_um=z,
                    measured_z_um=measured,
                    time_s=arrived,
                    frobenius_change=result.frobenius_change,
                    relative_change=result.relative_change,
                    reconstruction_s=result.reconstruction_s,
                )
                report.frames.append(record)
                report.write(report_path)
                if self.settings.save_history:
                    history.append(result.volume.copy())
                self.events.volumeUpdated.emit(
                    VolumeUpdate(record, result.volume, self.session.output_planes_um)
                )
                progress = ScanProgress(
                    frames=index + 1,
                    frobenius_change=result.frobenius_change,
                    relative_change=result.relative_change,
                    elapsed_s=time.perf_counter() - started,
                    candidates_left=len(self.plan.candidates_um) - index - 1,
                )
                reason = first_stop(rules, progress, min_frames=self.settings.min_frames)
                if reason is not None:
                    decided.append(reason)
                    return

        connect_on_runner_thread(self.core.mda.events.frameReady, self._on_frame)
        try:
            with light_path_open(self.core):
                self.core.mda.run(event_stream())
        except BaseException as exc:  # the hardware, our own checks, or Ctrl-C
            failure = exc
        finally:
            self.core.mda.events.frameReady.disconnect(self._on_frame)
            # A frame that arrived after the scan stopped waiting for it (a
            # cancel during the snap) is kept, not dropped.
            while True:
                try:
                    item = self._frames.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    with contextlib.suppress(Exception):
                        keep_unused(item[0], item[1], float("nan"))
            interrupted = isinstance(failure, KeyboardInterrupt)
            if interrupted or (self._cancel.is_set() and not decided):
                decided.insert(0, StopReason.CANCELLED)
            report.stop_reason = (
                StopReason.ERROR
                if failure is not None and not interrupted
                else (decided[0] if decided else StopReason.MAX_FRAMES)
            )
            report.error = (
                f"{type(failure).__name__}: {failure}"
                if failure is not None and not interrupted
                else None
            )
            total = time.perf_counter() - started
            report.durations_s = {
                "acquisition": max(total - reconstruction_s, 0.0),
                "reconstruction": reconstruction_s,
                "total": total,
            }
            problems = self._finish(report, frames_writer, unused, history)
        self.report = report
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

    def _finish(
        self,
        report: ScanReport,
        frames_writer: FrameStackWriter,
        unused: list[FrameStackWriter],
        history: list[NDArray[np.float32]],
    ) -> list[str]:
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

        attempt("frames.ome.tif", frames_writer.close)
        for writer in unused:
            attempt("unused_frames.ome.tif", writer.close)
        planes = self.session.output_planes_um
        pixel = self.summary.pixel_size_um
        step = float(np.diff(planes).mean()) if len(planes) > 1 else None
        volume = self.session.volume
        if volume is not None and not np.isfinite(volume).all():
            problems.append("volume.ome.tif not written: it holds non-finite values (NaN or inf)")
            volume = None
        if volume is not None:
            name = f"rmz_acq {self.model.name} {self.model.sha256[:12]}"
            attempt(
                "volume.ome.tif",
                lambda: write_zstack(
                    self.run_dir / "volume.ome.tif",
                    volume,
                    planes,
                    pixel,
                    z_step_um=step,
                    name=name,
                ),
            )
            for i, past in enumerate(history):
                target = self.run_dir / f"volume_after_{i + 1:02d}_frames.ome.tif"
                attempt(
                    target.name,
                    lambda past=past, target=target: write_zstack(
                        target, past, planes, pixel, z_step_um=step, name=name
                    ),
                )
            with contextlib.suppress(Exception):  # a preview must never lose the data
                write_preview(
                    volume,
                    planes,
                    pixel,
                    report.frames,
                    self.run_dir / "preview.png",
                    epsilon=report.epsilon,
                    relative_epsilon=report.relative_epsilon,
                    title=f"{len(report.frames)} frames, stop: {report.stop_reason.value}",
                )
        if problems:
            stopped = report.stop_reason.value
            report.stop_reason = StopReason.ERROR
            earlier = [report.error] if report.error else []
            report.error = "; ".join([*earlier, *problems, f"the scan stopped: {stopped}"])
        report.finished = True
        attempt("report.json", lambda: report.write(self.run_dir / "report.json"))
        return problems
