from __future__ import annotations

import numpy as np
import pytest

from rmz_acq.evaluation.baselines import linear_interpolation, nearest_plane
from rmz_acq.evaluation.beads import find_isolated_beads, fwhm_histogram_kl, measure_bead_widths
from rmz_acq.evaluation.metrics import nrmse, psnr, ssim
from rmz_acq.evaluation.report import distance_cell, distance_label, widths_by_distance


def _bead_volume(sigma_px: float, positions: list[tuple[int, int, int]]) -> np.ndarray:
    z, y, x = np.mgrid[0:21, 0:96, 0:96].astype(float)
    volume = np.full(z.shape, 100.0)
    for bz, by, bx in positions:
        volume += 1000 * np.exp(
            -((y - by) ** 2 + (x - bx) ** 2) / (2 * sigma_px**2) - (z - bz) ** 2 / (2 * 2.0**2)
        )
    return volume


POSITIONS = [(10, 20, 20), (8, 20, 70), (12, 70, 30), (10, 72, 72)]


def test_bead_widths_are_measured_where_the_beads_are() -> None:
    z = np.arange(21) * 0.1
    truth = _bead_volume(1.0, POSITIONS)
    beads = find_isolated_beads(truth, z, 0.1)
    assert len(beads) == 4
    widths = measure_bead_widths(truth, z, beads, 0.1)
    assert widths.fitted_fraction == 1.0
    # FWHM of a Gaussian of sigma 1 px = 0.1 um: 2.355 * 0.1
    assert widths.mean_um == pytest.approx(0.2355, rel=0.03)
    broader = measure_bead_widths(_bead_volume(1.5, POSITIONS), z, beads, 0.1)
    assert broader.mean_um == pytest.approx(1.5 * 0.2355, rel=0.03)
    assert fwhm_histogram_kl(widths, widths) == pytest.approx(0.0, abs=1e-9)
    assert fwhm_histogram_kl(widths, broader) > 1.0
    missing = measure_bead_widths(np.full_like(truth, 100.0), z, beads, 0.1)
    assert missing.n_fitted == 0


def test_metrics_on_known_errors() -> None:
    truth = np.zeros((32, 32))
    truth[8:24, 8:24] = 1.0
    assert psnr(truth, truth) == float("inf")
    noisy = truth + 0.1
    assert psnr(noisy, truth) == pytest.approx(20.0, abs=1e-9)
    assert nrmse(noisy, truth) == pytest.approx(10.0, abs=1e-9)
    assert ssim(truth, truth) == pytest.approx(1.0)
    assert ssim(np.random.default_rng(0).random((32, 32)), truth) < 0.5


def test_baselines() -> None:
    frames = np.stack([np.full((4, 4), 10.0), np.full((4, 4), 30.0)])
    z = np.array([2.0, 4.0])
    planes = np.array([1.0, 2.5, 3.0, 5.0])
    near = nearest_plane(frames, z, planes)
    assert [float(p[0, 0]) for p in near] == [10.0, 10.0, 10.0, 30.0]
    linear = linear_interpolation(frames, z, planes)
    assert [float(p[0, 0]) for p in linear] == pytest.approx([10.0, 15.0, 20.0, 30.0])


def test_bead_widths_are_grouped_by_distance_to_the_nearest_input() -> None:
    rows = widths_by_distance([0.2, None, 0.3, 0.5], [0.1, 0.7, 0.9, 2.0])
    assert [r["beads"] for r in rows] == [1, 2, 0, 1]
    assert rows[1]["fitted_fraction"] == 0.5 and rows[1]["mean_fwhm_um"] == 0.3
    assert np.isnan(rows[2]["fitted_fraction"])
    assert [distance_cell(r) for r in rows] == ["100% 0.200", "50% 0.300", "-", "100% 0.500"]
    assert distance_label(rows[1]) == "0.5-1 um (2)" and distance_label(rows[3]) == "1.5- um (1)"
    assert distance_cell(widths_by_distance([None], [0.2])[0]) == "0%"
