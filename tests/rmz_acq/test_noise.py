"""A stack's own noise: estimated from its planes, and taken out of scores against it."""

from __future__ import annotations

import numpy as np
import pytest

from rmz_acq.evaluation.metrics import psnr
from rmz_acq.evaluation.noise import (
    depth_of_field_um,
    noise_ceiling_db,
    noise_free_means,
    noise_is_estimable,
    plane_noise_variance,
    psnr_without_noise,
)


def _specimen(planes: int = 40, side: int = 96) -> np.ndarray:
    """A blurred specimen changing slowly along z (as planes finer than the depth of field)."""
    y, x = np.mgrid[:side, :side].astype(np.float64)
    z = np.arange(planes)[:, None, None] * 0.05
    return 200 + 150 * np.sin(x / 9 + z)[...] * np.cos(y / 13 - 0.5 * z)


def test_the_noise_of_each_plane_comes_out_of_the_stack() -> None:
    rng = np.random.default_rng(0)
    clean = _specimen()
    sigma = np.linspace(3, 12, clean.shape[0])  # each plane its own noise
    noisy = clean + rng.normal(0, 1, clean.shape) * sigma[:, None, None]
    variance = plane_noise_variance(noisy)
    np.testing.assert_allclose(variance[1:-1], sigma[1:-1] ** 2, rtol=0.08)
    assert variance[0] == variance[1] and variance[-1] == variance[-2]  # one neighbour only
    # a noise-free stack has (almost) none
    assert plane_noise_variance(clean).max() < 0.01 * sigma.min() ** 2
    # the ceiling is what the noise-free specimen scores against the stack
    truth_ceiling = [psnr(c, n) for c, n in zip(clean, noisy, strict=True)]
    np.testing.assert_allclose(noise_ceiling_db(noisy)[1:-1], truth_ceiling[1:-1], atol=0.35)
    with pytest.raises(ValueError, match="at least 3 planes"):
        plane_noise_variance(noisy[:2])


def test_taking_the_noise_out_scores_against_the_specimen() -> None:
    rng = np.random.default_rng(1)
    clean = _specimen(planes=12)
    noisy = clean + rng.normal(0, 8, clean.shape)
    estimate = clean + rng.normal(0, 5, clean.shape)  # its own error, independent of the stack's
    ceiling = noise_ceiling_db(noisy)
    against_stack = [psnr(e, n) for e, n in zip(estimate, noisy, strict=True)]
    # against the specimen, with the stack's range as the peak (as the ceiling takes it)
    against_specimen = [
        10 * np.log10(np.ptp(n) ** 2 / np.mean((e - c) ** 2))
        for e, c, n in zip(estimate, clean, noisy, strict=True)
    ]
    corrected = [psnr_without_noise(s, c) for s, c in zip(against_stack, ceiling, strict=True)]
    # the stack's score is several dB low; the corrected one is the specimen's
    assert np.mean(against_specimen) - np.mean(against_stack) > 3
    np.testing.assert_allclose(corrected, against_specimen, atol=0.5)
    keep = [True] * 6 + [False] * 6
    means = noise_free_means({"a": against_stack}, list(ceiling), keep)
    assert means["a"] == pytest.approx(np.mean(corrected[:6]))
    # an estimate the stack cannot tell from the specimen: capped at ceiling + 20 dB
    assert psnr_without_noise(30.0, 30.0) == pytest.approx(50.0)


def test_noise_is_estimated_only_from_planes_within_the_depth_of_field() -> None:
    dof = depth_of_field_um(519, 1.4, 1.515)
    assert dof == pytest.approx(0.401, abs=1e-3)
    assert noise_is_estimable(np.arange(0, 18.01, 0.2), dof)
    assert not noise_is_estimable(np.arange(0, 18.01, 1.0), dof)
    assert not noise_is_estimable([0.0, 0.2], dof)  # two planes have no second difference
