"""What decides a training run, without importing torch (the command line reads it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from simulators.optics import PsfModel
from simulators.samples import STRUCTURE_FAMILIES, StructureFamily

from ..model.normalization import IntensityMethod

__all__ = ["LONG_FROM", "OpticsVariety", "SampleVariety", "TrainingSettings"]

SampleVariety = Literal["standard", "wide", "structures"]
"""How far simulated samples vary: ``standard`` is the preset's stated sample
(and what its model card is scored on); ``wide`` also varies what the
conditions leave open: nuclei 1.5-7 µm across, packed 3-25 % of the tissue,
in a band 16-90 µm wide (up to filling the field), with chromatin texture
and more diffuse tissue; beads 1-20 per 1000 µm³ with a larger brightness
spread.  ``structures`` draws one to three of the structure families of
`simulators.structures` (from those allowed), mixed in one field with
brightnesses up to two decades apart."""

OpticsVariety = Literal["ideal", "realistic"]
"""``ideal``: the preset's optics (NA within 0.03, wavelength within 10 nm,
flux x0.3-3, background x0.2-3).  ``realistic`` adds what real microscopes
do: primary spherical aberration up to 0.3 waves RMS either sign (imaging
into a sample of another refractive index), a focal shift of 0.8-1.0 µm of
focus per µm of stage, a smooth haze of out-of-field light up to the
sample's own mean brightness, and flux x0.1-10."""

# Sequences longer than this are "long" for ``long_share``: the presets were
# trained on M <= 9 until scans on denser candidates asked for more
# (docs/benchmarks.md, "Trained on up to seventeen frames").
LONG_FROM = 9


class TrainingSettings(BaseModel):
    """Everything that decides a training run (stored in the checkpoint)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(3000, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    batch_items: int = Field(4, ge=1)
    targets_per_item: int = Field(2, ge=1)
    crop_px: int = Field(128, ge=32)
    n_volumes: int = Field(24, ge=1)
    fov_px: int = Field(256, ge=64)
    base_channels: int = Field(8, ge=2)
    depth: int = Field(4, ge=1, le=7)
    dpm_scale_um: float = Field(5.0, gt=0)
    foreground_weight: float = Field(0.0, ge=0)
    focus_fraction: float = Field(0.0, ge=0, le=1)
    max_inputs: int = Field(4, ge=1, le=32, description="largest M drawn for a sequence")
    long_share: float | None = Field(
        None,
        ge=0,
        lt=1,
        description=f"share of sequences longer than {LONG_FROM} frames (None: each M above 4 "
        "as likely as M = 4)",
    )
    scan_order_fraction: float = Field(
        0.0, ge=0, le=1, description="share of sequences in an adaptive scan's plane order"
    )
    shuffle_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="share of the gridded sequences (not in a scan's order) pushed in a random "
        "order, the rest by z, lowest first; those drawn anywhere come in random order",
    )
    scan_policies: tuple[str, ...] = Field(
        ("bisection",),
        min_length=1,
        description="next-plane policies whose orders those sequences follow (static ones)",
    )
    ssim_weight: float = Field(
        1.0,
        ge=0,
        description="weight of (1 - MS-SSIM) beside 3 BerHu (eq. 7's beta, 1 in the paper); "
        "0 on noisy targets, whose noise MS-SSIM would teach the network to imitate",
    )
    adversarial_weight: float = Field(0.0, ge=0, description="gamma of eq. 7; paper 0.5")
    psf_models: tuple[PsfModel, ...] = Field(
        ("scalar",), min_length=1, description="PSF models simulated volumes are drawn from"
    )
    sample_varieties: tuple[SampleVariety, ...] = Field(
        ("standard",), min_length=1, description="sample varieties simulated volumes are drawn from"
    )
    structure_families: tuple[StructureFamily, ...] = Field(
        STRUCTURE_FAMILIES,
        min_length=1,
        description="families the 'structures' sample variety draws from",
    )
    optics_varieties: tuple[OpticsVariety, ...] = Field(
        ("ideal",), min_length=1, description="optics varieties simulated volumes are drawn from"
    )
    thin_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of 'structures' volumes whose specimen fills only a slab of "
        "15-60 % of the depth, empty above and below (a monolayer, a section)",
    )
    intensity: IntensityMethod = Field(
        "energy", description="how frames are normalised (stored with the weights)"
    )
    input_plane_fraction: float = Field(
        0.1, ge=0, le=1, description="share of targets at the z of an input frame"
    )
    between_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of the other targets drawn between two neighbouring input frames "
        "(sequences of 2+ frames), where linear interpolation is hardest to beat",
    )
    intensity_jitter: float = Field(
        1.0,
        ge=1,
        description="training only: half the sequences' intensity statistics moved at random "
        "(scale by up to this factor either way, shift by up to (factor - 1) / 2 scales), "
        "as a different first frame would set them; 1 = none",
    )
    stack_statistics_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="training only: share of sequences normalised by all their frames' "
        "statistics together, as a z-stack is reconstructed, instead of the first frame's",
    )
    saturated_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="training only: share of sequences whose frames and targets are clipped "
        "at a camera ceiling that 0.01-2 % of the input pixels reach, as an overexposed "
        "real stack is (`saturation_ceiling`)",
    )
    order_consistency: float = Field(
        0.0,
        ge=0,
        description="training only: every sequence is also pushed in another order and the "
        "two predictions' mean absolute difference, times this weight, joins the loss "
        "(0 = off; the batch then holds half as many distinct sequences twice)",
    )
    loss_knee: float | None = Field(
        None,
        ge=0,
        description="training only: the loss is taken on intensities recompressed as "
        "k * asinh(v / k) with this knee k instead of the network's own (3 for 'energy'); "
        "0 = the linear scale PSNR is scored on, None = the network's scale",
    )
    lowpass_weight: float = Field(
        0.0,
        ge=0,
        description="training only: this weight times the mean squared difference of "
        "prediction and target averaged over 8 px blocks (`losses.lowpass_error`) joins "
        "the loss (0 = off)",
    )
    through_blend: float | None = Field(
        None,
        gt=0,
        le=1,
        description="training only: where the initial weights' linear blend covers a target "
        "(between and around the frames, not at one), the loss is taken on this share of "
        "the prediction plus the rest of the blend's filter estimate from the same frames, "
        "so the network learns what the filter misses (None = the prediction alone)",
    )
    precision: Literal["float32", "bfloat16"] = Field(
        "float32", description="compute dtype of the forward pass (bfloat16: autocast)"
    )
    seed: int = 0
    checkpoint_every: int = Field(250, ge=1)
    validate_every: int = Field(250, ge=1)
