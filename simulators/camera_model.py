"""Digital image formation: photons to camera counts.

The chain is a template method with small hooks, so a camera with another
noise character (EM gain, sCMOS per-pixel read noise) overrides one hook:

    expected photons -> `detect` (QE, Poisson shot noise, full well)
                     -> `read_out` (gain, offset, Gaussian read noise)
                     -> `digitise` (round, clip to the bit depth)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CameraModel"]


class CameraModel(BaseModel):
    """A scientific camera: sCMOS-like defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quantum_efficiency: float = Field(0.8, gt=0.0, le=1.0)
    read_noise_e: float = Field(1.6, ge=0.0, le=1000.0)
    offset_adu: float = Field(100.0, ge=0.0)
    gain_adu_per_e: float = Field(0.5, gt=0.0, le=1000.0)
    full_well_e: float = Field(30000.0, gt=0.0)
    bit_depth: Literal[12, 16] = 16

    @property
    def max_adu(self) -> int:
        return 2**self.bit_depth - 1

    def expected_adu(self, photons: NDArray[np.floating]) -> NDArray[np.float64]:
        """Mean counts for an expected photon image (before clipping)."""
        electrons = np.minimum(self.quantum_efficiency * photons, self.full_well_e)
        return electrons * self.gain_adu_per_e + self.offset_adu

    def expected_variance_adu2(self, photons: NDArray[np.floating]) -> NDArray[np.float64]:
        """Variance of the counts (shot + read noise, ignoring quantisation)."""
        electrons = self.quantum_efficiency * np.asarray(photons, np.float64)
        return (electrons + self.read_noise_e**2) * self.gain_adu_per_e**2

    def capture(
        self, photons: NDArray[np.floating], rng: np.random.Generator
    ) -> NDArray[np.uint16]:
        """One noisy frame for an expected-photon image."""
        electrons = self.detect(np.asarray(photons, np.float64), rng)
        return self.digitise(self.read_out(electrons, rng))

    # hooks ------------------------------------------------------------------

    def detect(self, photons: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.float64]:
        """Photo-electrons: QE, Poisson shot noise, full-well saturation."""
        electrons = rng.poisson(self.quantum_efficiency * np.clip(photons, 0.0, None))
        return np.minimum(electrons.astype(np.float64), self.full_well_e)

    def read_out(
        self, electrons: NDArray[np.float64], rng: np.random.Generator
    ) -> NDArray[np.float64]:
        """Analogue counts: gain, offset and Gaussian read noise."""
        noise = rng.normal(0.0, self.read_noise_e, electrons.shape)
        return (electrons + noise) * self.gain_adu_per_e + self.offset_adu

    def digitise(self, analogue: NDArray[np.float64]) -> NDArray[np.uint16]:
        """Round and clip to the converter's range."""
        return np.clip(np.rint(analogue), 0, self.max_adu).astype(np.uint16)
