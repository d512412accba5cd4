"""Headless live view: the preview figure written after every volume update.

For remote or scripted runs: connect a `SnapshotWriter` to a scan's
``volumeUpdated`` signal and ``RUN_DIR/snapshots/frame_NN.png`` appears after
each frame (XY/XZ/YZ maximum projections with the acquired planes marked,
and the convergence curve so far).
"""

from __future__ import annotations

from pathlib import Path

from ..acquisition.controller import VolumeUpdate
from ..acquisition.report import FrameRecord, write_preview

__all__ = ["SnapshotWriter"]


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
