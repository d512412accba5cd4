"""Keeping what was measured: the volume at an input frame's plane.

At the z where a frame was taken, the frame itself is a direct, if noisy,
measurement of the plane.  The network's estimate there should be better
(it denoises), but on a specimen unlike its training data it can be worse:
blurred, or with structure of the wrong brightness.  `blend_measured`
shrinks the estimate towards the frame by how much the two disagree beyond
the frame's noise:

``V = w * estimate + (1 - w) * frame``, ``w = min(1, noise_var / disagreement)``

where ``disagreement`` is the mean squared difference between estimate and
frame.  If the estimate's error ``e`` is independent of the frame's noise
``s``, the disagreement is ``e^2 + s^2`` and the blend's error is
``e^2 s^2 / (e^2 + s^2)``: below both the frame's and the estimate's.  A
network that agrees with the frame to within its noise is kept as it is; one
that has gone astray is pulled back to the measurement.  The weight is one
number per plane and tile of `TILE_PX` pixels, so a region the network got
wrong does not cost the rest of the plane its denoising.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import convolve, zoom

__all__ = ["TILE_PX", "blend_measured", "noise_variance"]

TILE_PX = 32

# Second differences in x and y: flat and linear intensity vanish, noise
# stays (its variance times 36, the kernel's squared norm).
_LAPLACIAN = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)


def noise_variance(frame: NDArray[np.floating]) -> float:
    """Pixel noise variance of a frame (robust: median of a high-pass, Immerkaer's kernel).

    The kernel removes smooth structure; the median ignores the sparse
    edges that survive it.  Returns 0 for a noise-free frame.
    """
    values = np.asarray(frame, np.float64)
    if min(values.shape) < 3:
        return 0.0
    high = convolve(values, _LAPLACIAN, mode="reflect")[1:-1, 1:-1]
    sigma = 1.4826 * float(np.median(np.abs(high - np.median(high)))) / 6.0
    return sigma * sigma


def _tile_means(values: NDArray[np.float64], tile: int) -> NDArray[np.float64]:
    """Means over ``tile x tile`` blocks (the last ones partial)."""
    height, width = values.shape
    ny, nx = -(-height // tile), -(-width // tile)
    padded = np.full((ny * tile, nx * tile), np.nan)
    padded[:height, :width] = values
    return np.nanmean(padded.reshape(ny, tile, nx, tile), axis=(1, 3))  # type: ignore[no-any-return]


def blend_measured(
    estimate: NDArray[np.floating],
    frame: NDArray[np.floating],
    noise_var: float,
    tile: int = TILE_PX,
) -> NDArray[np.float32]:
    """The estimate of a measured plane, shrunk towards its frame (see the module)."""
    est = np.asarray(estimate, np.float64)
    meas = np.asarray(frame, np.float64)
    disagreement = _tile_means((est - meas) ** 2, tile)
    weight = np.clip(noise_var / np.maximum(disagreement, 1e-30), 0.0, 1.0)
    # Bilinear between tile centres, so no seams show at tile edges.
    height, width = est.shape
    smooth = zoom(weight, (height / weight.shape[0], width / weight.shape[1]), order=1)
    smooth = np.clip(smooth[:height, :width], 0.0, 1.0)
    return (smooth * est + (1.0 - smooth) * meas).astype(np.float32)
