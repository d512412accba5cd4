"""Lateral bead width (FWHM) statistics, as in the paper's Fig. 3.

Isolated beads are found in the ground truth (3D local maxima well above the
background, no other bead close by).  For every volume compared, each bead
is looked for near its true position (the brightest plane within
``search_um`` of its z), and a 2D Gaussian plus offset is fitted to the patch
around it there; the FWHM is 2.355 sqrt(sigma_x sigma_y).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import maximum_filter
from scipy.optimize import OptimizeWarning, curve_fit

from ..model.normalization import IntensityNormalization

__all__ = ["BeadWidths", "find_isolated_beads", "fwhm_histogram_kl", "measure_bead_widths"]

_SIGMA_TO_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class BeadWidths:
    """Per-bead lateral FWHM (um, NaN where not found or not fitted)."""

    fwhm_um: NDArray[np.float64]

    @property
    def n_beads(self) -> int:
        return int(self.fwhm_um.size)

    @property
    def n_fitted(self) -> int:
        return int(np.isfinite(self.fwhm_um).sum())

    @property
    def fitted_fraction(self) -> float:
        return self.n_fitted / self.n_beads if self.n_beads else 0.0

    @property
    def mean_um(self) -> float:
        fitted = self.fwhm_um[np.isfinite(self.fwhm_um)]
        return float(fitted.mean()) if fitted.size else float("nan")


def _normalised(volume: NDArray[np.floating]) -> NDArray[np.float32]:
    return IntensityNormalization.from_frame(volume.max(axis=0)).apply(volume)


def find_isolated_beads(
    truth: NDArray[np.floating],
    z_um: NDArray[np.floating],
    pixel_um: float,
    *,
    threshold: float = 0.3,
    isolation_um: float = 1.0,
    border_px: int = 6,
) -> NDArray[np.float64]:
    """Beads ``(z_um, y_px, x_px)`` in a ground-truth volume, isolated from others."""
    volume = _normalised(truth)
    peaks = (volume == maximum_filter(volume, size=(5, 7, 7))) & (volume > threshold)
    k, y, x = np.nonzero(peaks)
    inside = (
        (y >= border_px)
        & (y < volume.shape[1] - border_px)
        & (x >= border_px)
        & (x < volume.shape[2] - border_px)
    )
    k, y, x = k[inside], y[inside], x[inside]
    keep = []
    for i in range(len(k)):
        lateral = np.hypot(y - y[i], x - x[i]) * pixel_um
        axial = np.abs(np.asarray(z_um)[k] - z_um[k[i]])
        close = (lateral < isolation_um) & (axial < 2 * isolation_um)
        close[i] = False
        if not close.any():
            keep.append(i)
    return np.stack(
        [np.asarray(z_um, np.float64)[k[keep]], y[keep].astype(float), x[keep].astype(float)],
        axis=1,
    ).reshape(-1, 3)


def _gaussian(
    coords: tuple[NDArray[np.float64], NDArray[np.float64]],
    amplitude: float,
    y0: float,
    x0: float,
    sy: float,
    sx: float,
    offset: float,
) -> NDArray[np.float64]:
    yy, xx = coords
    return (
        amplitude * np.exp(-((yy - y0) ** 2) / (2 * sy**2) - (xx - x0) ** 2 / (2 * sx**2)) + offset
    ).ravel()


def _fit_fwhm_px(patch: NDArray[np.float64]) -> float:
    half = patch.shape[0] // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    offset = float(np.percentile(patch, 20))
    amplitude = float(patch[half, half] - offset)
    if amplitude <= 0:
        return float("nan")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(
                _gaussian,
                (yy, xx),
                patch.ravel(),
                p0=(amplitude, 0.0, 0.0, 1.2, 1.2, offset),
                maxfev=2000,
            )
    except (RuntimeError, ValueError):
        return float("nan")
    amplitude, y0, x0, sy, sx, _ = params
    sy, sx = abs(sy), abs(sx)
    if amplitude <= 0 or abs(y0) > 2 or abs(x0) > 2 or not (0.4 < sy < half and 0.4 < sx < half):
        return float("nan")
    return float(_SIGMA_TO_FWHM * np.sqrt(sy * sx))


def measure_bead_widths(
    volume: NDArray[np.floating],
    z_um: NDArray[np.floating],
    beads: NDArray[np.float64],
    pixel_um: float,
    *,
    search_um: float = 0.5,
    patch_px: int = 9,
    min_peak: float = 0.1,
) -> BeadWidths:
    """Fit each bead of ``beads`` in ``volume``; NaN where it is not there."""
    normalised = _normalised(volume)
    z = np.asarray(z_um, np.float64)
    half = patch_px // 2
    widths = []
    for bead_z, y, x in beads:
        yi, xi = int(y), int(x)
        planes = np.flatnonzero(np.abs(z - bead_z) <= search_um)
        if planes.size == 0:
            widths.append(float("nan"))
            continue
        column = normalised[planes, yi - 1 : yi + 2, xi - 1 : xi + 2].reshape(planes.size, -1)
        best = int(planes[np.argmax(column.max(axis=1))])
        plane = normalised[best]
        # recentre on the local maximum within 2 px
        window = plane[yi - 2 : yi + 3, xi - 2 : xi + 3]
        dy, dx = np.unravel_index(int(np.argmax(window)), window.shape)
        yc, xc = yi - 2 + int(dy), xi - 2 + int(dx)
        patch = plane[yc - half : yc + half + 1, xc - half : xc + half + 1].astype(np.float64)
        if patch.shape != (patch_px, patch_px) or plane[yc, xc] < min_peak:
            widths.append(float("nan"))
            continue
        widths.append(_fit_fwhm_px(patch) * pixel_um)
    return BeadWidths(np.asarray(widths, np.float64))


def fwhm_histogram_kl(
    reference: BeadWidths,
    other: BeadWidths,
    bins: NDArray[np.float64] | None = None,
    smoothing: float = 1e-3,
) -> float:
    """KL divergence D(reference || other) of the FWHM histograms."""
    edges = np.linspace(0.1, 0.8, 29) if bins is None else bins
    p, _ = np.histogram(reference.fwhm_um[np.isfinite(reference.fwhm_um)], bins=edges)
    q, _ = np.histogram(other.fwhm_um[np.isfinite(other.fwhm_um)], bins=edges)
    if p.sum() == 0 or q.sum() == 0:
        return float("inf")
    pf = p / p.sum() + smoothing
    qf = q / q.sum() + smoothing
    pf, qf = pf / pf.sum(), qf / qf.sum()
    return float(np.sum(pf * np.log(pf / qf)))
