from __future__ import annotations

import numpy as np
import pytest

from simulators.optics import Optics, psf_planes
from simulators.rendering import FocalStack, field_size_px
from simulators.samples import BeadSample, NucleiSample, Sample, make_sample

OPTICS = Optics()


def _point_sample(z_index: int, yx: tuple[int, int], shape: tuple[int, int, int]) -> Sample:
    density = np.zeros(shape, np.float32)
    density[z_index, yx[0], yx[1]] = 1.0
    return Sample(density, 0.1, 0.1, 0.0, False, np.zeros((0, 3)))


def test_point_source_image_is_the_psf_at_its_defocus() -> None:
    # One bead at z = 1.0 um in an isolated 64 x 64 sample, seen at several
    # focus positions: the image must be the PSF of that defocus, centred on
    # the bead.  This pins the sign and indexing of the z correlation.
    sample = _point_sample(10, (32, 32), (21, 64, 64))
    stack = FocalStack(sample, OPTICS, (64, 64), (-1.0, 3.0))
    field = stack.field_shape
    top, left = (field[0] - 64) // 2, (field[1] - 64) // 2
    for focus in (-0.5, 1.0, 1.7, 3.0):
        image = stack.image_at(focus)
        psf = psf_planes(OPTICS, field, np.array([1.0 - focus]))[0]
        expected = psf[top : top + 64, left : left + 64]
        assert image.sum() <= 1.0 + 1e-4
        np.testing.assert_allclose(image, expected, rtol=0.01, atol=1e-3 * expected.max())


def test_isolated_sample_light_does_not_wrap_around() -> None:
    # A bead at the left edge, 4 um out of focus: its disc reaches ~10 um to
    # the right, no further, so the far right columns must stay dark.
    sample = _point_sample(0, (64, 2), (41, 128, 128))
    stack = FocalStack(sample, OPTICS, (128, 128), (0.0, 4.0))
    image = stack.image_at(4.0)
    columns = image.sum(axis=0)
    assert columns[:20].sum() > 0.2
    assert columns[-20:].sum() < 0.01 * image.sum()  # only the diffraction tail
    assert columns[:20].sum() > columns[60:80].sum() > columns[-20:].sum()


def test_bead_stack_peaks_at_each_bead_and_broadens_symmetrically() -> None:
    spec = BeadSample(seed=3, depth_um=4.0, density_per_1000_um3=12.0, brightness_spread=0.0)
    fov = 192
    field = field_size_px(OPTICS, fov, 6.0, periodic=True)
    sample = make_sample(spec, field, OPTICS.pixel_size_um)
    stack = FocalStack(sample, OPTICS, (fov, fov), (-1.0, 5.0))
    offset = (field - fov) // 2
    beads = [(z, round(y / 0.1) - offset, round(x / 0.1) - offset) for z, y, x in sample.points_um]
    inside = [b for b in beads if 12 <= b[1] < fov - 12 and 12 <= b[2] < fov - 12]
    # isolated: no other bead within 3 um laterally, so no neighbour's blur
    # disc reaches the patch
    isolated = [
        b
        for b in inside
        if all(np.hypot(b[1] - o[1], b[2] - o[2]) > 30 for o in beads if o is not b)
    ]
    assert len(isolated) >= 3
    for z_true, y, x in isolated:
        profile = stack.stack[:, y, x]
        z_peak = stack.focus_um[int(np.argmax(profile))]
        assert abs(z_peak - z_true) <= stack.step_um + 1e-9
        # The light within 1 um of the bead falls as it defocuses, the same
        # way above and below focus (the aberration-free PSF is symmetric).
        # Encircled energy, not the central pixel: on axis the PSF has zeros
        # near +-0.66 um that make a single pixel jumpy.
        near = {
            dz: float(stack.image_at(z_true + dz)[y - 10 : y + 11, x - 10 : x + 11].sum())
            for dz in (-1.5, -0.75, 0.0, 0.75, 1.5)
        }
        assert near[-1.5] == pytest.approx(near[1.5], rel=0.1)
        assert near[-0.75] == pytest.approx(near[0.75], rel=0.1)
        assert near[0.0] > near[0.75] > near[1.5]


def test_continuous_focus_interpolates_between_grid_planes() -> None:
    sample = _point_sample(10, (32, 32), (21, 64, 64))
    stack = FocalStack(sample, OPTICS, (64, 64), (0.0, 2.0))
    a, b = stack.image_at(0.9), stack.image_at(1.0)
    mid = stack.image_at(0.95)
    np.testing.assert_allclose(mid, (a + b) / 2, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="outside the simulated range"):
        stack.image_at(2.5)


def test_samples_are_seeded_and_varied() -> None:
    a = make_sample(NucleiSample(seed=1, depth_um=6.0), 200, 0.1)
    b = make_sample(NucleiSample(seed=1, depth_um=6.0), 200, 0.1)
    c = make_sample(NucleiSample(seed=2, depth_um=6.0), 200, 0.1)
    np.testing.assert_array_equal(a.density, b.density)
    assert not np.array_equal(a.density, c.density)
    assert a.density.shape == (31, 200, 200)
    assert len(a.points_um) > 3
    # nuclei are 2-4 um bodies: the brightest voxels are well inside one
    assert a.density.max() > 0.5


def test_chromatin_texture_changes_the_inside_of_nuclei_only() -> None:
    plain = make_sample(NucleiSample(seed=3, depth_um=6.0, diffuse_background=0.0), 200, 0.1)
    spec = NucleiSample(seed=3, depth_um=6.0, diffuse_background=0.0, chromatin_contrast=0.4)
    textured = make_sample(spec, 200, 0.1)
    # the same nuclei in the same places; nothing appears outside them
    np.testing.assert_array_equal(plain.points_um, textured.points_um)
    inside = plain.density > 0.3 * plain.density.max()
    assert np.all(textured.density[plain.density == 0] == 0)
    ratio = textured.density[inside] / plain.density[inside]
    assert 0.25 < ratio.std() < 0.55 and 0.85 < ratio.mean() < 1.15
    # smooth, not voxel noise: neighbouring voxels along x share their clumps
    field = textured.density / np.where(plain.density > 0, plain.density, 1)
    step = field[:, :, 1:] - field[:, :, :-1]
    assert step[inside[:, :, 1:] & inside[:, :, :-1]].std() < 0.5 * ratio.std()
    with pytest.raises(ValueError, match="chromatin_contrast"):
        NucleiSample(chromatin_contrast=1.5)
