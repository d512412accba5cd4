"""Keeping what was measured: the volume at an input frame's plane.

At the z where a frame was taken, the frame itself is a direct, if noisy,
measurement of the plane.  The network's estimate there should be better
(it denoises), but on a specimen unlike its training data it can be worse:
blurred, or with structure of the wrong brightness.  `blend_measured`
shrinks the estimate towards the frame by how much the two disagree beyond
the frame's noise:

``V = w * estimate + (1 - w) * frame``, ``w = min(1, noise_var / disagreement)``

where ``disagreement`` is the local mean squared difference between
estimate and frame.  If the estimate's error ``e`` is independent of the
frame's noise ``s``, the disagreement is ``e^2 + s^2`` and the blend's error
is ``e^2 s^2 / (e^2 + s^2)``: below both the frame's and the estimate's.  A
network that agrees with the frame to within its noise is kept as it is; one
that has gone astray is pulled back to the measurement.  Both the noise and
the disagreement are local (a Gaussian window of `WINDOW_PX`; shot noise
grows with brightness), so a few wrong beads do not hide in a tile of good
background, and a region the network got wrong does not cost the rest of
the plane its denoising.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import convolve, gaussian_filter

__all__ = ["WINDOW_PX", "blend_measured", "noise_variance", "noise_variance_map"]

WINDOW_PX = 3.0

# Second differences in x and y: flat and linear intensity vanish, noise
# stays (its variance times 36, the kernel's squared norm).
_LAPLACIAN = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
_LEVELS = 8


def _robust_variance(values: NDArray[np.float64]) -> float:
    sigma = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    return sigma * sigma


def noise_variance_map(frame: NDArray[np.floating]) -> NDArray[np.float64]:
    """Per-pixel noise variance of a frame, as a function of its local brightness.

    Immerkaer's kernel removes smooth structure; within each of eight
    brightness levels the median absolute value of what is left (robust to
    the sparse edges that survive) gives that level's variance, and each
    pixel gets its level's, interpolated.  Zero for a noise-free frame.
    """
    values = np.asarray(frame, np.float64)
    if min(values.shape) < 3:
        return np.zeros_like(values)
    high = convolve(values, _LAPLACIAN, mode="reflect") / 6.0
    level = gaussian_filter(values, 2.0)
    edges = np.quantile(level, np.linspace(0.0, 1.0, _LEVELS + 1))
    centres, variances = [], []
    for lo, hi in pairwise(edges):
        inside = (level >= lo) & (level <= hi)
        if inside.sum() >= 16:
            centres.append(float(np.median(level[inside])))
            variances.append(_robust_variance(high[inside]))
    if not centres:
        return np.zeros_like(values)
    return np.interp(level, centres, variances)


def noise_variance(frame: NDArray[np.floating]) -> float:
    """The frame's typical pixel noise variance (median of `noise_variance_map`)."""
    return float(np.median(noise_variance_map(frame)))


def blend_measured(
    estimate: NDArray[np.floating],
    frame: NDArray[np.floating],
    noise_var: float | NDArray[np.floating],
    window_px: float = WINDOW_PX,
) -> NDArray[np.float32]:
    """The estimate of a measured plane, shrunk towards its frame (see the module)."""
    est = np.asarray(estimate, np.float64)
    meas = np.asarray(frame, np.float64)
    disagreement = gaussian_filter((est - meas) ** 2, window_px)
    local_noise = np.broadcast_to(np.asarray(noise_var, np.float64), est.shape)
    noise = gaussian_filter(local_noise, window_px)
    weight = np.clip(noise / np.maximum(disagreement, 1e-30), 0.0, 1.0)
    return (weight * est + (1.0 - weight) * meas).astype(np.float32)
