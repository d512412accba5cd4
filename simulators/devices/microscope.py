"""The sample and the optics, as a Micro-Manager generic device."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import ValidationError
from pymmcore_plus.experimental.unicore import GenericDevice

from ..bench import Bench, OpticalSetup, bench_for
from ..optics import Optics, PsfModel
from ..samples import (
    STRUCTURE_FAMILIES,
    BeadSample,
    NucleiSample,
    SampleSpec,
    StructureSample,
    TiffSample,
)
from ._properties import Setting, register_settings

__all__ = ["SimulatedMicroscope"]

SETTINGS = (
    Setting("Bench", str, "default", doc="name shared by the devices of one microscope"),
    Setting("SampleKind", str, "beads", allowed=("beads", "nuclei", "structures", "tiff")),
    Setting("SampleSeed", int, 0, limits=(0, 2**31 - 1)),
    Setting("SampleDepthUm", float, 10.0, limits=(0.5, 200.0)),
    Setting("SampleVoxelZUm", float, 0.1, limits=(0.01, 5.0)),
    Setting("BeadDensityPer1000um3", float, 2.0, limits=(0.0, 1000.0)),
    Setting("NucleiPer1000um3", float, 6.0, limits=(0.0, 200.0)),
    Setting(
        "SampleFamilies",
        str,
        "nuclei",
        # not commas: a .cfg line is comma-separated
        doc="SampleKind structures: families joined by '+', of " + ", ".join(STRUCTURE_FAMILIES),
    ),
    Setting(
        "StructureFill",
        float,
        0.5,
        limits=(0.0, 1.0),
        doc="SampleKind structures: 0 sparse objects, 1 the field packed full",
    ),
    Setting(
        "StructureBrightnessDecades",
        float,
        1.0,
        limits=(0.0, 3.0),
        doc="SampleKind structures: the objects' brightnesses span up to this many decades",
    ),
    Setting("SampleTiffPath", str, "", doc="path of a 3D (z, y, x) TIFF"),
    Setting("SampleTiffVoxelXYUm", float, 0.1, limits=(0.001, 100.0)),
    Setting("SampleTiffVoxelZUm", float, 0.2, limits=(0.001, 100.0)),
    Setting("NumericalAperture", float, 1.4, limits=(0.05, 1.7)),
    Setting("EmissionWavelengthNm", float, 615.0, limits=(200.0, 1500.0)),
    Setting("ImmersionIndex", float, 1.515, limits=(1.0, 2.0)),
    Setting(
        "PSFModel",
        str,
        "scalar",
        allowed=get_args(PsfModel),
        doc="scalar Debye, or Richards-Wolf vectorial (unpolarised; wider at high NA)",
    ),
    Setting("PixelSizeUm", float, 0.1, limits=(0.01, 10.0), doc="pixel size at the sample"),
    Setting(
        "PhotonFluxPerS",
        float,
        2e6,
        limits=(0.0, 1e12),
        doc="photons per second collected from one unit of density (one bead)",
    ),
    Setting("BackgroundPhotonsPerS", float, 500.0, limits=(0.0, 1e9), doc="per pixel"),
    Setting(
        "SampleDriftXUmPerMin",
        float,
        0.0,
        limits=(-100.0, 100.0),
        doc="the sample's slow lateral motion along x (a time-lapse sees it move)",
    ),
    Setting("SampleDriftYUmPerMin", float, 0.0, limits=(-100.0, 100.0), doc="the same along y"),
)


class SimulatedMicroscope(GenericDevice):
    """Sample and optics of the simulated wide-field microscope.

    Holds no hardware state: it tells the bench what is under the objective
    and how it is imaged.  Changing a property re-renders on the next frame.
    """

    def __init__(self) -> None:
        super().__init__()
        self._values: dict[str, Any] = {}
        self._bench: Bench | None = None
        register_settings(self, SETTINGS, self._values, self._changed)

    def initialize(self) -> None:
        self._bench = bench_for(self, self._values["Bench"])
        self._bench.setup = self.setup()
        self._bench.restart_clock()

    def shutdown(self) -> None:
        if self._bench is not None:
            self._bench.setup = None
            self._bench = None

    def _changed(self, name: str) -> None:
        if self._bench is not None:
            if name == "Bench":
                self.initialize()
            else:
                self._bench.setup = self.setup()

    def setup(self) -> OpticalSetup:
        """The current settings as validated models; raises on a bad combination."""
        v = self._values
        try:
            optics = Optics(
                numerical_aperture=v["NumericalAperture"],
                emission_wavelength_nm=v["EmissionWavelengthNm"],
                immersion_index=v["ImmersionIndex"],
                pixel_size_um=v["PixelSizeUm"],
                psf_model=v["PSFModel"],
            )
            common = {
                "seed": v["SampleSeed"],
                "depth_um": v["SampleDepthUm"],
                "voxel_z_um": v["SampleVoxelZUm"],
            }
            sample: SampleSpec
            if v["SampleKind"] == "beads":
                sample = BeadSample(density_per_1000_um3=v["BeadDensityPer1000um3"], **common)
            elif v["SampleKind"] == "nuclei":
                sample = NucleiSample(nuclei_per_1000_um3=v["NucleiPer1000um3"], **common)
            elif v["SampleKind"] == "structures":
                families = [f.strip() for f in v["SampleFamilies"].split("+") if f.strip()]
                unknown = [f for f in families if f not in STRUCTURE_FAMILIES]
                if unknown or not families:
                    raise ValueError(
                        f"SampleFamilies {v['SampleFamilies']!r}: "
                        + (f"{', '.join(unknown)} unknown; " if unknown else "")
                        + f"join one or more of {', '.join(STRUCTURE_FAMILIES)} with '+'"
                    )
                sample = StructureSample(
                    families=tuple(families),  # type: ignore[arg-type]
                    fill=v["StructureFill"],
                    brightness_decades=v["StructureBrightnessDecades"],
                    **common,
                )
            else:
                if not v["SampleTiffPath"]:
                    raise ValueError("SampleKind is 'tiff' but SampleTiffPath is empty")
                sample = TiffSample(
                    path=v["SampleTiffPath"],
                    tiff_voxel_xy_um=v["SampleTiffVoxelXYUm"],
                    tiff_voxel_z_um=v["SampleTiffVoxelZUm"],
                    **common,
                )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else e["msg"]
                for e in exc.errors()
            )
            raise ValueError(f"{self.get_label()}: {problems}") from None
        return OpticalSetup(
            sample=sample,
            optics=optics,
            photon_flux_per_s=v["PhotonFluxPerS"],
            background_photons_per_s=v["BackgroundPhotonsPerS"],
            drift_xy_um_per_min=(v["SampleDriftXUmPerMin"], v["SampleDriftYUmPerMin"]),
        )
