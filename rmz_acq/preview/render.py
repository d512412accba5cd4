"""The preview figure: orthogonal projections beside the convergence curve.

Drawn for ``preview.png`` (`PreviewWriter`), for ``--snapshots``
(`SnapshotWriter`) and in the live viewer; all take the scan's per-frame
records (anything with the `FramePoint` attributes).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from .projections import render_orthoviews

__all__ = [
    "FramePoint",
    "judged_change",
    "render_preview",
    "saturated_frames",
    "write_preview",
]

# Matplotlib is not thread-safe (its mathtext parser keeps shared state), and
# a preview is drawn on two threads at once: the viewer's on the GUI thread
# while preview.png is written on the scan's.
_MATPLOTLIB = threading.Lock()


class FramePoint(Protocol):
    """What the figure needs of a frame (`rmz_acq.acquisition.FrameRecord` has it)."""

    @property
    def index(self) -> int: ...
    @property
    def measured_z_um(self) -> float: ...
    @property
    def frobenius_change(self) -> float | None: ...
    @property
    def relative_change(self) -> float | None: ...


def judged_change(frame: FramePoint, *, absolute: bool) -> float | None:
    """The change the stop rule read for ``frame`` (its decision), else the full grid's.

    A record's ``decision_*`` change is the one compared with epsilon (and
    relative to what ``settings.relative_to`` names); frames without one
    (read from older reports) show the full grid's.
    """
    name = "frobenius_change" if absolute else "relative_change"
    judged = getattr(frame, f"decision_{name}", None)
    return judged if judged is not None else getattr(frame, name)


def saturated_frames(frames: Sequence[FramePoint]) -> list[tuple[int, float]]:
    """(M, z) of the frames saturated enough to warn about (`rmz_acq.saturation`).

    Frames without a ``saturated_fraction`` (older reports) count as not saturated.
    """
    from ..saturation import WARN_FRACTION

    return [
        (f.index + 1, f.measured_z_um)
        for f in frames
        if (getattr(f, "saturated_fraction", None) or 0.0) >= WARN_FRACTION
    ]


def render_preview(
    volume: NDArray[np.floating],
    planes_um: NDArray[np.floating],
    pixel_um: float,
    frames: Sequence[FramePoint],
    *,
    epsilon: float | None,
    relative_epsilon: float | None,
    title: str,
) -> NDArray[np.uint8]:
    """Orthogonal views (acquired planes marked) beside the convergence curve, RGB.

    The orthogonal views start at pixel (0, 0) with the layout of
    `render_orthoviews`, so the picture can be checked pixel by pixel.
    """
    ortho, layout = render_orthoviews(
        volume, planes_um, pixel_um, [f.measured_z_um for f in frames]
    )
    height = max(layout.height, 320)
    with _MATPLOTLIB:
        chart = _convergence_chart(frames, height, epsilon, relative_epsilon, title)
    image = np.full((height, layout.width + chart.shape[1], 3), 255, np.uint8)
    image[: layout.height, : layout.width] = ortho
    image[: chart.shape[0], layout.width :] = chart[:height]
    return image


def _convergence_chart(
    frames: Sequence[FramePoint],
    height: int,
    epsilon: float | None,
    relative_epsilon: float | None,
    title: str,
) -> NDArray[np.uint8]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, height / 100), dpi=100)
    FigureCanvasAgg(fig)
    curve, order = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    absolute = epsilon is not None
    label = "||V_M - V_(M-1)||_F" if absolute else "relative change, as judged"
    points = [(f.index + 1, judged_change(f, absolute=absolute)) for f in frames]
    points = [(m, c) for m, c in points if c is not None and c > 0]
    if points:
        curve.semilogy(*zip(*points, strict=True), "o-", label=label)
    threshold = epsilon if absolute else relative_epsilon
    if threshold:
        curve.axhline(threshold, color="red", linestyle="--", label="epsilon")
    curve.set_title(title, fontsize=9)
    if points or threshold:
        curve.legend(fontsize=7)
    curve.grid(alpha=0.3)
    # Where each frame was taken, in the order taken (the next-plane policy's path).
    if frames:
        order.plot(
            [f.index + 1 for f in frames], [f.measured_z_um for f in frames], "s:", color="C2"
        )
    saturated = saturated_frames(frames)
    if saturated:
        order.plot(*zip(*saturated, strict=True), "X", color="C3", ms=9, label="saturated")
        order.legend(fontsize=7)
    order.set_ylabel("z of frame (um)", fontsize=8)
    order.set_xlabel("frames M")
    order.grid(alpha=0.3)
    fig.tight_layout()
    fig.canvas.draw()
    return np.array(fig.canvas.buffer_rgba())[..., :3]  # type: ignore[attr-defined]


def write_preview(
    volume: NDArray[np.floating],
    planes_um: NDArray[np.floating],
    pixel_um: float,
    frames: Sequence[FramePoint],
    path: str | Path,
    *,
    epsilon: float | None,
    relative_epsilon: float | None,
    title: str,
) -> Path:
    """`render_preview` written as PNG (``preview.png``, snapshots)."""
    from matplotlib.image import imsave

    image = render_preview(
        volume,
        planes_um,
        pixel_um,
        frames,
        epsilon=epsilon,
        relative_epsilon=relative_epsilon,
        title=title,
    )
    imsave(path, image)
    return Path(path)
