"""Three-dimensional fluorophore densities on a voxel grid.

A `Sample` is the ground-truth stage of the simulation: fluorophore density
(arbitrary units: one unit is the brightness of one 50 nm bead, or of one
voxel inside a nucleus) on a ``(z, y, x)`` grid with lateral voxel equal to
the camera pixel at the sample.

Generated samples (beads, nuclei) are *laterally periodic*: they fill a field
that tiles the plane, so light from beyond one edge is the light of real
neighbouring structure, never of the same object twice as long as the field is
at least twice the largest blur radius wide (the renderer sees to that).
A sample read from a TIFF is an isolated object: the renderer surrounds it
with empty space.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, get_args

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "STRUCTURE_FAMILIES",
    "BeadSample",
    "NucleiSample",
    "Sample",
    "SampleSpec",
    "StructureFamily",
    "StructureSample",
    "TiffSample",
    "make_sample",
]


@dataclass(frozen=True, eq=False)
class Sample:
    """Fluorophore density ``(z, y, x)`` float32 and where it sits.

    ``z_origin_um`` is the z of plane 0; plane ``k`` is at
    ``z_origin_um + k * voxel_z_um``.  ``periodic`` says whether the field
    tiles laterally.  ``points_um`` lists point sources (beads) as
    ``(z, y, x)`` in micrometres within the field, or is empty.
    """

    density: NDArray[np.float32]
    voxel_xy_um: float
    voxel_z_um: float
    z_origin_um: float
    periodic: bool
    points_um: NDArray[np.float64]

    @property
    def depth_planes_um(self) -> NDArray[np.float64]:
        planes = self.z_origin_um + self.voxel_z_um * np.arange(self.density.shape[0])
        return planes.astype(np.float64)


class _SpecBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    depth_um: float = Field(10.0, gt=0.0, le=200.0)
    voxel_z_um: float = Field(0.1, gt=0.0, le=5.0)


class BeadSample(_SpecBase):
    """Sub-resolution beads at random 3D positions, one voxel each."""

    kind: Literal["beads"] = "beads"
    density_per_1000_um3: float = Field(2.0, ge=0.0, le=1000.0)
    brightness_spread: float = Field(0.1, ge=0.0, le=2.0, description="lognormal sigma")
    edge_margin_um: float = Field(0.5, ge=0.0, description="no bead closer to z ends")


class NucleiSample(_SpecBase):
    """Worm-like band of ellipsoidal nuclei (C. elegans neuron nuclei)."""

    kind: Literal["nuclei"] = "nuclei"
    voxel_z_um: float = Field(0.2, gt=0.0, le=5.0)
    depth_um: float = Field(18.0, gt=0.0, le=200.0)
    nuclei_per_1000_um3: float = Field(6.0, ge=0.0, le=200.0)
    diameter_range_um: tuple[float, float] = (2.0, 4.0)
    band_half_width_um: float = Field(12.0, gt=0.0)
    brightness_spread: float = Field(0.35, ge=0.0, le=2.0, description="lognormal sigma")
    diffuse_background: float = Field(
        0.01, ge=0.0, description="density of the tissue between nuclei"
    )
    chromatin_contrast: float = Field(
        0.0, ge=0.0, le=1.0, description="std of a smooth texture inside nuclei (0: none)"
    )
    chromatin_grain_um: float = Field(0.4, gt=0.0, le=5.0, description="its correlation length")


class TiffSample(_SpecBase):
    """A 3D TIFF ``(z, y, x)`` resampled to the camera pixel and ``voxel_z_um``."""

    kind: Literal["tiff"] = "tiff"
    path: Path
    tiff_voxel_xy_um: float = Field(gt=0.0)
    tiff_voxel_z_um: float = Field(gt=0.0)
    depth_um: float = Field(10.0, gt=0.0, le=200.0, description="ignored: from file")


StructureFamily = Literal["nuclei", "cells", "filaments", "membranes", "puncta", "tissue"]
STRUCTURE_FAMILIES: tuple[StructureFamily, ...] = get_args(StructureFamily)


class StructureSample(_SpecBase):
    """A mixture of structure families in one periodic field (`structures`)."""

    kind: Literal["structures"] = "structures"
    depth_um: float = Field(18.0, gt=0.0, le=200.0)
    voxel_z_um: float = Field(0.2, gt=0.0, le=5.0)
    families: tuple[StructureFamily, ...] = Field(("nuclei",), min_length=1)
    fill: float = Field(
        0.5, ge=0.0, le=1.0, description="0: sparse objects, 1: the field packed full"
    )
    brightness_decades: float = Field(
        1.0, ge=0.0, le=3.0, description="component brightnesses span up to this many decades"
    )
    size_scale: float = Field(1.0, gt=0.2, le=5.0, description="multiplies object sizes")
    slab_um: tuple[float, float] | None = Field(
        None,
        description="(lowest, highest) z holding the specimen, soft over 1 µm at each side; "
        "None: the whole depth. A thin specimen leaves planes above and below it empty.",
    )

    @model_validator(mode="after")
    def _slab_inside(self) -> StructureSample:
        if self.slab_um is not None:
            lo, hi = self.slab_um
            if not 0.0 <= lo < hi <= self.depth_um:
                raise ValueError(
                    f"slab_um {self.slab_um!r} must satisfy 0 <= lowest < highest <= depth_um "
                    f"({self.depth_um})"
                )
        return self


SampleSpec = Annotated[
    BeadSample | NucleiSample | StructureSample | TiffSample, Field(discriminator="kind")
]


def make_sample(spec: SampleSpec, field_px: int, voxel_xy_um: float) -> Sample:
    """Build the density of ``spec`` on a ``field_px`` square field."""
    if isinstance(spec, BeadSample):
        return _make_beads(spec, field_px, voxel_xy_um)
    if isinstance(spec, NucleiSample):
        return _make_nuclei(spec, field_px, voxel_xy_um)
    if isinstance(spec, StructureSample):
        from .structures import make_structures

        return make_structures(spec, field_px, voxel_xy_um)
    return _read_tiff_sample(spec, voxel_xy_um)


def _n_planes(spec: _SpecBase) -> int:
    return round(spec.depth_um / spec.voxel_z_um) + 1


def _make_beads(spec: BeadSample, field_px: int, voxel_xy_um: float) -> Sample:
    rng = np.random.default_rng(spec.seed)
    nz = _n_planes(spec)
    density = np.zeros((nz, field_px, field_px), np.float32)
    side_um = field_px * voxel_xy_um
    volume = side_um * side_um * spec.depth_um
    count = rng.poisson(spec.density_per_1000_um3 * volume / 1000.0)
    lo = min(spec.edge_margin_um, spec.depth_um / 2)
    z = rng.uniform(lo, spec.depth_um - lo, count)
    # Beads sit on pixel centres laterally: a 50 nm bead is far below one
    # pixel, and off-centre splatting would blur the ground truth.
    y = rng.integers(0, field_px, count)
    x = rng.integers(0, field_px, count)
    brightness = rng.lognormal(0.0, spec.brightness_spread, count).astype(np.float32)
    # Linear split between the two nearest planes keeps the bead's axial
    # centroid at its continuous z.
    zf = z / spec.voxel_z_um
    k0 = np.clip(np.floor(zf).astype(np.int64), 0, nz - 2)
    w1 = (zf - k0).astype(np.float32)
    np.add.at(density, (k0, y, x), brightness * (1.0 - w1))
    np.add.at(density, (k0 + 1, y, x), brightness * w1)
    points = np.stack([z, y * voxel_xy_um, x * voxel_xy_um], axis=1)
    return Sample(density, voxel_xy_um, spec.voxel_z_um, 0.0, True, points)


def _smoothstep(t: NDArray[np.floating]) -> NDArray[np.floating]:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _make_nuclei(spec: NucleiSample, field_px: int, voxel_xy_um: float) -> Sample:
    rng = np.random.default_rng(spec.seed)
    nz = _n_planes(spec)
    side_um = field_px * voxel_xy_um
    density = np.zeros((nz, field_px, field_px), np.float32)

    # The worm's centre line: one full sine period across the field, so the
    # band tiles seamlessly.  Its amplitude and phase vary from sample to sample.
    # It passes within a few micrometres of the field centre, where the camera
    # looks.
    amplitude = rng.uniform(0.05, 0.2) * side_um
    phase = rng.uniform(0, 2 * np.pi)
    y_centre = side_um / 2 - amplitude * np.sin(np.pi + phase) + rng.uniform(-3.0, 3.0)

    def centre_y(x_um: NDArray[np.float64]) -> NDArray[np.float64]:
        return y_centre + amplitude * np.sin(2 * np.pi * x_um / side_um + phase)

    half_depth = spec.depth_um / 2
    z_mid = half_depth
    d_lo, d_hi = spec.diameter_range_um
    band_volume = side_um * 2 * spec.band_half_width_um * spec.depth_um * np.pi / 4
    count = rng.poisson(spec.nuclei_per_1000_um3 * band_volume / 1000.0)

    # Accepted nuclei fill these arrays from the front; ``placed`` counts them.
    centres = np.zeros((count, 3))
    radii = np.zeros(count)
    placed = 0
    for _ in range(count * 20):
        if placed >= count:
            break
        # Uniform in the elliptical tube cross-section (half-width in y,
        # half-depth in z, shrunk by the largest nucleus radius).
        u, v = rng.uniform(-1, 1, 2)
        if u * u + v * v > 1:
            continue
        x = rng.uniform(0, side_um)
        radius = rng.uniform(d_lo, d_hi) / 2
        y = centre_y(np.array([x]))[0] + u * max(spec.band_half_width_um - radius, 0.0)
        z = z_mid + v * max(half_depth - radius, 0.0)
        if np.any(
            _periodic_distances((z, y, x), centres[:placed], side_um)
            < 0.9 * (radius + radii[:placed])
        ):
            continue
        centres[placed] = (z, y % side_um, x)
        radii[placed] = radius
        placed += 1
    centres, radii = centres[:placed], radii[:placed]

    zz = (np.arange(nz) * spec.voxel_z_um)[:, None, None].astype(np.float64)
    for (cz, cy, cx), radius in zip(centres, radii, strict=True):
        _add_nucleus(density, zz, (cz, cy, cx), float(radius), spec, rng, voxel_xy_um)

    if spec.chromatin_contrast > 0:
        density *= _chromatin(density.shape, spec, voxel_xy_um)

    if spec.diffuse_background > 0:
        x_um = ((np.arange(field_px) + 0.5) * voxel_xy_um).astype(np.float64)
        y_um = x_um[:, None]
        dy = (y_um - centre_y(x_um)[None, :] + side_um / 2) % side_um - side_um / 2
        dzz = (zz - z_mid) / half_depth
        inside = (dy / spec.band_half_width_um) ** 2 + dzz**2 <= 1.0
        density += spec.diffuse_background * inside.astype(np.float32)

    points = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    return Sample(density, voxel_xy_um, spec.voxel_z_um, 0.0, True, points)


def _periodic_distances(
    a: tuple[float, float, float], b: NDArray[np.float64], side_um: float
) -> NDArray[np.float64]:
    """Distances from point ``a`` to each row ``(z, y, x)`` of ``b``, wrapping in y and x."""
    dz = a[0] - b[:, 0]
    dy = (a[1] - b[:, 1] + side_um / 2) % side_um - side_um / 2
    dx = (a[2] - b[:, 2] + side_um / 2) % side_um - side_um / 2
    return np.sqrt(dz * dz + dy * dy + dx * dx)


def _chromatin(
    shape: tuple[int, ...], spec: NucleiSample, voxel_xy_um: float
) -> NDArray[np.float32]:
    """A smooth multiplicative texture: clumps and gaps of chromatin inside the nuclei.

    Gaussian-filtered white noise with correlation length
    ``chromatin_grain_um``, scaled to a standard deviation of
    ``chromatin_contrast`` around 1 and kept positive.  It wraps laterally,
    as the field does, and has a random stream of its own, so the nuclei
    themselves are the same with or without it.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng([spec.seed, 2])
    noise = rng.standard_normal(shape, dtype=np.float32)
    sigma_px = spec.chromatin_grain_um / voxel_xy_um
    noise = gaussian_filter(
        noise, (spec.chromatin_grain_um / spec.voxel_z_um, sigma_px, sigma_px), mode="wrap"
    )
    noise *= spec.chromatin_contrast / max(float(noise.std()), 1e-12)
    return np.clip(1.0 + noise, 0.05, None)


