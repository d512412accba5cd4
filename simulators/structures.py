"""Families of biological structure beyond the worm band, for training and judging.

A network trained on one kind of specimen learns that specimen's look, not
wide-field physics.  These generators draw, each from its own seed and a few
parameters, the structures a microscopist actually images:

``nuclei``      nuclei throughout the 3D volume, from sparse to a field packed full
``cells``       cells with a dim, textured cytoplasm and a nucleus inside (bright
                as with a nuclear stain, or dark as with a cytoplasmic one)
``filaments``   neurites and cytoskeleton: curved, branching, varying thickness
``membranes``   shells: cell outlines packed like an epithelium, vesicle walls
``puncta``      vesicles and spots, clustered or scattered, a few hundred nm
``tissue``      smooth textured fluorescence with no sharp objects

A `StructureSample` mixes one or more families in one field, each component
with its own brightness; the brightnesses may span two decades.  Every field
is laterally periodic, like the other generated samples: objects wrap at the
edges.  Units are those of `samples.Sample`: about one unit per voxel inside
a bright object.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter

from .samples import STRUCTURE_FAMILIES, Sample, StructureFamily, StructureSample, _smoothstep

__all__ = ["make_structures"]

Grid = tuple[int, int, int]  # (nz, ny, nx)
_Generator = Callable[[np.random.Generator, Grid, float, float, float, float], NDArray[np.float32]]


def make_structures(spec: StructureSample, field_px: int, voxel_xy_um: float) -> Sample:
    """Build the density of ``spec`` on a ``field_px`` square field."""
    nz = round(spec.depth_um / spec.voxel_z_um) + 1
    grid = (nz, field_px, field_px)
    density = np.zeros(grid, np.float32)
    # Brightness of each component: log-uniform over the allowed decades,
    # the brightest at 1.
    levels_rng = np.random.default_rng([spec.seed, 31337])
    levels = 10.0 ** (-levels_rng.uniform(0.0, spec.brightness_decades, len(spec.families)))
    levels /= levels.max()
    for index, (family, level) in enumerate(zip(spec.families, levels, strict=True)):
        # Each component on a stream of its own: adding one to a mixture
        # leaves the others where they were.
        rng = np.random.default_rng([spec.seed, index, STRUCTURE_FAMILIES.index(family)])
        part = _GENERATORS[family](
            rng, grid, voxel_xy_um, spec.voxel_z_um, spec.fill, spec.size_scale
        )
        top = float(np.percentile(part[part > 0], 99.5)) if np.any(part > 0) else 1.0
        density += part * np.float32(level / max(top, 1e-12))
    if spec.slab_um is not None:
        density *= _slab_envelope(nz, spec.voxel_z_um, *spec.slab_um)[:, None, None]
    return Sample(density, voxel_xy_um, spec.voxel_z_um, 0.0, True, np.zeros((0, 3)))


# geometry helpers ----------------------------------------------------------


def _blur(
    volume: NDArray[np.float32], sigma_um: float, voxel_xy_um: float, voxel_z_um: float
) -> NDArray[np.float32]:
    """Gaussian blur, wrapping laterally (the field is periodic), not along z."""
    sigma = (sigma_um / voxel_z_um, sigma_um / voxel_xy_um, sigma_um / voxel_xy_um)
    out = gaussian_filter(volume, sigma, mode=("constant", "wrap", "wrap"))
    return np.asarray(out, np.float32)


def _splat_ellipsoid(
    density: NDArray[np.float32],
    centre_um: NDArray[np.float64],
    axes_um: NDArray[np.float64],
    angle: float,
    voxel_xy_um: float,
    voxel_z_um: float,
    profile: Callable[[NDArray[np.float64]], NDArray[np.floating]],
    value: float,
) -> None:
    """Add ``value * profile(r)`` around a rotated ellipsoid (r = 1 on its surface)."""
    nz, ny, nx = density.shape
    cz, cy, cx = centre_um
    reach_xy = int(np.ceil(1.3 * axes_um[1:].max() / voxel_xy_um)) + 2
    reach_z = int(np.ceil(1.3 * axes_um[0] / voxel_z_um)) + 2
    kz0 = max(int(cz / voxel_z_um) - reach_z, 0)
    kz1 = min(int(cz / voxel_z_um) + reach_z + 1, nz)
    if kz1 <= kz0:
        return
    steps = np.arange(-reach_xy, reach_xy + 1)
    iy = (steps + int(cy / voxel_xy_um)) % ny
    ix = (steps + int(cx / voxel_xy_um)) % nx
    oy = (steps + int(cy / voxel_xy_um) + 0.5) * voxel_xy_um - cy
    ox = (steps + int(cx / voxel_xy_um) + 0.5) * voxel_xy_um - cx
    oz = np.arange(kz0, kz1) * voxel_z_um - cz
    c, s = np.cos(angle), np.sin(angle)
    u = (c * ox[None, :] + s * oy[:, None]) / axes_um[2]
    v = (-s * ox[None, :] + c * oy[:, None]) / axes_um[1]
    w = oz / axes_um[0]
    r = np.sqrt(u[None] ** 2 + v[None] ** 2 + w[:, None, None] ** 2)
    block = (value * profile(r)).astype(np.float32)
    density[kz0:kz1, iy[:, None], ix[None, :]] += block


def _place(
    rng: np.random.Generator,
    count: int,
    radii: NDArray[np.float64],
    grid: Grid,
    voxel_xy_um: float,
    voxel_z_um: float,
    overlap: float = 0.9,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Up to ``count`` non-overlapping centres ``(z, y, x)`` µm for spheres of ``radii``."""
    nz, ny, _ = grid
    side = ny * voxel_xy_um
    depth = (nz - 1) * voxel_z_um
    centres = np.zeros((count, 3))
    kept = np.zeros(count)
    placed = 0
    for _ in range(count * 15):
        if placed >= count:
            break
        radius = radii[placed % len(radii)]
        z = rng.uniform(min(radius * 0.5, depth / 2), max(depth - radius * 0.5, depth / 2))
        y, x = rng.uniform(0, side, 2)
        d = centres[:placed] - (z, y, x)
        d[:, 1:] = (d[:, 1:] + side / 2) % side - side / 2
        if np.any(np.sqrt((d * d).sum(axis=1)) < overlap * (radius + kept[:placed])):
            continue
        centres[placed] = (z, y, x)
        kept[placed] = radius
        placed += 1
    return centres[:placed], kept[:placed]


