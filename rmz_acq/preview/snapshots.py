"""Headless views of a scan: ``preview.png`` at its end, and snapshots per frame.

`PreviewWriter` listens to a scan's ``finished`` signal and writes
``RUN_DIR/preview.png``; for remote or scripted runs, a `SnapshotWriter`
connected to ``volumeUpdated`` writes ``RUN_DIR/snapshots/frame_NN.png`` after
each frame.  Both draw `rmz_acq.preview.render.render_preview`: XY/XZ/YZ
maximum projections with the acquired planes marked, and the convergence
curve.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..acquisition.controller import VolumeUpdate
from ..acquisition.report import FrameRecord, ScanReport
from .render import write_preview

if TYPE_CHECKING:
    from ..acquisition.controller import AdaptiveScan

__all__ = ["PreviewWriter", "SnapshotWriter"]


class PreviewWriter:
    """Writes ``preview.png`` into the run folder when ``scan`` finishes.

    Construct it before ``scan.run()`` and keep a reference for the scan's
    length (psygnal holds callbacks weakly).  A preview that cannot be drawn
    is skipped: it must never cost the data, which is already on disk.
    """

    def __init__(self, scan: AdaptiveScan) -> None:
        self.scan: AdaptiveScan | None = scan
        self.written: Path | None = None
        scan.events.finished.connect(self)

    @property
    def done(self) -> bool:
        """The scan finished (and the writer let go of it)."""
        return self.scan is None

    def __call__(self, report: ScanReport) -> None:
        scan, self.scan = self.scan, None
        if scan is None or scan.volume is None:
            return
        with contextlib.suppress(Exception):
            self.written = write_preview(
                scan.volume,
                scan.session.output_planes_um,
                scan.summary.pixel_size_um,
                report.frames,
                scan.files.preview,
                epsilon=report.epsilon,
                relative_epsilon=report.relative_epsilon,
                title=f"{len(report.frames)} frames, stop: {report.stop_reason.value}",
            )


class SnapshotWriter:
    """Callable for ``scan.events.volumeUpdated``; one PNG per frame."""

    def __init__(
        self,
        folder: str | Path,
        pixel_um: float,
        *,
        epsilon: float | None = None,
        relative_epsilon: float | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.pixel_um = pixel_um
        self.epsilon = epsilon
        self.relative_epsilon = relative_epsilon
        self.records: list[FrameRecord] = []
        self.written: list[Path] = []

    def __call__(self, update: VolumeUpdate) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.records.append(update.record)
        n = len(self.records)
        path = self.folder / f"frame_{n:02d}.png"
        write_preview(
            update.volume,
            update.output_planes_um,
            self.pixel_um,
            list(self.records),
            path,
            epsilon=self.epsilon,
            relative_epsilon=self.relative_epsilon,
            title=f"after {n} frame{'s' if n > 1 else ''}",
        )
        self.written.append(path)
