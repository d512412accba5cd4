"""Orthogonal views of a volume as an RGB image, acquired planes marked.

Rendered with numpy alone (no display, no OpenGL), so the same picture is
shown in the live viewer, written as a snapshot, and checked pixel by pixel
in tests.  Layout (z scaled to the lateral pixel size)::

    +--------+-----+
    |   XY   | YZ  |     XY: maximum projection along z
    |        | (z→)|     YZ: maximum along x, z to the right
    +--------+-----+
    |   XZ   |           XZ: maximum along y, z downwards
    |  (z↓)  |
    +--------+

Acquired planes are drawn as cyan lines across the XZ and YZ views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["MARK_COLOUR", "OrthoLayout", "render_orthoviews"]

MARK_COLOUR = np.array([0, 255, 255], np.uint8)
_GAP = 4


@dataclass(frozen=True)
class OrthoLayout:
    """Where things are in the rendered image (pixel rows/columns)."""

    height: int
    width: int
    xy_origin: tuple[int, int]
    xz_origin: tuple[int, int]
    yz_origin: tuple[int, int]
    z_scale: int  # image pixels per output plane along z
    marks_xz_rows: tuple[int, ...]
    marks_yz_cols: tuple[int, ...]


def _grey(image: NDArray[np.floating], lo: float, hi: float) -> NDArray[np.uint8]:
    scaled = np.clip((image - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return np.repeat((scaled * 255).astype(np.uint8)[..., None], 3, axis=-1)


def render_orthoviews(
    volume: NDArray[np.floating],
    planes_um: NDArray[np.floating],
    pixel_um: float,
    marked_z_um: list[float] | NDArray[np.floating] = (),  # type: ignore[assignment]
) -> tuple[NDArray[np.uint8], OrthoLayout]:
    """RGB image of the XY, XZ and YZ maximum projections and its layout."""
    vol = np.asarray(volume, np.float32)
    nz, ny, nx = vol.shape
    planes = np.asarray(planes_um, np.float64)
    step = float(np.median(np.diff(planes))) if nz > 1 else pixel_um
    z_scale = max(1, round(step / pixel_um))
    xy = vol.max(axis=0)
    xz = np.repeat(vol.max(axis=1), z_scale, axis=0)  # (z, x)
    yz = np.repeat(vol.max(axis=2), z_scale, axis=0).T  # (y, z)
    finite = vol[np.isfinite(vol)]
    lo, hi = (
        (float(np.percentile(finite, 0.5)), float(np.percentile(finite, 99.9)))
        if finite.size
        else (0.0, 1.0)
    )
    depth = nz * z_scale
    height, width = ny + _GAP + depth, nx + _GAP + depth
    image = np.zeros((height, width, 3), np.uint8)
    image[:ny, :nx] = _grey(xy, lo, hi)
    image[ny + _GAP :, :nx] = _grey(xz, lo, hi)
    image[:ny, nx + _GAP :] = _grey(yz, lo, hi)
    rows, cols = [], []
    for z in marked_z_um:
        k = int(np.argmin(np.abs(planes - z)))
        if abs(planes[k] - z) > step:  # outside the output range: not drawn
            continue
        offset = k * z_scale + z_scale // 2
        rows.append(ny + _GAP + offset)
        cols.append(nx + _GAP + offset)
        image[ny + _GAP + offset, :nx] = MARK_COLOUR
        image[:ny, nx + _GAP + offset] = MARK_COLOUR
    layout = OrthoLayout(
        height=height,
        width=width,
        xy_origin=(0, 0),
        xz_origin=(ny + _GAP, 0),
        yz_origin=(0, nx + _GAP),
        z_scale=z_scale,
        marks_xz_rows=tuple(rows),
        marks_yz_cols=tuple(cols),
    )
    return image, layout
