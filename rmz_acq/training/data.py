"""Training data: volumes to draw input frames and target planes from.

A `Volume` gives the image at any focus z, noisy (what the camera records,
the network's input) or clean (the target).  Simulated volumes come from the
simulator with sample, brightness, noise and optics varied within the
imaging conditions; stack volumes are a user's own OME-TIFF z-stacks, where
inputs and targets are both recorded planes.

`TrainingSampler` draws batches the way an adaptive scan presents frames: a
variable number of inputs M, spaced around the nominal input spacing with
jitter (sometimes anywhere), optionally shuffled, or (a chosen share) the
first M frames of a scan's coarse-to-fine plane order; each with its DPM to
a random output plane.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast, get_args

import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import ValidationError

from simulators.camera_model import CameraModel
from simulators.optics import Optics, PsfModel
from simulators.rendering import FocalStack, field_size_px
from simulators.samples import (
    STRUCTURE_FAMILIES,
    BeadSample,
    NucleiSample,
    SampleSpec,
    StructureFamily,
    StructureSample,
    make_sample,
)

from ..acquisition.plan import PlaneOrder, order_planes
from ..acquisition.policies import static_order
from ..errors import RmzError
from ..io import read_zstack
from ..linear_blend import LinearBlend, LinearFilter
from ..model.normalization import IntensityMethod, IntensityNormalization
from .conditions import ImagingConditions
from .settings import LONG_FROM, OpticsVariety, SampleVariety

__all__ = [
    "LONG_FROM",
    "SATURATED_SHARE",
    "Batch",
    "OpticsVariety",
    "SampleVariety",
    "SimulatedVolume",
    "StackVolume",
    "TrainingSampler",
    "Volume",
    "draw_optics_variety",
    "draw_psf_model",
    "draw_sample_variety",
    "jitter_normalization",
    "load_stack_volumes",
    "make_simulated_volume",
    "other_order",
    "saturation_ceiling",
]


class Volume(Protocol):
    """A specimen that can be imaged at any focus within ``z_range_um``."""

    @property
    def z_range_um(self) -> tuple[float, float]: ...

    @property
    def shape(self) -> tuple[int, int]: ...

    def frame(self, z_um: float, rng: np.random.Generator) -> NDArray[np.float32]:
        """What the camera records at ``z_um`` (ADU)."""
        ...

    def target(self, z_um: float) -> NDArray[np.float32]:
        """The best available image of the plane at ``z_um`` (ADU)."""
        ...

    def planes(self) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
        """Every plane the volume holds, ``(z_um, stack)`` (noise-free where simulated)."""
        ...


@dataclass
class SimulatedVolume:
    """A simulated sample: noise-free optics, then a camera, in ADU.

    ``axial_scale`` is how far the focus moves in the sample per micrometre
    of stage travel (below 1 when an oil objective images into water: the
    focal shift of a refractive-index mismatch); z here is the stage's, so
    frames, targets and the network's DPMs all speak in stage micrometres.
    ``haze_photons`` is a smooth out-of-field glow added to every frame
    (shape of the field of view), or ``None``.
    """

    stack: FocalStack
    photons_per_unit: float
    background_photons: float
    camera: CameraModel
    axial_scale: float = 1.0
    haze_photons: NDArray[np.float32] | None = None

    @property
    def z_range_um(self) -> tuple[float, float]:
        return self.stack.focus_range_um

    @property
    def shape(self) -> tuple[int, int]:
        return self.stack.fov_shape

    def _focus_um(self, z_um: float) -> float:
        lo, hi = self.stack.focus_range_um
        middle = (lo + hi) / 2
        return middle + (z_um - middle) * self.axial_scale

    def photons(self, z_um: float) -> NDArray[np.float32]:
        image = self.stack.image_at(self._focus_um(z_um)) * np.float32(self.photons_per_unit)
        image += np.float32(self.background_photons)
        if self.haze_photons is not None:
            image += self.haze_photons
        return image

    def frame(self, z_um: float, rng: np.random.Generator) -> NDArray[np.float32]:
        return self.camera.capture(self.photons(z_um), rng).astype(np.float32)

    def target(self, z_um: float) -> NDArray[np.float32]:
        return self.camera.expected_adu(self.photons(z_um)).astype(np.float32)

    def planes(self) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
        """The noise-free focal stack on its own grid: ``(z_um, stack)`` (stage z)."""
        focus = np.asarray(self.stack.focus_um, np.float64)
        if self.axial_scale == 1.0:
            return focus, self.stack.stack
        lo, hi = self.stack.focus_range_um
        middle = (lo + hi) / 2
        return middle + (focus - middle) / self.axial_scale, self.stack.stack


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


_T = TypeVar("_T", bound=str)


def _draw_one(seed: int, options: Sequence[_T], known: tuple[_T, ...], what: str, salt: int) -> _T:
    if not options or any(o not in known for o in options):
        raise RmzError(f"{what} {tuple(options)!r}: give one or more of {known}")
    return options[int(np.random.default_rng([seed, salt]).integers(len(options)))]


def draw_psf_model(seed: int, psf_models: Sequence[PsfModel]) -> PsfModel:
    """The PSF model of volume ``seed``: one of ``psf_models``, on a stream of its own."""
    return _draw_one(seed, psf_models, get_args(PsfModel), "psf_models", 104729)


def draw_sample_variety(seed: int, varieties: Sequence[SampleVariety]) -> SampleVariety:
    """The sample variety of volume ``seed``: one of ``varieties``, on a stream of its own."""
    return _draw_one(seed, varieties, get_args(SampleVariety), "sample_varieties", 1299709)


def draw_optics_variety(seed: int, varieties: Sequence[OpticsVariety]) -> OpticsVariety:
    """The optics variety of volume ``seed``: one of ``varieties``, on a stream of its own."""
    return _draw_one(seed, varieties, get_args(OpticsVariety), "optics_varieties", 7368787)


def _structure_sample(
    conditions: ImagingConditions, seed: int, families: Sequence[StructureFamily]
) -> StructureSample:
    """One to three of ``families`` mixed, on a stream of its own.

    A family named more than once is drawn that many times as often (as
    ``sample_varieties`` weighs a variety named twice); a field still mixes
    distinct families.
    """
    if not families or any(f not in STRUCTURE_FAMILIES for f in families):
        raise RmzError(
            f"structure families {tuple(families)!r}: give one or more of {STRUCTURE_FAMILIES}"
        )
    rng = np.random.default_rng([seed, 2750159])
    distinct = list(dict.fromkeys(families))
    n = min(int(rng.choice([1, 1, 2, 3])) if len(distinct) > 1 else 1, len(distinct))
    if len(distinct) == len(families):
        # The draw every preset before weighted families was trained on: kept, so
        # a documented command still simulates the same volumes.
        picked = rng.choice(distinct, size=n, replace=False)
    else:
        weights = np.array([families.count(f) for f in distinct], np.float64)
        picked = rng.choice(distinct, size=n, replace=False, p=weights / weights.sum())
    chosen = tuple(str(f) for f in picked)
    return StructureSample(
        seed=seed,
        depth_um=conditions.depth_um,
        voxel_z_um=conditions.voxel_z_um,
        families=cast(tuple[StructureFamily, ...], chosen),
        fill=float(rng.uniform(0.0, 1.0)),
        brightness_decades=float(rng.uniform(0.0, 2.0)),
        size_scale=_log_uniform(rng, 0.6, 1.6),
    )


def _thin(spec: StructureSample, seed: int, fraction: float) -> StructureSample:
    """``spec`` confined to a slab of 15-60 % of the depth, for ``fraction`` of the seeds.

    A real specimen is often thinner than the range scanned (a monolayer, a
    section, one neuron): planes above and below it hold only out-of-focus
    haze. On a stream of its own, so the rest of the volume is unchanged.
    """
    if not 0.0 <= fraction <= 1.0:
        raise RmzError(f"thin fraction {fraction!r}: give a share from 0 to 1")
    rng = np.random.default_rng([seed, 86028121])
    if rng.random() >= fraction:
        return spec
    thickness = spec.depth_um * rng.uniform(0.15, 0.6)
    lo = rng.uniform(0.0, spec.depth_um - thickness)
    return spec.model_copy(update={"slab_um": (float(lo), float(lo + thickness))})


def _haze(rng: np.random.Generator, shape: tuple[int, int], mean: float) -> NDArray[np.float32]:
    """A smooth positive glow over the field, of the given mean (photons)."""
    from scipy.ndimage import gaussian_filter

    # Varying over a sixth to half of the field: light from far outside it.
    sigma_px = rng.uniform(0.15, 0.5) * min(shape)
    field = gaussian_filter(rng.standard_normal(shape), sigma_px, mode="wrap")
    field /= max(float(field.std()), 1e-12)
    glow = np.exp(0.5 * np.clip(field, -4.0, 4.0))
    return (glow * (mean / glow.mean())).astype(np.float32)


def _wide_sample(spec: SampleSpec, seed: int) -> SampleSpec:
    """``spec`` with the sample redrawn from the wide variety, on a stream of its own."""
    rng = np.random.default_rng([seed, 15485863])
    if isinstance(spec, BeadSample):
        return spec.model_copy(
            update={
                "density_per_1000_um3": _log_uniform(rng, 1.0, 20.0),
                "brightness_spread": rng.uniform(0.0, 0.6),
            }
        )
    lo = rng.uniform(1.5, 3.0)
    hi = min(lo + rng.uniform(1.0, 4.0), 7.0)
    # Count density from a packing fraction, so large nuclei are fewer.
    mean_volume_um3 = np.pi / 6 * (hi**4 - lo**4) / (4 * (hi - lo))
    packing = rng.uniform(0.03, 0.25)
    return spec.model_copy(
        update={
            "diameter_range_um": (lo, hi),
            "nuclei_per_1000_um3": float(np.clip(1000 * packing / mean_volume_um3, 1.0, 200.0)),
            "band_half_width_um": _log_uniform(rng, 8.0, 45.0),
            "brightness_spread": rng.uniform(0.2, 0.7),
            "diffuse_background": rng.uniform(0.0, 0.12),
            "chromatin_contrast": rng.uniform(0.0, 0.6),
            "chromatin_grain_um": rng.uniform(0.2, 0.8),
        }
    )


def make_simulated_volume(
    conditions: ImagingConditions,
    seed: int,
    fov_px: int = 256,
    psf_models: Sequence[PsfModel] = ("scalar",),
    sample_varieties: Sequence[SampleVariety] = ("standard",),
    sample_settings: Mapping[str, Any] | None = None,
    structure_families: Sequence[StructureFamily] = STRUCTURE_FAMILIES,
    optics_varieties: Sequence[OpticsVariety] = ("ideal",),
    thin_fraction: float = 0.0,
) -> SimulatedVolume:
    """One random specimen within ``conditions``, fully determined by ``seed``.

    Varied: the sample (layout, density, brightness spread), optics within
    +-0.03 NA and +-10 nm, photon flux (x0.3-3), background (x0.2-3) and the
    camera (QE, gain, offset, read noise).  The PSF model and the sample
    variety (`SampleVariety`) are drawn from ``psf_models`` and
    ``sample_varieties`` on streams of their own, so a volume's optics, noise
    and camera are the same whichever are allowed.  ``sample_settings``
    overrides fields of the drawn sample spec (`BeadSample`, `NucleiSample`),
    e.g. ``{"diameter_range_um": (4, 7)}``, to score a model on one kind of
    structure; they are validated like the spec itself.  ``structure_families``
    are those the ``structures`` variety may draw (leave one out to judge a
    model on it); ``optics_varieties`` (`OpticsVariety`) likewise.
    ``thin_fraction`` of the ``structures`` volumes hold their specimen in a
    slab of 15-60 % of the depth, empty above and below.
    """
    psf_model = draw_psf_model(seed, psf_models)
    variety = draw_sample_variety(seed, sample_varieties)
    optics_variety = draw_optics_variety(seed, optics_varieties)
    rng = np.random.default_rng([seed, 7919])
    spec: SampleSpec
    if conditions.sample == "beads":
        spec = BeadSample(
            seed=seed,
            depth_um=conditions.depth_um,
            voxel_z_um=conditions.voxel_z_um,
            density_per_1000_um3=rng.uniform(2.0, 8.0),
            brightness_spread=rng.uniform(0.0, 0.3),
        )
    else:
        spec = NucleiSample(
            seed=seed,
            depth_um=conditions.depth_um,
            voxel_z_um=conditions.voxel_z_um,
            nuclei_per_1000_um3=rng.uniform(3.0, 9.0),
            brightness_spread=rng.uniform(0.2, 0.5),
            diffuse_background=rng.uniform(0.0, 0.03),
        )
    if variety == "wide":
        spec = _wide_sample(spec, seed)
    elif variety == "structures":
        spec = _thin(_structure_sample(conditions, seed, structure_families), seed, thin_fraction)
    if sample_settings:
        try:
            spec = type(spec).model_validate({**spec.model_dump(), **sample_settings})
        except ValidationError as exc:
            raise RmzError(f"sample settings {dict(sample_settings)!r}: {exc}") from None
    optics = Optics(
        numerical_aperture=float(
            np.clip(
                conditions.numerical_aperture + rng.uniform(-0.03, 0.03),
                0.1,
                conditions.immersion_index - 0.02,
            )
        ),
        emission_wavelength_nm=conditions.emission_wavelength_nm + rng.uniform(-10, 10),
        immersion_index=conditions.immersion_index,
        pixel_size_um=conditions.pixel_size_um,
        psf_model=psf_model,
    )
    # The realistic optics draw on a stream of their own, so the rest of a
    # volume is the same with or without them.
    real = np.random.default_rng([seed, 5381])
    if optics_variety == "realistic":
        optics = optics.model_copy(update={"spherical_aberration_waves": real.uniform(-0.3, 0.3)})
    field = field_size_px(optics, fov_px, conditions.depth_um, periodic=True)
    sample = make_sample(spec, field, optics.pixel_size_um)
    stack = FocalStack(sample, optics, (fov_px, fov_px), (0.0, conditions.depth_um))
    exposure_s = conditions.exposure_ms / 1000.0
    camera = CameraModel(
        quantum_efficiency=rng.uniform(0.6, 0.9),
        read_noise_e=rng.uniform(1.0, 3.0),
        offset_adu=rng.uniform(90.0, 110.0),
        gain_adu_per_e=rng.uniform(0.3, 1.0),
    )
    volume = SimulatedVolume(
        stack=stack,
        photons_per_unit=conditions.photon_flux_per_s * exposure_s * _log_uniform(rng, 0.3, 3.0),
        background_photons=conditions.background_photons_per_s
        * exposure_s
        * _log_uniform(rng, 0.2, 3.0),
        camera=camera,
    )
    if optics_variety == "realistic":
        volume.photons_per_unit *= _log_uniform(real, 0.33, 3.3)
        volume.axial_scale = real.uniform(0.8, 1.0)
        signal = float(stack.stack.mean()) * volume.photons_per_unit
        if real.random() < 0.7:
            volume.haze_photons = _haze(real, stack.fov_shape, signal * real.uniform(0.05, 1.0))
    return volume


@dataclass
class StackVolume:
    """A recorded z-stack: every plane is both a possible input and a target."""

    data: NDArray[np.float32]
    z_um: NDArray[np.float64]

    @property
    def z_range_um(self) -> tuple[float, float]:
        return float(self.z_um[0]), float(self.z_um[-1])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.data.shape[1]), int(self.data.shape[2]))

    def _nearest(self, z_um: float) -> int:
        return int(np.argmin(np.abs(self.z_um - z_um)))

    def frame(self, z_um: float, rng: np.random.Generator) -> NDArray[np.float32]:
        return self.data[self._nearest(z_um)]

    def target(self, z_um: float) -> NDArray[np.float32]:
        return self.data[self._nearest(z_um)]

    def snap_z(self, z_um: float) -> float:
        """Recorded planes are the only z a stack can offer."""
        return float(self.z_um[self._nearest(z_um)])

    def planes(self) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
        """The recorded stack: ``(z_um, stack)``."""
        return self.z_um, self.data


def load_stack_volumes(folder: str | Path) -> list[StackVolume]:
    """Every OME-TIFF z-stack in ``folder`` (z from ``PositionZ`` or ``PhysicalSizeZ``)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.tif")) + sorted(folder.glob("*.tiff"))
    if not files:
        raise RmzError(f"no .tif z-stacks in {str(folder)!r}")
    volumes = []
    for path in files:
        stack = read_zstack(path)
        if stack.z_um is not None:
            z = stack.z_um
        elif stack.z_step_um is not None:
            z = (np.arange(stack.data.shape[0]) * stack.z_step_um).astype(np.float64)
        else:
            raise RmzError(
                f"{path.name} has no z positions (OME PositionZ) or z step (PhysicalSizeZ); "
                "write it as OME-TIFF with its voxel size"
            )
        order = np.argsort(z)
        volumes.append(StackVolume(stack.data[order].astype(np.float32), z[order]))
    return volumes


