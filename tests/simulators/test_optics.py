from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from simulators.optics import (
    Optics,
    blur_radius_um,
    psf_planes,
    radial_psf,
    theoretical_axial_fwhm_um,
    theoretical_lateral_fwhm_um,
)

# name, NA, emission nm, immersion index
OPTICS_CASES = [
    ("beads preset, oil 1.4", 1.4, 615.0, 1.515),
    ("GFP, oil 1.4", 1.4, 519.0, 1.515),
    ("water 1.2", 1.2, 520.0, 1.333),
    ("dry 0.75", 0.75, 600.0, 1.0),
]


def _fwhm(x: np.ndarray, profile: np.ndarray) -> float:
    """Full width at half maximum of a single-peaked sampled profile."""
    half = profile.max() / 2
    above = np.flatnonzero(profile >= half)
    lo, hi = above[0], above[-1]
    # linear interpolation at both crossings
    left = np.interp(half, [profile[lo - 1], profile[lo]], [x[lo - 1], x[lo]])
    right = np.interp(half, [profile[hi + 1], profile[hi]], [x[hi + 1], x[hi]])
    return float(right - left)


@pytest.mark.parametrize(("name", "na", "wavelength", "n"), OPTICS_CASES)
def test_lateral_fwhm_at_focus(name: str, na: float, wavelength: float, n: float) -> None:
    optics = Optics(numerical_aperture=na, emission_wavelength_nm=wavelength, immersion_index=n)
    r = np.linspace(0.0, 2.0, 4001)
    profile = radial_psf(optics, r, np.array([0.0]))[0]
    x = np.concatenate([-r[:0:-1], r])
    full = np.concatenate([profile[:0:-1], profile])
    measured = _fwhm(x, full)
    expected = theoretical_lateral_fwhm_um(optics)
    assert measured == pytest.approx(expected, rel=0.10), name


@pytest.mark.parametrize(("name", "na", "wavelength", "n"), OPTICS_CASES)
def test_axial_fwhm(name: str, na: float, wavelength: float, n: float) -> None:
    optics = Optics(numerical_aperture=na, emission_wavelength_nm=wavelength, immersion_index=n)
    z = np.linspace(-6.0, 6.0, 6001)
    on_axis = radial_psf(optics, np.array([0.0]), z)[:, 0]
    assert np.argmax(on_axis) == len(z) // 2  # peak at focus, aberration-free
    measured = _fwhm(z, on_axis)
    expected = theoretical_axial_fwhm_um(optics)
    assert measured == pytest.approx(expected, rel=0.15), name


def test_physical_energy_is_the_same_in_every_plane() -> None:
    # Integrate the unnormalised radial PSF over the plane: defocus spreads
    # the light but must not create or lose any.
    optics = Optics()
    dz = np.array([0.0, 1.0, 3.0, 6.0])
    r_max = blur_radius_um(optics, 6.0) * 1.5
    r = np.linspace(0.0, r_max, 40001)
    psf = radial_psf(optics, r, dz)
    energy = np.trapezoid(psf * 2 * np.pi * r, r, axis=1)
    assert energy / energy[0] == pytest.approx(np.ones(4), rel=0.02)


def test_sampled_psf_planes_conserve_energy_and_broaden() -> None:
    optics = Optics()
    dz = np.array([-3.0, -1.0, 0.0, 1.0, 3.0])
    planes = psf_planes(optics, (256, 256), dz)
    assert planes.sum(axis=(1, 2)) == pytest.approx(np.ones(5), abs=1e-4)
    assert planes.min() > -1e-5  # an intensity is never negative
    peak = planes.max(axis=(1, 2))
    assert peak[2] > peak[1] > peak[0]
    assert peak[1] == pytest.approx(peak[3], rel=1e-3)  # symmetric in defocus
    assert np.unravel_index(np.argmax(planes[2]), (256, 256)) == (128, 128)


def test_defocus_blur_radius_grows_with_the_aperture_angle() -> None:
    optics = Optics()
    planes = psf_planes(optics, (512, 512), np.array([4.0]))[0]
    yy, xx = np.indices(planes.shape) - 256
    radius_um = np.hypot(yy, xx) * optics.pixel_size_um
    # 90 % of the light of a plane 4 um out of focus lies inside the
    # geometric disc of radius 4 um x tan(theta) (about 2.4 x at NA 1.4).
    inside = planes[radius_um <= 4.0 * np.tan(optics.half_angle_rad) * 1.05].sum()
    assert inside > 0.9
    assert planes[radius_um <= 4.0].sum() < 0.5


