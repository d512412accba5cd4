"""``volumes.ome.zarr``: every volume of an experiment, one OME-Zarr image per position.

Written through ome-writers (which writes the OME-NGFF 0.5 metadata: axes
t, z, y, x with their units and scales, one image per position in the
bioformats2raw layout that napari and Fiji's OME-Zarr readers open).
ome-writers streams planes in acquisition order (t, then position, then
z); volumes can finish out of that order (each completes in the background),
so `VolumeStore` holds a finished volume until every volume before it was
written or given up, and a volume that was never made (a failed position,
a cancelled experiment) is skipped: its planes read as 0, and
``experiment.json`` says which volumes exist.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["VolumeStore"]


class VolumeStore:
    """An OME-Zarr store for ``time_points`` x ``positions`` volumes of one shape.

    Parameters
    ----------
    path
        The ``.ome.zarr`` folder (must not exist).
    position_names
        One image per position, in this order.
    time_points
        Volumes per position.
    shape_zyx
        Every volume's shape.
    scale_um
        ``(z, y, x)`` voxel size in µm.
    z_origin_um
        z of the first plane (the same for every position; 0 where they differ).
    interval_s
        Time between time points (``None``: uneven, scale 1).
    xy_um
        Per position, its stage ``(x, y)`` (recorded with the position).
    """

    def __init__(
        self,
        path: str | Path,
        position_names: Sequence[str],
        time_points: int,
        shape_zyx: tuple[int, int, int],
        scale_um: tuple[float, float, float],
        *,
        z_origin_um: float = 0.0,
        interval_s: float | None = None,
        xy_um: Sequence[tuple[float | None, float | None]] | None = None,
    ) -> None:
        import ome_writers as ow

        self.path = Path(path)
        self.shape_zyx = shape_zyx
        self.positions = len(position_names)
        self.time_points = time_points
        xy = list(xy_um) if xy_um is not None else [(None, None)] * self.positions
        z, y, x = shape_zyx
        dimensions = [
            ow.Dimension(
                name="t", count=time_points, type="time", unit="second", scale=interval_s or 1.0
            ),
            ow.Dimension(
                name="p",
                type="position",
                coords=[
                    ow.Position(name=name, x_coord=px, y_coord=py)
                    for name, (px, py) in zip(position_names, xy, strict=True)
                ],
            ),
            ow.Dimension(
                name="z",
                count=z,
                type="space",
                unit="micrometer",
                scale=scale_um[0],
                translation=z_origin_um,
            ),
            ow.Dimension(name="y", count=y, type="space", unit="micrometer", scale=scale_um[1]),
            ow.Dimension(name="x", count=x, type="space", unit="micrometer", scale=scale_um[2]),
        ]
        settings = ow.AcquisitionSettings(
            root_path=str(self.path), dimensions=dimensions, dtype="float32", format="ome-zarr"
        )
        self._stream = ow.create_stream(settings)
        self._lock = threading.Lock()
        self._next = 0  # flat index (t * positions + p) of the next volume in stream order
        self._waiting: dict[int, NDArray[np.float32] | None] = {}

    def put(self, p: int, t: int, volume: NDArray[np.floating] | None) -> None:
        """Hand over the volume of position ``p`` at time point ``t`` (``None``: none made)."""
        if volume is not None and volume.shape != self.shape_zyx:
            raise ValueError(
                f"volume p{p} t{t} has shape {volume.shape}; this store holds {self.shape_zyx}"
            )
        with self._lock:
            self._waiting[t * self.positions + p] = (
                None if volume is None else np.asarray(volume, np.float32)
            )
            while self._next in self._waiting:
                ready = self._waiting.pop(self._next)
                if ready is None:
                    self._stream.skip(frames=self.shape_zyx[0])
                else:
                    for plane in ready:
                        self._stream.append(plane)
                self._next += 1

    def close(self) -> None:
        """Write what can be written (volumes still waiting behind a gap are skipped over)."""
        with self._lock:
            pending = sorted(self._waiting)
        for index in pending:  # fill the gaps before each waiting volume
            with self._lock:
                gaps = [i for i in range(self._next, index) if i not in self._waiting]
            for gap in gaps:
                self.put(gap % self.positions, gap // self.positions, None)
        self._stream.close()