@dataclass(frozen=True)
class Batch:
    """``frames (N, M, c, c)``, ``dpm_um (N, M)``, ``targets (N, 1, c, c)``, normalised."""

    frames: torch.Tensor
    dpm_um: torch.Tensor
    targets: torch.Tensor
    pairs: bool = False  # entries 2k and 2k + 1: the same frames and target, two orders
    # With a linear blend (`TrainingSampler.blend`): each entry's filter estimate of its
    # target (N, 1, c, c) and the network's share of the blend there (N,), 1 where the
    # filter does not cover the target
    prior: torch.Tensor | None = None
    share: torch.Tensor | None = None


# The share of a clipped sequence's input pixels at the ceiling: drawn log-uniformly
# (a few hot spots to a soma clipped over a wide area, as the flowdec neuron's 0.5 %)
SATURATED_SHARE = (1e-4, 2e-2)


def saturation_ceiling(frames: Sequence[NDArray[np.floating]], rng: np.random.Generator) -> float:
    """A camera ceiling that a random share (`SATURATED_SHARE`) of ``frames``' pixels reach."""
    lo, hi = np.log(SATURATED_SHARE)
    share = float(np.exp(rng.uniform(lo, hi)))
    pixels = np.concatenate([np.ravel(f) for f in frames])
    return float(np.quantile(pixels, 1.0 - share))