def _add_nucleus(
    density: NDArray[np.float32],
    zz: NDArray[np.float64],
    centre: tuple[float, float, float],
    radius: float,
    spec: NucleiSample,
    rng: np.random.Generator,
    voxel_xy_um: float,
) -> None:
    """Splat one soft-edged ellipsoid with a little texture, wrapping in x, y."""
    field_px = density.shape[-1]
    cz, cy, cx = centre
    axes = radius * rng.uniform(0.8, 1.2, 3)
    angle = rng.uniform(0, np.pi)
    brightness = float(rng.lognormal(0.0, spec.brightness_spread))
    reach = int(np.ceil(axes.max() / voxel_xy_um)) + 2
    iy = (np.arange(-reach, reach + 1) + int(cy / voxel_xy_um)) % field_px
    ix = (np.arange(-reach, reach + 1) + int(cx / voxel_xy_um)) % field_px
    oy = (np.arange(-reach, reach + 1) + int(cy / voxel_xy_um) + 0.5) * voxel_xy_um - cy
    ox = (np.arange(-reach, reach + 1) + int(cx / voxel_xy_um) + 0.5) * voxel_xy_um - cx
    c, s = np.cos(angle), np.sin(angle)
    u = (c * ox[None, :] + s * oy[:, None]) / axes[2]
    v = (-s * ox[None, :] + c * oy[:, None]) / axes[1]
    w = (zz - cz) / axes[0]
    r = np.sqrt(u[None] ** 2 + v[None] ** 2 + w**2)
    edge = 0.25 / radius  # a 0.25 um soft rim, in units of the radius
    body = _smoothstep((1.0 - r) / edge).astype(np.float32)
    texture = 1.0 + 0.15 * rng.standard_normal(body.shape).astype(np.float32)
    block = brightness * body * np.clip(texture, 0.5, 1.5)
    density[:, iy[:, None], ix[None, :]] += block


def _read_tiff_sample(spec: TiffSample, voxel_xy_um: float) -> Sample:
    import tifffile
    from scipy.ndimage import zoom

    if not spec.path.is_file():
        raise FileNotFoundError(f"sample TIFF {str(spec.path)!r} does not exist")
    data = np.asarray(tifffile.imread(spec.path), dtype=np.float32)
    data = np.squeeze(data)
    if data.ndim != 3:
        raise ValueError(
            f"sample TIFF {str(spec.path)!r} has shape {data.shape}; expected a 3D "
            "(z, y, x) stack of one channel"
        )
    scale = (
        spec.tiff_voxel_z_um / spec.voxel_z_um,
        spec.tiff_voxel_xy_um / voxel_xy_um,
        spec.tiff_voxel_xy_um / voxel_xy_um,
    )
    data = zoom(data, scale, order=1)
    data -= float(np.percentile(data, 1))  # the camera offset is not fluorescence
    np.clip(data, 0.0, None, out=data)
    peak = float(data.max())
    if peak > 0:
        data /= peak
    empty = np.zeros((0, 3))
    return Sample(data.astype(np.float32), voxel_xy_um, spec.voxel_z_um, 0.0, False, empty)
