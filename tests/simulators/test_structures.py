"""Structure families: each one what it claims to be, seeded, and mixable."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import ndimage

from simulators.samples import STRUCTURE_FAMILIES, StructureSample, make_sample

FIELD = 96
VOXEL_XY = 0.1


def _sample(*families: str, seed: int = 3, **settings: float) -> np.ndarray:
    spec = StructureSample(
        seed=seed,
        depth_um=6.0,
        voxel_z_um=0.2,
        families=families,
        **settings,  # type: ignore[arg-type]
    )
    sample = make_sample(spec, FIELD, VOXEL_XY)
    assert sample.periodic and sample.density.shape == (31, FIELD, FIELD)
    return sample.density


@pytest.mark.parametrize("family", STRUCTURE_FAMILIES)
def test_each_family_is_seeded_and_fluorescent(family: str) -> None:
    density = _sample(family, fill=0.8)
    assert density.dtype == np.float32 and (density >= 0).all() and density.max() > 0
    np.testing.assert_array_equal(density, _sample(family, fill=0.8))
    assert not np.array_equal(density, _sample(family, seed=4, fill=0.8))


def _occupied(density: np.ndarray) -> float:
    return float((density > 0.1 * density.max()).mean())


# family, the share of voxels lit above 10 % of the peak: (lowest, highest)
OCCUPANCY = [
    ("filaments", (0.0, 0.05)),  # thin lines
    ("puncta", (0.0, 0.05)),  # sub-micrometre spots
    ("membranes", (0.005, 0.5)),  # thin shells around empty insides
    ("tissue", (0.2, 1.0)),  # a continuous texture
]


@pytest.mark.parametrize(("family", "bounds"), OCCUPANCY)
def test_families_fill_space_as_their_shapes_do(family: str, bounds: tuple[float, float]) -> None:
    share = _occupied(_sample(family, fill=0.8))
    assert bounds[0] <= share <= bounds[1], share


def test_membranes_are_hollow_and_nuclei_solid() -> None:
    for family, hollow in (("membranes", True), ("nuclei", False)):
        density = _sample(family, fill=0.3, size_scale=0.5)
        lit = density > 0.2 * density.max()
        filled = ndimage.binary_fill_holes(lit[15])
        # Filling the holes of a plane adds a lot for shells, little for solids.
        added = (filled.sum() - lit[15].sum()) / max(lit[15].sum(), 1)
        assert (added > 0.25) == hollow, (family, added)


def test_more_fill_packs_more_structure() -> None:
    for family in ("nuclei", "membranes", "puncta"):
        # small objects, so that the small field holds many
        sparse = _sample(family, fill=0.0, size_scale=0.4).sum()
        packed = _sample(family, fill=1.0, size_scale=0.4).sum()
        assert packed > 1.5 * sparse, family


def test_mixtures_span_the_brightness_decades() -> None:
    one = _sample("nuclei", brightness_decades=0.0)
    both = _sample("nuclei", "puncta", brightness_decades=0.0)
    assert both.sum() > one.sum()
    peaks = []
    for seed in range(6):
        mixed = _sample("nuclei", "tissue", seed=seed, brightness_decades=2.0)
        peaks.append(mixed.max())
    assert max(peaks) <= 1.6 * 2.0 * 10  # each part is brightest near 1


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValidationError, match="families"):
        StructureSample(families=("nucleoli",))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        StructureSample(families=())
    with pytest.raises(ValidationError, match="extra"):
        StructureSample(families=("nuclei",), brightness=2.0)  # type: ignore[call-arg]


def test_a_slab_empties_the_depth_outside_it_and_keeps_the_inside() -> None:
    whole = _sample("nuclei", "tissue", fill=0.8)
    thin = _sample("nuclei", "tissue", fill=0.8, slab_um=(2.0, 4.0))  # type: ignore[arg-type]
    z = np.arange(31) * 0.2
    outside = (z <= 2.0 + 1e-9) | (z >= 4.0 - 1e-9)
    assert whole[outside].max() > 0.1  # there was structure there
    assert thin[outside].max() == 0.0
    inside = (z >= 3.0 - 1e-9) & (z <= 3.0 + 1e-9)  # 1 µm from both edges
    np.testing.assert_array_equal(thin[inside], whole[inside])
    with pytest.raises(ValidationError, match="slab_um"):
        StructureSample(families=("nuclei",), depth_um=6.0, slab_um=(4.0, 2.0))
    with pytest.raises(ValidationError, match="slab_um"):
        StructureSample(families=("nuclei",), depth_um=6.0, slab_um=(1.0, 7.0))
