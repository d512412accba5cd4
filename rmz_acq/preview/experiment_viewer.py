"""The viewer of an experiment: position and time controls beside one scan's live view.

While an experiment runs, the view follows the volume being taken (each
new scan replaces the last); uncheck "follow" to look at any finished
volume by position and time point while the experiment carries on.  The
status line counts volumes done, frames per volume and lateness.  A
finished experiment opens the same way (``rmz-acq view RUN_DIR``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ..experiment.report import VolumeRecord
from ..experiment.runner import ScanStarted, volume_folder
from ..io.run_folder import EXPERIMENT, RunFiles, RunReport
from .viewer import ScanViewer, read_run

if TYPE_CHECKING:
    from ..experiment.runner import Experiment

__all__ = ["ExperimentViewer", "open_experiment"]


class _Bridge(QObject):
    started = Signal(object)
    finished = Signal(object)


class ExperimentViewer(QWidget):
    """Positions x time points of one experiment, one volume at a time."""

    def __init__(
        self,
        run_dir: str | Path,
        positions: list[str],
        time_points: int,
        pixel_um: float,
        *,
        relative_epsilon: float | None = None,
        epsilon: float | None = None,
        slicer: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"rmz_acq: experiment {run_dir}")
        self.run_dir = Path(run_dir)
        self.total = len(positions) * time_points
        self.finished: dict[tuple[int, int], VolumeRecord] = {}
        self.shown: tuple[int, int] | None = None
        self._bridge = _Bridge()
        self._bridge.started.connect(self._on_started)
        self._bridge.finished.connect(self._on_finished)

        self.position = QComboBox()
        self.position.addItems(positions)
        self.time = QSlider(Qt.Orientation.Horizontal)
        self.time.setRange(0, max(time_points - 1, 0))
        self.time_label = QLabel()
        self.follow = QCheckBox("follow the live volume")
        self.follow.setChecked(True)
        self.progress = QLabel(f"0 of {self.total} volumes")
        self.scan_view = ScanViewer(
            pixel_um, epsilon=epsilon, relative_epsilon=relative_epsilon, slicer=slicer
        )
        controls = QHBoxLayout()
        controls.addWidget(QLabel("position"))
        controls.addWidget(self.position)
        controls.addWidget(QLabel("time"))
        controls.addWidget(self.time, stretch=1)
        controls.addWidget(self.time_label)
        controls.addWidget(self.follow)
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.progress)
        layout.addWidget(self.scan_view, stretch=1)
        self.position.currentIndexChanged.connect(self._on_choice)
        self.time.valueChanged.connect(self._on_choice)
        self._label_time()

    # following a running experiment -----------------------------------------------

    def attach(self, experiment: Experiment) -> None:
        """Follow ``experiment`` (call before it runs; its signals come from its threads)."""
        experiment.events.volumeStarted.connect(self._started_elsewhere)
        experiment.events.volumeFinished.connect(self._bridge.finished.emit)

    def _started_elsewhere(self, started: ScanStarted) -> None:
        # On the experiment's thread, before the scan runs: hook the scan up now
        # (its first frame may come before the GUI thread gets to it).
        if self.follow.isChecked():
            self.scan_view.attach(started.scan)
        self._bridge.started.emit(started.record)

    def _on_started(self, record: VolumeRecord) -> None:
        if not self.follow.isChecked():
            return
        self.scan_view.reset()
        self.shown = (record.p, record.t)
        for widget, value in ((self.position, record.p), (self.time, record.t)):
            widget.blockSignals(True)
            if isinstance(widget, QComboBox):
                widget.setCurrentIndex(value)
            else:
                widget.setValue(value)
            widget.blockSignals(False)
        self._label_time()

    def _on_finished(self, record: VolumeRecord) -> None:
        self.finished[(record.p, record.t)] = record
        done = list(self.finished.values())
        frames = [v.frames for v in done if v.error is None]
        late = max((v.late_s for v in done), default=0.0)
        failed = sum(v.error is not None for v in done)
        self.progress.setText(
            f"{len(done)} of {self.total} volumes"
            + (f"; {sum(frames) / len(frames):.1f} frames per volume" if frames else "")
            + f"; latest start {late:.1f} s behind schedule"
            + (f"; {failed} failed" if failed else "")
        )

    # looking back -------------------------------------------------------------------

    def _label_time(self) -> None:
        self.time_label.setText(f"t {self.time.value()}/{self.time.maximum()}")

    def _on_choice(self) -> None:
        self._label_time()
        if self.follow.isChecked():
            self.follow.setChecked(False)  # the user chose a volume: stop following
        self.show_volume(self.position.currentIndex(), self.time.value())

    def show_volume(self, p: int, t: int) -> bool:
        """Show the finished volume of position ``p`` at time point ``t``; False if none."""
        run = self.run_dir / volume_folder(p, t)
        self.shown = (p, t)
        if not RunFiles(run).finished:
            self.scan_view.status.setText(f"{run.name}: no volume (not taken yet, or failed)")
            return False
        volume, _, report = read_run(run)
        self.scan_view.reset()
        self.scan_view.show_report(volume, report)
        return True


def open_experiment(run_dir: str | Path, *, slicer: bool = False) -> ExperimentViewer:
    """A viewer of an experiment folder (``experiment.json`` and its volume folders)."""
    run = Path(run_dir)
    data = json.loads((run / EXPERIMENT).read_text())
    positions = [p["name"] for p in data["positions"]]
    pixel = 0.1
    for record in data["volumes"]:  # the first volume with a report gives the pixel size
        files = RunFiles(run / record["run"])
        if files.report.is_file():
            pixel = RunReport.read(files.folder).pixel_size_um or pixel
            break
    viewer = ExperimentViewer(run, positions, len(data["time_points_s"]), pixel, slicer=slicer)
    viewer.follow.setChecked(False)
    for record in data["volumes"]:
        viewer._on_finished(VolumeRecord(**record))
    shown = next((r for r in data["volumes"] if r.get("in_zarr")), None)
    if shown is not None:
        viewer.show_volume(shown["p"], shown["t"])
    return viewer