def jitter_normalization(
    norm: IntensityNormalization, factor: float, rng: np.random.Generator
) -> IntensityNormalization:
    """``norm`` as another first frame of the same specimen might have set it.

    The scale is multiplied by a factor drawn log-uniformly from
    ``[1 / factor, factor]`` and the shift moved by up to ``(factor - 1) / 2``
    scales either way.  Across the three frames of one held-out specimen the
    energy statistics differ by up to 2.8x in scale and 1.9 scales in shift
    (a bright cell whose defocused light leaves the field); a network that
    only ever saw the statistics of the frame in front of it learnt to rely on
    them, and its volume then depended on which frame came first.
    """
    log_factor = float(np.log(factor))
    scale = norm.scale * float(np.exp(rng.uniform(-log_factor, log_factor)))
    shift = norm.shift + norm.scale * float(rng.uniform(-1.0, 1.0)) * (factor - 1) / 2
    return IntensityNormalization(shift=shift, scale=scale, compression=norm.compression)


@dataclass
class TrainingSampler:
    """Random training batches from a list of volumes.

    ``intensity`` is how frames are normalised (the first frame of each
    sequence sets the statistics, as in the session); ``input_plane_fraction``
    is the share of targets drawn at the z of one of the inputs;
    ``between_fraction`` the share of the others drawn between two
    neighbouring inputs (`between_z`), where interpolation is strongest;
    ``intensity_jitter`` (1 = none) moves those statistics at random for half
    the sequences, as a different first frame would (`jitter_normalization`);
    ``long_share`` is the share of sequences longer than `LONG_FROM` frames
    (None: every M above 4 as likely as M = 4; see `m_weights`);
    ``stack_statistics_fraction`` is the share of sequences normalised by all
    their frames together (`IntensityNormalization.from_frames`), as a z-stack
    is reconstructed; ``saturated_fraction`` the share of sequences whose
    frames and targets are clipped at a ceiling some of their input pixels
    reach (`saturation_ceiling`), as an overexposed camera records them; with
    ``order_pairs`` every target is followed by the
    same frames in another order (`Batch.pairs`), for a loss that asks both
    orders for the same plane.  With ``blend``, every entry also carries the
    blend's filter estimate of its target from the same normalised frames and
    the network's share there (the blend's weight where the filter covers
    the target, 1 elsewhere), for a loss taken on the blend (`Batch.prior`).
    """

    volumes: list[SimulatedVolume] | list[StackVolume]
    input_spacing_um: float
    crop_px: int = 128
    items: int = 4
    targets_per_item: int = 2
    max_inputs: int = 4
    long_share: float | None = None
    shuffle_probability: float = 0.5
    focus_fraction: float = 0.0
    scan_order_fraction: float = 0.0
    scan_policies: tuple[str, ...] = ("bisection",)
    intensity: IntensityMethod = "triangle"
    input_plane_fraction: float = 0.0
    between_fraction: float = 0.0
    intensity_jitter: float = 1.0
    stack_statistics_fraction: float = 0.0
    saturated_fraction: float = 0.0
    order_pairs: bool = False
    blend: LinearBlend | None = None

    def __post_init__(self) -> None:
        if self.max_inputs < 1:
            raise RmzError(f"max_inputs must be 1 or more, not {self.max_inputs}")
        if self.long_share is not None and not 0 <= self.long_share < 1:
            raise RmzError(f"long_share must be at least 0 and below 1, not {self.long_share}")
        if not self.intensity_jitter >= 1:
            raise RmzError(
                f"intensity_jitter must be 1 (none) or more, not {self.intensity_jitter}"
            )

    @property
    def m_weights(self) -> NDArray[np.float64]:
        """Probability of each M = 1 .. max_inputs.

        M = 1-4 weigh 0.1, 0.25, 0.4, 0.25 (what the presets were first
        trained on); each M above 4 weighs as much as M = 4.  With
        ``long_share``, the M above `LONG_FROM` share that much of the
        draws equally, and M = 1 .. `LONG_FROM` keep their weights of
        ``max_inputs = LONG_FROM`` in the rest: long scans are taught
        without thinning the short sequences that most volumes are made from.
        """
        weights = np.asarray([0.1, 0.25, 0.4, 0.25] + [0.25] * max(0, self.max_inputs - 4))
        weights = weights[: self.max_inputs]
        if self.long_share is None or self.max_inputs <= LONG_FROM:
            return weights / weights.sum()
        short, long = weights[:LONG_FROM], weights[LONG_FROM:]
        return np.concatenate(
            [(1 - self.long_share) * short / short.sum(), self.long_share * long / long.sum()]
        )

    def in_focus_z(
        self,
        volume: SimulatedVolume | StackVolume,
        crop: tuple[slice, slice],
        rng: np.random.Generator,
    ) -> float:
        """A target z where the crop holds something in focus.

        Planes are drawn with probability growing with the square of their
        peak contrast (maximum minus mean) inside the crop, so sparse objects
        such as beads are seen at their sharpest far more often than a
        uniform draw over the depth would show them.
        """
        z, stack = volume.planes()
        patch = stack[:, crop[0], crop[1]]
        contrast = patch.max(axis=(1, 2)) - patch.mean(axis=(1, 2))
        weight = (contrast - contrast.min()).astype(np.float64) ** 2
        if not weight.sum() > 0:
            return float(rng.uniform(*volume.z_range_um))
        j = int(rng.choice(len(z), p=weight / weight.sum()))
        return float(np.clip(z[j], *volume.z_range_um))

    def input_planes(
        self, rng: np.random.Generator, m: int, z_range: tuple[float, float]
    ) -> list[float]:
        """M input positions: a jittered regular grid, or (1 in 4) anywhere.

        The grid is about the nominal spacing apart; above four frames, where
        that grid would not fit in ``z_range``, it is made denser, as the
        later frames of an adaptive scan fill in between the first ones.
        """
        if self.scan_order_fraction > 0 and rng.random() < self.scan_order_fraction:
            return self.scan_planes(rng, m, z_range)
        lo, hi = z_range
        if rng.random() < 0.25:
            z = rng.uniform(lo, hi, m)
        else:
            spacing = self.input_spacing_um * rng.uniform(0.8, 1.2)
            if m > 4 and spacing * (m - 1) > hi - lo:
                spacing = (hi - lo) / (m - 1) * rng.uniform(0.5, 1.0)
            span = spacing * (m - 1)
            start = rng.uniform(lo, max(lo, hi - span))
            z = start + spacing * np.arange(m) + rng.normal(0, 0.1 * spacing, m)
        z = np.clip(z, lo, hi)
        if rng.random() < self.shuffle_probability:
            rng.shuffle(z)
        return [float(v) for v in z]

    def scan_planes(
        self, rng: np.random.Generator, m: int, z_range: tuple[float, float]
    ) -> list[float]:
        """The first M frames of an adaptive scan, in the order it takes them.

        Candidates every 0.2-0.5 nominal spacings (closer where M would not
        fit) over 60-100 % of ``z_range``, taken in the order of one of
        ``scan_policies`` (`rmz_acq.acquisition.policies.static_order`;
        ``("bisection",)`` alone: bisection, one in five centre-out, as
        before policies existed); the first M, with a small positioning
        error.  Scans present frames this way,
        neither sorted by z nor at random; a network trained only on those
        two gave 1.1-1.3 dB less from five or more frames in this order
        than from the same frames sorted (README, Benchmarks).
        """
        lo, hi = z_range
        span = (hi - lo) * rng.uniform(0.6, 1.0)
        start = rng.uniform(lo, hi - span)
        step = self.input_spacing_um * rng.uniform(0.2, 0.5)
        grid = np.linspace(start, start + span, max(m, int(span / step) + 1))
        if self.scan_policies == ("bisection",):
            order = PlaneOrder.CENTRE_OUT if rng.random() < 0.2 else PlaneOrder.BISECTION
            z = np.asarray(order_planes(grid.tolist(), order)[:m])
        else:
            name = self.scan_policies[int(rng.integers(len(self.scan_policies)))]
            candidates = order_planes(grid.tolist(), PlaneOrder.BISECTION)
            z = np.asarray(static_order(name, candidates, m))
        z = np.clip(z + rng.normal(0, 0.02 * self.input_spacing_um, m), lo, hi)
        return [float(v) for v in z]

    def _target_z(
        self,
        volume: SimulatedVolume | StackVolume,
        crop: tuple[slice, slice],
        z_in: list[float],
        rng: np.random.Generator,
        near: float | None = None,
    ) -> float:
        """A target plane: near ``near``, in focus (``focus_fraction``) or anywhere.

        On a recorded stack, not one of the inputs' planes: that target
        would be the input frame itself, noise and all, and teach the
        network to copy its noise.
        """
        if near is not None:
            z_out = near
        elif rng.random() < self.focus_fraction:
            z_out = self.in_focus_z(volume, crop, rng)
        else:
            z_out = float(rng.uniform(*volume.z_range_um))
        if not isinstance(volume, StackVolume):
            return z_out
        free = volume.z_um[~np.isin(volume.z_um, z_in)]
        if not len(free):  # every plane is an input
            return volume.snap_z(z_out)
        return float(free[np.argmin(np.abs(free - z_out))])

    def sample(self, rng: np.random.Generator) -> Batch:
        m = int(rng.choice(np.arange(1, self.max_inputs + 1), p=self.m_weights))
        c = self.crop_px
        frames, dpms, targets = [], [], []
        priors: list[NDArray[np.float32]] = []
        shares: list[float] = []
        for _ in range(self.items):
            volume = self.volumes[int(rng.integers(len(self.volumes)))]
            z_in = self.input_planes(rng, m, volume.z_range_um)
            if isinstance(volume, StackVolume):
                z_in = [volume.snap_z(z) for z in z_in]
            raw = [volume.frame(z, rng) for z in z_in]
            ceiling = np.inf
            # drawn only when asked for, so that runs without it keep their batches
            if self.saturated_fraction > 0 and rng.random() < self.saturated_fraction:
                ceiling = saturation_ceiling(raw, rng)
                raw = [np.minimum(f, ceiling) for f in raw]
            if rng.random() < self.stack_statistics_fraction:
                norm = IntensityNormalization.from_frames(raw, method=self.intensity)
            else:
                norm = IntensityNormalization.from_frame(raw[0], method=self.intensity)
            if self.intensity_jitter > 1 and rng.random() < 0.5:
                norm = jitter_normalization(norm, self.intensity_jitter, rng)
            height, width = volume.shape
            y0 = int(rng.integers(0, height - c + 1))
            x0 = int(rng.integers(0, width - c + 1))
            crop = (slice(y0, y0 + c), slice(x0, x0 + c))
            inputs = np.stack([norm.apply(f[crop]) for f in raw])
            linear = None
            if self.blend is not None:
                lo, hi = volume.z_range_um
                linear = LinearFilter(self.blend, 0.5 * (lo + hi))
                for frame, z in zip(inputs, z_in, strict=True):
                    linear.add(frame, z)
            for _ in range(self.targets_per_item):
                if rng.random() < self.input_plane_fraction:
                    # Where an input was taken: the output there must keep
                    # (and clean) what that frame saw.
                    z_out = z_in[int(rng.integers(m))]
                # drawn only when asked for, so that runs without it keep their batches
                elif (
                    self.between_fraction > 0
                    and len(set(z_in)) > 1
                    and rng.random() < self.between_fraction
                ):
                    z_out = between_z(z_in, rng)
                    if isinstance(volume, StackVolume):  # a free plane of the stack
                        z_out = self._target_z(volume, crop, z_in, rng, near=z_out)
                else:
                    z_out = self._target_z(volume, crop, z_in, rng)
                dpm = [z_out - z for z in z_in]
                target = norm.apply(np.minimum(volume.target(z_out)[crop], ceiling))[None]
                frames.append(inputs)
                dpms.append(dpm)
                targets.append(target)
                if linear is not None:
                    prior, covered = _filter_estimate(linear, z_out, target.shape)
                    priors.append(prior)
                    shares.append(linear.blend.weight if covered else 1.0)
                if self.order_pairs:
                    order = other_order(m, rng)
                    frames.append(inputs[order])
                    dpms.append([dpm[i] for i in order])
                    targets.append(target)
                    if linear is not None:  # the filter does not depend on the order
                        priors.append(priors[-1])
                        shares.append(shares[-1])
        return Batch(
            frames=torch.from_numpy(np.stack(frames)),
            dpm_um=torch.tensor(dpms, dtype=torch.float32),
            targets=torch.from_numpy(np.stack(targets)),
            pairs=self.order_pairs,
            prior=torch.from_numpy(np.stack(priors)) if priors else None,
            share=torch.tensor(shares, dtype=torch.float32) if shares else None,
        )


def _filter_estimate(
    linear: LinearFilter, z_um: float, shape: tuple[int, ...]
) -> tuple[NDArray[np.float32], bool]:
    """The filter's estimate of the plane at ``z_um``, or zeros where it does not cover it."""
    if not linear.covers([z_um])[0]:
        return np.zeros(shape, np.float32), False
    return linear.planes([z_um])[0][None].astype(np.float32), True


def between_z(z_in: Sequence[float], rng: np.random.Generator) -> float:
    """A z strictly inside a random gap between two neighbouring inputs (two or more).

    Between the frames a target is where linear interpolation of the frames
    is a strong estimate (a slowly varying specimen) and a network is
    measured against it; beyond the outermost frames interpolation can only
    copy the nearest one.
    """
    z = np.unique(np.asarray(z_in, np.float64))
    if len(z) < 2:
        raise RmzError(f"a target between inputs needs two different input z, got {list(z_in)}")
    j = int(rng.integers(len(z) - 1))
    return float(rng.uniform(z[j], z[j + 1]))


def other_order(m: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """A random order of ``m`` frames other than the given one (for m above 1)."""
    order = rng.permutation(m)
    if m > 1 and np.array_equal(order, np.arange(m)):
        order = order[::-1].copy()
    return order
