from __future__ import annotations

import numpy as np
import pytest

from simulators.camera_model import CameraModel

CAMERAS = [
    ("sCMOS 16 bit", CameraModel()),
    ("EM-less CCD 12 bit", CameraModel(read_noise_e=6.0, gain_adu_per_e=0.25, bit_depth=12)),
    ("high gain", CameraModel(quantum_efficiency=0.6, gain_adu_per_e=2.0, offset_adu=500)),
]


@pytest.mark.parametrize(("name", "camera"), CAMERAS)
@pytest.mark.parametrize("photons", [0.0, 50.0, 1000.0])
def test_flat_field_mean_and_variance_match_the_model(
    name: str, camera: CameraModel, photons: float
) -> None:
    rng = np.random.default_rng(1)
    flat = np.full((512, 512), photons)
    frame = camera.capture(flat, rng).astype(np.float64)
    mean = float(camera.expected_adu(np.array(photons)))
    variance = float(camera.expected_variance_adu2(np.array(photons)))
    # rounding to integer counts adds 1/12 ADU^2
    assert frame.mean() == pytest.approx(mean, abs=max(0.002 * mean, 0.05)), name
    assert frame.var() == pytest.approx(variance + 1 / 12, rel=0.05), name


def test_saturation_clips_at_full_well_and_converter_range() -> None:
    rng = np.random.default_rng(0)
    bright = np.full((64, 64), 1e7)
    twelve = CameraModel(bit_depth=12, gain_adu_per_e=1.0, full_well_e=1e6)
    assert (twelve.capture(bright, rng) == 4095).all()
    sixteen = CameraModel(full_well_e=20000.0, gain_adu_per_e=0.5, offset_adu=100)
    frame = sixteen.capture(bright, rng)
    # full well reached: 20000 e- x 0.5 + 100, give or take read noise
    assert abs(frame.astype(float).mean() - 10100) < 2
    assert frame.max() < 65535


def test_dark_frame_is_offset_and_read_noise() -> None:
    camera = CameraModel(read_noise_e=2.0, gain_adu_per_e=0.5, offset_adu=100)
    frame = camera.capture(np.zeros((256, 256)), np.random.default_rng(2)).astype(float)
    assert frame.mean() == pytest.approx(100, abs=0.05)
    assert frame.std() == pytest.approx(np.sqrt(1.0 + 1 / 12), rel=0.05)


def test_noise_is_seeded() -> None:
    camera = CameraModel()
    photons = np.full((32, 32), 100.0)
    a = camera.capture(photons, np.random.default_rng(5))
    b = camera.capture(photons, np.random.default_rng(5))
    c = camera.capture(photons, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.uint16
