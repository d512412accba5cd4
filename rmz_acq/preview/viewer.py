"""Live volumetric viewer (Qt): watch the volume build up and see why the scan stopped.

The scan runs on a worker thread; its ``volumeUpdated`` and ``finished``
signals are forwarded through a Qt signal, so every update is drawn on the
GUI thread and the GUI never waits on the microscope.  The window shows the
orthogonal maximum projections with the acquired planes marked and the
convergence curve against epsilon (the same picture as the snapshots), the
frame count and the stop reason; with ``slicer=True`` an ndv viewer of the
volume for slicing through it (ndv draws with OpenGL, and fetches icons
online on first use, so it is opt-in).

Needs the ``view`` extra: ``pip install "rmz_acq[view]"``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qtpy.QtCore import QObject, Qt, QThread, Signal
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from ..acquisition.controller import AdaptiveScan, VolumeUpdate
from ..acquisition.report import FrameRecord, ScanReport
from .render import judged_change, render_preview

__all__ = ["ScanViewer", "open_run", "read_run", "start_scan"]


class _Bridge(QObject):
    """Carries scan signals from the worker thread to the GUI thread."""

    decided = Signal(object)
    updated = Signal(object)
    finished = Signal(object)


class ScanViewer(QWidget):
    """The live view of one scan (or of a finished run).

    Attributes
    ----------
    updates
        ``(frame index, drawn on the GUI thread)`` for every update received.
    report
        The final report, once the scan finished.
    """

    def __init__(
        self,
        pixel_um: float,
        *,
        epsilon: float | None = None,
        relative_epsilon: float | None = None,
        slicer: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("rmz_acq: adaptive scan")
        self.pixel_um = pixel_um
        self.epsilon = epsilon
        self.relative_epsilon = relative_epsilon
        self.records: list[FrameRecord] = []
        self.decisions: list[FrameRecord] = []
        self.updates: list[tuple[int, bool]] = []
        self.report: ScanReport | None = None
        self.volume: NDArray[np.float32] | None = None
        self.planes_um: NDArray[np.float64] | None = None
        self.image: NDArray[np.uint8] | None = None
        self._bridge = _Bridge()
        self._bridge.decided.connect(self._on_decision)
        self._bridge.updated.connect(self._on_update)
        self._bridge.finished.connect(self._on_finished)

        self.status = QLabel("waiting for the first frame")
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self._ndv: Any = None
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.picture)
        if slicer:
            # ndv needs OpenGL and fetches its icons from the internet on first
            # use (falling back when offline), so it is opt-in.
            import ndv

            self._ndv = ndv.ArrayViewer(np.zeros((1, 8, 8), np.float32))
            splitter.addWidget(self._ndv.widget())
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(splitter)

    # feeding -------------------------------------------------------------------

    def attach(self, scan: AdaptiveScan) -> None:
        """Follow ``scan`` (call before it starts; thread-safe forwarding)."""
        scan.events.decisionMade.connect(self._bridge.decided.emit)
        scan.events.volumeUpdated.connect(self._forward_update)
        scan.events.finished.connect(self._bridge.finished.emit)

    def _forward_update(self, update: VolumeUpdate) -> None:
        # On the scan's thread: copy, since the session keeps writing its volume.
        self._bridge.updated.emit(
            VolumeUpdate(update.record, update.volume.copy(), update.output_planes_um)
        )

    def _on_decision(self, record: FrameRecord) -> None:
        # The rule's verdict comes first; the full volume follows from the
        # background completion.
        self.decisions.append(record)
        change = record.decision_relative_change
        shown = "-" if change is None else f"{change:.4f}"
        behind = len(self.decisions) - len(self.records)
        # Near the threshold the scan waits for the completion and judges the
        # full grid (ScanSettings.decision_margin): say so, or the wait looks
        # like a stall.
        where = " on the full grid" if record.decided_on == "full grid" else ""
        self.status.setText(
            f"frame {record.index + 1} at z = {record.measured_z_um:.2f} um judged{where} in "
            f"{record.decision_s or 0:.2f} s: change {shown}"
            + (f"; volume {behind} frame(s) behind" if behind > 0 else "")
        )

    def _on_update(self, update: VolumeUpdate) -> None:
        on_gui_thread = QThread.currentThread() is self.thread()
        self.updates.append((update.record.index, on_gui_thread))
        self.records.append(update.record)
        self.show_volume(update.volume, update.output_planes_um)
        change = judged_change(update.record, absolute=self.epsilon is not None)
        shown = "-" if change is None else f"{change:.4g}"
        target = self.relative_epsilon if self.epsilon is None else self.epsilon
        self.status.setText(
            f"{len(self.records)} frames; last at z = {update.record.measured_z_um:.2f} um; "
            f"change {shown} (epsilon {target})"
        )

    def _on_finished(self, report: ScanReport) -> None:
        self.report = report
        self.records = list(report.frames)
        if self.volume is not None and self.planes_um is not None:
            self.show_volume(self.volume, self.planes_um)
        self.status.setText(
            f"stopped: {report.stop_reason.value} after {len(report.frames)} frames"
            + (f" ({report.error})" if report.error else "")
        )

    def reset(self) -> None:
        """Forget the scan shown (before following another one)."""
        self.records, self.decisions, self.report = [], [], None
        self.status.setText("waiting for the first frame")

    def show_report(self, volume: NDArray[np.floating], report: ScanReport) -> None:
        """Show a finished scan: its volume, planes and convergence."""
        self.epsilon, self.relative_epsilon = report.epsilon, report.relative_epsilon
        self.volume = np.asarray(volume, np.float32)
        self.planes_um = np.asarray(report.output_planes_um, np.float64)
        self._on_finished(report)

    def show_volume(self, volume: NDArray[np.floating], planes_um: NDArray[np.floating]) -> None:
        """Draw ``volume`` (projections, curve, and the ndv slicer)."""
        self.volume = np.asarray(volume, np.float32)
        self.planes_um = np.asarray(planes_um, np.float64)
        title = (
            f"{len(self.records)} frames"
            if self.report is None
            else f"stop: {self.report.stop_reason.value}"
        )
        self.image = render_preview(
            self.volume,
            self.planes_um,
            self.pixel_um,
            self.records,
            epsilon=self.epsilon,
            relative_epsilon=self.relative_epsilon,
            title=title,
        )
        height, width = self.image.shape[:2]
        qimage = QImage(self.image.data, width, height, 3 * width, QImage.Format.Format_RGB888)
        self.picture.setPixmap(QPixmap.fromImage(qimage.copy()))
        if self._ndv is not None:
            self._ndv.data = self.volume


def start_scan(scan: AdaptiveScan, viewer: ScanViewer) -> threading.Thread:
    """Run ``scan`` on a worker thread with ``viewer`` following it."""
    viewer.attach(scan)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            scan.run()
        except BaseException as exc:  # shown in the viewer via the report
            failures.append(exc)

    thread = threading.Thread(target=work, name="rmz-acq-scan", daemon=True)
    thread.failures = failures  # type: ignore[attr-defined]
    thread.start()
    return thread


def read_run(run_dir: str | Path) -> tuple[NDArray[np.float32], float, ScanReport]:
    """The volume, pixel size and report of a finished run folder."""
    from ..io import read_zstack
    from ..io.run_folder import RunFiles

    files = RunFiles(Path(run_dir))
    volume = read_zstack(files.volume)
    report = ScanReport.read(files.folder)
    pixel = volume.pixel_size_um or report.pixel_size_um or 0.1
    return volume.data.astype(np.float32), pixel, report


def open_run(run_dir: str | Path, *, slicer: bool = False) -> ScanViewer:
    """A viewer of a finished run folder (volume, frames' planes, report)."""
    volume, pixel, report = read_run(run_dir)
    viewer = ScanViewer(
        pixel,
        epsilon=report.epsilon,
        relative_epsilon=report.relative_epsilon,
        slicer=slicer,
    )
    viewer.setWindowTitle(f"rmz_acq: {run_dir}")
    viewer.show_report(volume, report)
    return viewer
