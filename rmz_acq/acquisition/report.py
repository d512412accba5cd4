"""What a scan leaves behind: per-frame records, ``report.json``, ``preview.png``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .stop_rules import StopReason

__all__ = ["FrameRecord", "ScanReport", "write_preview"]


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One frame of the scan, as ``report.json`` lists it.

    ``time_s`` is when the frame arrived, from the start of the scan.
    """

    index: int
    commanded_z_um: float
    measured_z_um: float
    time_s: float
    frobenius_change: float | None
    relative_change: float | None
    reconstruction_s: float


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

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop_reason"] = self.stop_reason.value
        data["frames"] = [asdict(f) for f in self.frames]
        return data

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(path)
        return path


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
    """Orthogonal maximum projections (acquired planes marked) and the convergence curve.

    Used for ``preview.png`` at the end of a scan and for ``--snapshots``
    after every frame.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    planes = np.asarray(planes_um, np.float64)
    depth = float(planes[-1] - planes[0]) if len(planes) > 1 else 1.0
    height, width = volume.shape[1:]
    fig = plt.figure(figsize=(11, 4.5), dpi=100)
    grid = fig.add_gridspec(2, 3, width_ratios=[width, max(depth / pixel_um, 1), width * 0.9])
    xy = fig.add_subplot(grid[:, 0])
    xy.imshow(volume.max(axis=0), cmap="magma", extent=(0, width * pixel_um, height * pixel_um, 0))
    xy.set_title("XY max projection")
    xy.set_xlabel("x (µm)")
    xy.set_ylabel("y (µm)")
    xz = fig.add_subplot(grid[0, 1])
    xz.imshow(
        volume.max(axis=1).T,
        cmap="magma",
        aspect="auto",
        extent=(planes[0], planes[-1], width * pixel_um, 0),
    )
    xz.set_title("XZ / YZ (z across)")
    yz = fig.add_subplot(grid[1, 1])
    yz.imshow(
        volume.max(axis=2).T,
        cmap="magma",
        aspect="auto",
        extent=(planes[0], planes[-1], height * pixel_um, 0),
    )
    yz.set_xlabel("z (µm)")
    for frame in frames:
        for ax in (xz, yz):
            ax.axvline(frame.measured_z_um, color="cyan", linewidth=0.8, alpha=0.8)
    curve = fig.add_subplot(grid[:, 2])
    absolute = epsilon is not None
    label = "||V_M - V_(M-1)||_F" if absolute else "||V_M - V_(M-1)||_F / ||V_M||_F"
    points = [(f.index + 1, f.frobenius_change if absolute else f.relative_change) for f in frames]
    points = [(m, c) for m, c in points if c is not None and c > 0]
    if points:
        curve.semilogy(*zip(*points, strict=True), "o-", label=label)
    threshold = epsilon if absolute else relative_epsilon
    if threshold:
        curve.axhline(threshold, color="red", linestyle="--", label="epsilon")
    curve.set_xlabel("frames M")
    curve.set_title(title)
    curve.legend(fontsize=8)
    curve.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
