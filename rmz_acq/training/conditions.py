"""The imaging conditions a model is trained for (what a preset promises)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PRESET_CONDITIONS", "ImagingConditions"]


class ImagingConditions(BaseModel):
    """Sample, optics and sampling of a training set, stored with the weights."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample: Literal["beads", "nuclei"]
    emission_wavelength_nm: float
    numerical_aperture: float = 1.4
    immersion_index: float = 1.515
    pixel_size_um: float = 0.1
    depth_um: float = Field(gt=0)
    voxel_z_um: float = Field(gt=0)
    input_spacing_um: float = Field(gt=0, description="nominal distance between inputs")
    output_step_um: float = Field(gt=0)
    photon_flux_per_s: float = Field(gt=0, description="of the simulated config")
    background_photons_per_s: float = 500.0
    exposure_ms: float = 10.0


PRESET_CONDITIONS: dict[str, ImagingConditions] = {
    "beads": ImagingConditions(
        sample="beads",
        emission_wavelength_nm=615.0,
        depth_um=10.0,
        voxel_z_um=0.1,
        input_spacing_um=3.0,
        output_step_um=0.1,
        photon_flux_per_s=2e6,
    ),
    "nuclei": ImagingConditions(
        sample="nuclei",
        emission_wavelength_nm=519.0,
        depth_um=18.0,
        voxel_z_um=0.2,
        input_spacing_um=6.0,
        output_step_um=0.2,
        photon_flux_per_s=2e4,
    ),
}
# `widefield` is `nuclei`'s optics and sampling trained towards other structures
# (cells, tissue, membranes): the same conditions, so frames for one suit the other.
PRESET_CONDITIONS["widefield"] = PRESET_CONDITIONS["nuclei"]