def _lateral_fwhm(optics: Optics, dz_um: float = 0.0) -> float:
    r = np.linspace(0.0, 2.0, 4001)
    profile = radial_psf(optics, r, np.array([dz_um]))[0]
    return _fwhm(np.concatenate([-r[:0:-1], r]), np.concatenate([profile[:0:-1], profile]))


def _energy_radius(optics: Optics, dz_um: float) -> float:
    """Radius holding half the light of a plane ``dz_um`` out of focus."""
    r = np.linspace(0.0, blur_radius_um(optics, dz_um) * 1.5, 8001)
    profile = radial_psf(optics, r, np.array([dz_um]))[0]
    energy = np.cumsum(profile * r)
    return float(r[np.searchsorted(energy, energy[-1] / 2)])


def test_vectorial_spot_is_wider_at_high_na_only() -> None:
    # The polarisation terms widen a high-NA focus by 10-15 % (unpolarised
    # light) and hardly matter at low NA; the geometric defocus disc is the
    # same in both models, as is the axial extent.
    for na, n, low, high in [(1.4, 1.515, 1.08, 1.18), (0.5, 1.0, 1.0, 1.04)]:
        scalar = Optics(numerical_aperture=na, immersion_index=n)
        vectorial = scalar.model_copy(update={"psf_model": "vectorial"})
        ratio = _lateral_fwhm(vectorial) / _lateral_fwhm(scalar)
        assert low < ratio < high, (na, ratio)
        assert _energy_radius(vectorial, 2.0) == pytest.approx(
            _energy_radius(scalar, 2.0), rel=0.03
        )
    z = np.linspace(-3.0, 3.0, 3001)
    on_axis = radial_psf(Optics(psf_model="vectorial"), np.array([0.0]), z)[:, 0]
    assert _fwhm(z, on_axis) == pytest.approx(theoretical_axial_fwhm_um(Optics()), rel=0.15)


def test_vectorial_psf_conserves_energy_and_is_refused_misspelt() -> None:
    planes = psf_planes(Optics(psf_model="vectorial"), (256, 256), np.array([0.0, 2.0]))
    assert planes.sum(axis=(1, 2)) == pytest.approx(np.ones(2), abs=1e-4)
    assert planes.min() > -1e-5
    with pytest.raises(ValidationError, match="psf_model"):
        Optics(psf_model="vector")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"numerical_aperture": 1.6, "immersion_index": 1.515}, "below the immersion index"),
        ({"emission_wavelength_nm": -5.0}, "emission_wavelength_nm"),
        ({"pixel_size_um": 0.0}, "pixel_size_um"),
        ({"typo_na": 1.0}, "typo_na"),
    ],
)
def test_bad_optics_are_refused(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        Optics(**kwargs)  # type: ignore[arg-type]


def test_spherical_aberration_breaks_the_focus_symmetry_and_keeps_the_light() -> None:
    ideal = Optics()
    aberrated = Optics(spherical_aberration_waves=0.3)
    z = np.linspace(-3.0, 3.0, 601)
    axis_ideal = radial_psf(ideal, np.array([0.0]), z)[:, 0]
    axis_aberrated = radial_psf(aberrated, np.array([0.0]), z)[:, 0]
    # Ideal optics look the same above and below focus; aberrated ones do not.
    np.testing.assert_allclose(axis_ideal, axis_ideal[::-1], rtol=1e-6, atol=1e-12)
    assert np.abs(axis_aberrated - axis_aberrated[::-1]).max() > 0.05 * axis_aberrated.max()
    # A lower, longer focus (Strehl ratio below 1), but every plane keeps its light.
    assert axis_aberrated.max() < 0.8 * axis_ideal.max()
    planes = psf_planes(aberrated, (256, 256), np.array([-1.0, 0.0, 1.5]))
    assert planes.sum(axis=(1, 2)) == pytest.approx(np.ones(3), abs=1e-4)
    with pytest.raises(ValidationError, match="spherical_aberration_waves"):
        Optics(spherical_aberration_waves=5.0)
