"""Image quality metrics, computed per plane on images in the same units.

``psnr`` and ``nrmse`` use the ground truth's dynamic range (max - min), so
they do not depend on an offset; ``nrmse`` is in percent of that range.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter

__all__ = ["nrmse", "psnr", "ssim"]


def _range(truth: NDArray[np.floating]) -> float:
    span = float(np.max(truth) - np.min(truth))
    return span if span > 0 else 1.0


def psnr(image: NDArray[np.floating], truth: NDArray[np.floating]) -> float:
    """Peak signal-to-noise ratio in dB, peak = the truth's dynamic range."""
    mse = float(np.mean((np.asarray(image, np.float64) - np.asarray(truth, np.float64)) ** 2))
    if mse == 0:
        return float("inf")
    return float(10 * np.log10(_range(truth) ** 2 / mse))


def nrmse(image: NDArray[np.floating], truth: NDArray[np.floating]) -> float:
    """Root-mean-square error in percent of the truth's dynamic range."""
    mse = float(np.mean((np.asarray(image, np.float64) - np.asarray(truth, np.float64)) ** 2))
    return float(100 * np.sqrt(mse) / _range(truth))


def ssim(image: NDArray[np.floating], truth: NDArray[np.floating], sigma: float = 1.5) -> float:
    """Structural similarity (Gaussian window), data range from the truth."""
    x = np.asarray(image, np.float64)
    y = np.asarray(truth, np.float64)
    span = _range(y)
    c1, c2 = (0.01 * span) ** 2, (0.03 * span) ** 2
    mx, my = gaussian_filter(x, sigma), gaussian_filter(y, sigma)
    sxx = gaussian_filter(x * x, sigma) - mx * mx
    syy = gaussian_filter(y * y, sigma) - my * my
    sxy = gaussian_filter(x * y, sigma) - mx * my
    value = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(value.mean())
