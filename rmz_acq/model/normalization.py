"""Intensity normalisation of frames before the network, and its inverse.

The paper (section 4.1) shifts each volume by the mean of its background and
scales it by the 99th percentile of its foreground, with background and
foreground separated by a triangle threshold.  Here the statistics come from
the *first* frame of a run (the only one known when streaming starts), are
fixed for the rest of it, and invert exactly, so the reconstruction comes
back in the camera's units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["IntensityNormalization", "triangle_threshold"]


def triangle_threshold(image: NDArray[np.floating], bins: int = 256) -> float:
    """Zack's triangle threshold of an image's histogram.

    The threshold is where the histogram is farthest below the line from its
    peak to its far tail: good for a large dark background with a long tail
    of brighter structure, which is what fluorescence frames are.
    """
    values = np.asarray(image, np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return hi
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    peak = int(np.argmax(counts))
    nonzero = np.flatnonzero(counts)
    # The line runs from the peak to the farther end of the histogram.
    end = int(nonzero[-1]) if nonzero[-1] - peak >= peak - nonzero[0] else int(nonzero[0])
    if end == peak:
        return float(edges[peak + 1])
    idx = np.arange(min(peak, end), max(peak, end) + 1)
    x0, y0, x1, y1 = peak, counts[peak], end, counts[end]
    distance = np.abs((y1 - y0) * idx - (x1 - x0) * counts[idx] + x1 * y0 - y1 * x0)
    best = int(idx[np.argmax(distance)])
    return float(edges[best + 1] if end > peak else edges[best])


@dataclass(frozen=True)
class IntensityNormalization:
    """``normalised = (raw - shift) / scale``; ``raw = normalised * scale + shift``."""

    shift: float
    scale: float

    @classmethod
    def from_frame(
        cls, frame: NDArray[np.number], percentile: float = 99.0
    ) -> IntensityNormalization:
        """Background mean and foreground percentile of one frame."""
        values = np.asarray(frame, np.float64)
        if not np.isfinite(values).all():
            raise ValueError("frame has NaN or infinite pixels; replace them before reconstructing")
        threshold = triangle_threshold(values)
        background = values[values <= threshold]
        foreground = values[values > threshold]
        shift = float(background.mean()) if background.size else float(values.min())
        top = (
            float(np.percentile(foreground, percentile)) if foreground.size else float(values.max())
        )
        scale = top - shift
        # A blank frame has no foreground: fall back to the noise level so the
        # scale never collapses to zero.
        floor = max(float(values.std()), 1e-6 * max(abs(shift), 1.0), 1e-12)
        return cls(shift=shift, scale=max(scale, floor))

    def apply(self, raw: NDArray[np.number]) -> NDArray[np.float32]:
        return ((np.asarray(raw, np.float32) - self.shift) / self.scale).astype(np.float32)

    def invert(self, normalised: NDArray[np.floating]) -> NDArray[np.float32]:
        return (np.asarray(normalised, np.float32) * self.scale + self.shift).astype(np.float32)
