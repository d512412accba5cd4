"""A scientific camera looking at the simulated sample."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import DTypeLike
from pymmcore_plus.experimental.unicore import SimpleCameraDevice

from ..bench import bench_for
from ..camera_model import CameraModel
from ._properties import Setting, register_settings

__all__ = ["SimulatedCamera"]

SETTINGS = (
    Setting("Bench", str, "default"),
    Setting("Width", int, 512, limits=(8, 4096)),
    Setting("Height", int, 512, limits=(8, 4096)),
    Setting("QuantumEfficiency", float, 0.8, limits=(0.01, 1.0)),
    Setting("ReadNoiseE", float, 1.6, limits=(0.0, 1000.0), doc="electrons rms"),
    Setting("FullWellE", float, 30000.0, limits=(1.0, 1e7)),
    Setting("BitDepth", int, 16, allowed=(12, 16)),
    Setting("NoiseSeed", int, 0, limits=(0, 2**31 - 1)),
    Setting("RealTimeExposure", bool, False, doc="sleep for the exposure time (0 or 1)"),
)


class SimulatedCamera(SimpleCameraDevice):
    """16- or 12-bit monochrome camera with shot, read and offset noise.

    ``Gain`` is ADU per electron and ``Offset`` the bias in ADU (Micro-Manager's
    standard camera properties).
    """

    def __init__(self) -> None:
        super().__init__()
        self._values: dict[str, Any] = {}
        register_settings(self, SETTINGS, self._values, self._changed)
        self._exposure_ms = 10.0
        self._gain = 0.5
        self._offset = 100.0
        self._rng = np.random.default_rng(0)

    def initialize(self) -> None:
        self._rng = np.random.default_rng(self._values["NoiseSeed"])

    def _changed(self, name: str) -> None:
        if name == "NoiseSeed":
            self._rng = np.random.default_rng(self._values["NoiseSeed"])

    def camera_model(self) -> CameraModel:
        v = self._values
        return CameraModel(
            quantum_efficiency=v["QuantumEfficiency"],
            read_noise_e=v["ReadNoiseE"],
            offset_adu=self._offset,
            gain_adu_per_e=self._gain,
            full_well_e=v["FullWellE"],
            bit_depth=v["BitDepth"],
        )

    # CameraDevice API ---------------------------------------------------------

    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        value = float(exposure)
        if not 0.0 < value <= 100000.0:
            raise ValueError(f"{self.get_label()}: exposure {value} ms must be in (0, 1e5]")
        self._exposure_ms = value

    def get_gain(self) -> float:
        return self._gain

    def set_gain(self, value: float) -> None:
        gain = float(value)
        if not 0.0 < gain <= 1000.0:
            raise ValueError(f"{self.get_label()}: Gain {gain} ADU/e- must be in (0, 1000]")
        self._gain = gain

    def get_offset(self) -> float:
        return self._offset

    def set_offset(self, value: float) -> None:
        offset = float(value)
        if not 0.0 <= offset <= 60000.0:
            raise ValueError(f"{self.get_label()}: Offset {offset} ADU must be in [0, 60000]")
        self._offset = offset

    def sensor_shape(self) -> tuple[int, int]:
        return (int(self._values["Height"]), int(self._values["Width"]))

    def dtype(self) -> DTypeLike:
        return np.uint16

    def snap(self, buffer: np.ndarray) -> Mapping[str, Any]:
        bench = bench_for(self, self._values["Bench"])
        photons = bench.expected_photons(self.sensor_shape(), self._exposure_ms)
        if self._values["RealTimeExposure"]:
            time.sleep(self._exposure_ms / 1000.0)
        buffer[:] = self.camera_model().capture(photons, self._rng)
        return {}