def _count_for_packing(
    grid: Grid, voxel_xy_um: float, voxel_z_um: float, packing: float, radius_um: float
) -> int:
    nz, ny, nx = grid
    volume = ny * nx * voxel_xy_um**2 * (nz - 1) * voxel_z_um
    return int(packing * volume / (4 / 3 * np.pi * radius_um**3))


def _packed_objects(
    rng: np.random.Generator,
    grid: Grid,
    voxel_xy_um: float,
    voxel_z_um: float,
    *,
    mean_radius_um: float,
    packing: tuple[float, float],
    overlap: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Centres and radii of objects of about ``mean_radius_um``, placed without overlap.

    They fill ``packing[0] + packing[1] * u`` of the volume, ``u`` drawn in 0.6-1.
    """
    radii = mean_radius_um * rng.uniform(0.7, 1.3, 64)
    share = packing[0] + packing[1] * rng.uniform(0.6, 1.0)
    count = _count_for_packing(grid, voxel_xy_um, voxel_z_um, share, mean_radius_um)
    return _place(rng, max(count, 1), radii, grid, voxel_xy_um, voxel_z_um, overlap)


def _texture(
    rng: np.random.Generator,
    grid: Grid,
    grain_um: float,
    contrast: float,
    voxel_xy_um: float,
    voxel_z_um: float,
) -> NDArray[np.float32]:
    """A smooth multiplicative texture around 1 (periodic laterally)."""
    noise = rng.standard_normal(grid, dtype=np.float32)
    noise = _blur(noise, grain_um, voxel_xy_um, voxel_z_um)
    noise *= contrast / max(float(noise.std()), 1e-12)
    return np.clip(1.0 + noise, 0.05, None).astype(np.float32)


def _solid(edge: float) -> Callable[[NDArray[np.float64]], NDArray[np.floating]]:
    return lambda r: _smoothstep((1.0 - r) / edge)


def _shell(thickness: float) -> Callable[[NDArray[np.float64]], NDArray[np.floating]]:
    return lambda r: np.exp(-0.5 * ((r - 1.0) / thickness) ** 2)


# the families -------------------------------------------------------------


def _nuclei(
    rng: np.random.Generator,
    grid: Grid,
    voxel_xy_um: float,
    voxel_z_um: float,
    fill: float,
    size: float,
) -> NDArray[np.float32]:
    """Nuclei throughout the volume, 3-10 µm, packed from 2 % to 45 % of it."""
    density = np.zeros(grid, np.float32)
    centres, kept = _packed_objects(
        rng, grid, voxel_xy_um, voxel_z_um, mean_radius_um=rng.uniform(1.5, 5.0) * size,
        packing=(0.02, 0.43 * fill), overlap=0.9,
    )  # fmt: skip
    spread = rng.uniform(0.1, 0.7)
    for centre, radius in zip(centres, kept, strict=True):
        axes = radius * rng.uniform(0.75, 1.25, 3)
        value = float(rng.lognormal(0.0, spread))
        _splat_ellipsoid(
            density, centre, axes, rng.uniform(0, np.pi), voxel_xy_um, voxel_z_um,
            _solid(0.25 / radius), value,
        )  # fmt: skip
    contrast = rng.uniform(0.0, 0.5)
    if contrast > 0.02:
        density *= _texture(rng, grid, rng.uniform(0.2, 0.8), contrast, voxel_xy_um, voxel_z_um)
    return density


def _cells(
    rng: np.random.Generator,
    grid: Grid,
    voxel_xy_um: float,
    voxel_z_um: float,
    fill: float,
    size: float,
) -> NDArray[np.float32]:
    """Cells 8-20 µm: textured cytoplasm, a nucleus brighter or darker than it."""
    density = np.zeros(grid, np.float32)
    centres, kept = _packed_objects(
        rng, grid, voxel_xy_um, voxel_z_um, mean_radius_um=rng.uniform(4.0, 10.0) * size,
        packing=(0.05, 0.5 * fill), overlap=0.8,
    )  # fmt: skip
    nucleus_level = rng.choice([rng.uniform(1.5, 4.0), rng.uniform(0.0, 0.3)])
    cytoplasm = np.zeros(grid, np.float32)
    nuclei = np.zeros(grid, np.float32)
    for centre, radius in zip(centres, kept, strict=True):
        axes = radius * np.array([rng.uniform(0.4, 0.9), *rng.uniform(0.8, 1.2, 2)])
        angle = rng.uniform(0, np.pi)
        _splat_ellipsoid(
            cytoplasm, centre, axes, angle, voxel_xy_um, voxel_z_um, _solid(0.5 / radius), 1.0
        )
        inner = axes * rng.uniform(0.3, 0.5)
        offset = rng.normal(0, 0.1, 3) * axes
        _splat_ellipsoid(
            nuclei, centre + offset, inner, angle, voxel_xy_um, voxel_z_um,
            _solid(0.3 / inner.min()), 1.0,
        )  # fmt: skip
    np.clip(cytoplasm, 0.0, 1.0, out=cytoplasm)
    np.clip(nuclei, 0.0, 1.0, out=nuclei)
    cytoplasm *= _texture(rng, grid, rng.uniform(0.3, 1.5), 0.4, voxel_xy_um, voxel_z_um)
    # The nucleus replaces the cytoplasm where it sits.
    density += cytoplasm * (1.0 - nuclei) + np.float32(nucleus_level) * nuclei * (cytoplasm > 0)
    return density


def _filaments(
    rng: np.random.Generator,
    grid: Grid,
    voxel_xy_um: float,
    voxel_z_um: float,
    fill: float,
    size: float,
) -> NDArray[np.float32]:
    """Persistent random walks that branch: neurites, axons, cytoskeleton."""
    nz, ny, nx = grid
    side = ny * voxel_xy_um
    depth = (nz - 1) * voxel_z_um
    classes = [np.zeros(grid, np.float32) for _ in range(3)]
    widths_um = np.sort(rng.uniform(0.05, 0.6, 3)) * size
    volume_um3 = side * side * depth
    # 0.05-0.6 filaments started per 1000 um^3: 7-90 in the nuclei preset's field
    n_roots = max(1, int(volume_um3 / 1000 * (0.05 + 0.55 * fill * rng.uniform(0.5, 1.0))))
    step = 0.5 * voxel_xy_um
    persistence = rng.uniform(3.0, 30.0)  # µm over which the direction decorrelates
    tilt = rng.uniform(0.02, 0.35)  # how steeply filaments may run in z
    pending: list[tuple[NDArray[np.float64], NDArray[np.float64], int, float]] = []
    for _ in range(n_roots):
        start = np.array([rng.uniform(0, depth), *rng.uniform(0, side, 2)])
        direction = rng.normal(0, 1, 3) * (tilt, 1, 1)
        pending.append((start, direction / np.linalg.norm(direction), int(rng.integers(3)), 1.0))
    segments = 0
    max_segments = 5 * n_roots
    while pending and segments < max_segments:
        position, direction, cls, brightness = pending.pop()
        segments += 1
        length = rng.uniform(10.0, 60.0) * size
        n = int(length / step)
        kick = np.sqrt(2 * step / persistence)
        points = np.empty((n, 3))
        for i in range(n):
            direction = direction + rng.normal(0, kick, 3) * (tilt, 1, 1)
            direction /= np.linalg.norm(direction)
            position = position + step * direction
            if not 0 <= position[0] <= depth:  # reflect at the ends of the z range
                direction[0] = -direction[0]
                position[0] = np.clip(position[0], 0, depth)
            points[i] = position
            if rng.random() < step / 15.0 and len(pending) < max_segments:  # a thinner branch
                branch = direction + rng.normal(0, 0.8, 3) * (tilt, 1, 1)
                pending.append(
                    (position.copy(), branch / np.linalg.norm(branch), max(cls - 1, 0), brightness)
                )
        kz = np.clip(np.round(points[:, 0] / voxel_z_um).astype(np.int64), 0, nz - 1)
        ky = np.round(points[:, 1] / voxel_xy_um).astype(np.int64) % ny
        kx = np.round(points[:, 2] / voxel_xy_um).astype(np.int64) % nx
        np.add.at(classes[cls], (kz, ky, kx), np.float32(brightness * rng.uniform(0.5, 1.5)))
    density = np.zeros(grid, np.float32)
    for volume, width in zip(classes, widths_um, strict=True):
        if volume.any():
            # Blurring the traced line gives a tube of the class's width.
            density += _blur(volume, max(width / 2.355, 0.04), voxel_xy_um, voxel_z_um)
    return density


def _membranes(
    rng: np.random.Generator,
    grid: Grid,
    voxel_xy_um: float,
    voxel_z_um: float,
    fill: float,
    size: float,
) -> NDArray[np.float32]:
    """Thin shells: cell outlines packed like an epithelium, or scattered vesicles."""
    density = np.zeros(grid, np.float32)
    centres, kept = _packed_objects(
        rng, grid, voxel_xy_um, voxel_z_um, mean_radius_um=rng.uniform(1.0, 9.0) * size,
        packing=(0.05, 0.55 * fill), overlap=0.75,
    )  # fmt: skip
    thickness_um = rng.uniform(0.08, 0.3)
    for centre, radius in zip(centres, kept, strict=True):
        axes = radius * rng.uniform(0.75, 1.25, 3)
        _splat_ellipsoid(
            density, centre, axes, rng.uniform(0, np.pi), voxel_xy_um, voxel_z_um,
            _shell(thickness_um / radius), float(rng.lognormal(0.0, 0.3)),
        )  # fmt: skip
    return density


def _puncta(
    rng: np.random.Generator,
    grid: Grid,
    voxel_xy_um: float,
    voxel_z_um: float,
    fill: float,
    size: float,
) -> NDArray[np.float32]:
    """Spots of 0.1-0.5 µm: scattered, or clustered in cell-sized clouds."""
    nz, ny, nx = grid
    side = ny * voxel_xy_um
    depth = (nz - 1) * voxel_z_um
    volume_um3 = side * side * depth
    count = int(volume_um3 * (0.005 + 0.15 * fill) * rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        points = np.stack(
            [
                rng.uniform(0, depth, count),
                rng.uniform(0, side, count),
                rng.uniform(0, side, count),
            ],
            axis=1,
        )
    else:
        clusters = max(1, int(volume_um3 / 4000 * rng.uniform(0.5, 2.0)))
        centres = np.stack(
            [rng.uniform(0, depth, clusters), *rng.uniform(0, side, (2, clusters))], axis=1
        )
        spread_um = rng.uniform(1.0, 6.0) * size
        points = centres[rng.integers(clusters, size=count)] + rng.normal(0, spread_um, (count, 3))
        points[:, 0] = np.clip(points[:, 0], 0, depth)
    density = np.zeros(grid, np.float32)
    kz = np.clip(np.round(points[:, 0] / voxel_z_um).astype(np.int64), 0, nz - 1)
    ky = np.round(points[:, 1] / voxel_xy_um).astype(np.int64) % ny
    kx = np.round(points[:, 2] / voxel_xy_um).astype(np.int64) % nx
    np.add.at(density, (kz, ky, kx), rng.lognormal(0.0, 0.5, count).astype(np.float32))
    return _blur(density, rng.uniform(0.04, 0.2) * size, voxel_xy_um, voxel_z_um)


def _tissue(
    rng: np.random.Generator,
    grid: Grid,
    voxel_xy_um: float,
    voxel_z_um: float,
    fill: float,
    size: float,
) -> NDArray[np.float32]:
    """Smooth log-normal texture in a slab of tissue: no sharp objects at all."""
    nz = grid[0]
    grain_um = rng.uniform(0.3, 3.0) * size
    field = rng.standard_normal(grid, dtype=np.float32)
    field = _blur(field, grain_um, voxel_xy_um, voxel_z_um)
    field /= max(float(field.std()), 1e-12)
    # A finer grain on top of the coarse one: tissue has structure at both.
    fine = _blur(rng.standard_normal(grid, dtype=np.float32), 0.25, voxel_xy_um, voxel_z_um)
    fine /= max(float(fine.std()), 1e-12)
    density = np.exp(rng.uniform(0.3, 1.0) * field + rng.uniform(0.1, 0.5) * fine)
    # The tissue occupies a slab of the depth (all of it when fill is high).
    depth = (nz - 1) * voxel_z_um
    thickness = depth * (0.3 + 0.7 * max(fill, rng.uniform(0, 1)))
    middle = rng.uniform(thickness / 2, depth - thickness / 2) if thickness < depth else depth / 2
    density *= _slab_envelope(nz, voxel_z_um, middle - thickness / 2, middle + thickness / 2)[
        :, None, None
    ]
    return density


def _slab_envelope(nz: int, voxel_z_um: float, lo_um: float, hi_um: float) -> NDArray[np.float32]:
    """1 inside ``lo_um``-``hi_um`` (from 1 µm in), falling smoothly to 0 at its edges."""
    z = np.arange(nz) * voxel_z_um
    return _smoothstep(np.minimum(z - lo_um, hi_um - z) / 1.0).astype(np.float32)


_GENERATORS: dict[StructureFamily, _Generator] = {
    "nuclei": _nuclei,
    "cells": _cells,
    "filaments": _filaments,
    "membranes": _membranes,
    "puncta": _puncta,
    "tissue": _tissue,
}
