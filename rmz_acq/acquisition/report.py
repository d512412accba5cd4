"""What a scan leaves behind: per-frame records, ``report.json``, ``preview.png``."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..io.jsonfile import strict_json, write_json_file
from .stop_rules import StopReason

__all__ = ["FrameRecord", "ScanReport", "write_preview"]

# Matplotlib is not thread-safe (its mathtext parser keeps shared state), and
# a preview is drawn on two threads at once: the viewer's on the GUI thread
# while the scan writes preview.png on its own.
_MATPLOTLIB = threading.Lock()


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One frame of the scan, as ``report.json`` lists it.

    ``time_s`` is when the frame arrived, from the start of the scan.
    ``frobenius_change`` and ``relative_change`` are ``||V_M - V_(M-1)||``
    over the whole output grid (``None`` for the first frame, and until the
    full grid has caught up with this frame); ``reconstruction_s`` is that
    full update's time, wherever it ran.  The stop rule judged the
    ``decision_*`` change, measured on the decision planes as the frame
    arrived (the Frobenius norm scaled to the full grid), ``decision_s``
    after the frame's arrival.  ``plane_score`` and ``plane_reason`` say
    why the next-plane policy chose this frame's plane.
    """

    index: int
    commanded_z_um: float
    measured_z_um: float
    time_s: float
    frobenius_change: float | None
    relative_change: float | None
    reconstruction_s: float
    decision_s: float | None = None
    decision_frobenius_change: float | None = None
    decision_relative_change: float | None = None
    plane_score: float | None = None
    plane_reason: str | None = None


@dataclass
class ScanReport:
    """The whole scan: settings, frames, why it stopped, how long it took."""

    stop_reason: StopReason
    epsilon: float | None
    relative_epsilon: float | None
    model: dict[str, str]
    output_planes_um: list[float]
    candidates_um: list[float]
    frames: list[FrameRecord] = field(default_factory=list)
    unused_frames: list[dict[str, float]] = field(default_factory=list)
    durations_s: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    pixel_size_um: float | None = None
    focus_limits_um: list[float] | None = None
    next_plane: str | None = None  # the next-plane policy's name
    finished: bool = False

    def to_json(self) -> dict[str, Any]:
        """The report as strict JSON data (a non-finite number becomes ``null``).

        The contract's ``epsilon`` is the threshold in force: the absolute
        one, or the relative one when the scan stops on the relative change
        (``relative_epsilon`` says which).
        """
        data = asdict(self)
        data["stop_reason"] = self.stop_reason.value
        data["frames"] = [asdict(f) for f in self.frames]
        if data["epsilon"] is None:
            data["epsilon"] = self.relative_epsilon
        return strict_json(data)

    def write(self, path: str | Path) -> Path:
        """Write ``report.json`` atomically (the previous version stays whole until then)."""
        return write_json_file(path, self.to_json())


def render_preview(
    volume: NDArray[np.floating],
    planes_um: NDArray[np.floating],
    pixel_um: float,
    frames: list[FrameRecord],
    *,
    epsilon: float | None,
    relative_epsilon: float | None,
    title: str,
) -> NDArray[np.uint8]:
    """Orthogonal views (acquired planes marked) beside the convergence curve, RGB.

    The orthogonal views start at pixel (0, 0) with the layout of
    `render_orthoviews`, so the picture can be checked pixel by pixel.
    """
    from ..preview.projections import render_orthoviews

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
    frames: list[FrameRecord],
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
    label = "||V_M - V_(M-1)||_F" if absolute else "||V_M - V_(M-1)||_F / ||V_M||_F"
    points = [(f.index + 1, f.frobenius_change if absolute else f.relative_change) for f in frames]
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
    frames: list[FrameRecord],
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
