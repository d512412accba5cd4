"""An XY stage with travel limits: which part of the sample is under the objective."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pymmcore_plus.experimental.unicore import XYStageDevice

from ..bench import Bench, bench_for
from ._properties import Setting, register_settings
from .focus_stage import StageLimitError

__all__ = ["SimulatedXYStage"]

SETTINGS = (
    Setting("Bench", str, "default"),
    Setting("LowerLimitXUm", float, -1000.0, limits=(-1e6, 1e6)),
    Setting("UpperLimitXUm", float, 1000.0, limits=(-1e6, 1e6)),
    Setting("LowerLimitYUm", float, -1000.0, limits=(-1e6, 1e6)),
    Setting("UpperLimitYUm", float, 1000.0, limits=(-1e6, 1e6)),
    Setting("SettleTimeMs", float, 0.0, limits=(0.0, 10000.0), doc="sleep after each move"),
)


class SimulatedXYStage(XYStageDevice):
    """Moves the sample under the objective; a move outside the travel is refused.

    The position is where the field of view's centre sits on the sample (µm);
    the camera sees the sample shifted by it (the generated samples tile the
    plane, so every position shows structure).
    """

    def __init__(self) -> None:
        super().__init__()
        self._values: dict[str, Any] = {}
        register_settings(self, SETTINGS, self._values, lambda name: None)
        self._xy_um = (0.0, 0.0)
        self._bench: Bench | None = None

    def initialize(self) -> None:
        (xlo, xhi), (ylo, yhi) = self.travel_range_um()
        if not (xlo < xhi and ylo < yhi):
            raise ValueError(f"{self.get_label()}: each lower limit must be below its upper limit")
        self._xy_um = (min(max(0.0, xlo), xhi), min(max(0.0, ylo), yhi))
        self._bench = bench_for(self, self._values["Bench"])
        self._bench.xy_stage = self

    def shutdown(self) -> None:
        if self._bench is not None and self._bench.xy_stage is self:
            self._bench.xy_stage = None

    def travel_range_um(self) -> tuple[tuple[float, float], tuple[float, float]]:
        v = self._values
        return (
            (float(v["LowerLimitXUm"]), float(v["UpperLimitXUm"])),
            (float(v["LowerLimitYUm"]), float(v["UpperLimitYUm"])),
        )

    def position_um(self) -> tuple[float, float]:
        return self._xy_um

    # XYStageDevice API ---------------------------------------------------------

    def set_position_um(self, x: float, y: float) -> None:
        (xlo, xhi), (ylo, yhi) = self.travel_range_um()
        x, y = float(x), float(y)
        if not (np.isfinite(x) and np.isfinite(y) and xlo <= x <= xhi and ylo <= y <= yhi):
            raise StageLimitError(
                f"{self.get_label()}: (x, y) = ({x}, {y}) um is outside the travel limits "
                f"x [{xlo}, {xhi}], y [{ylo}, {yhi}] um; the stage did not move"
            )
        self._xy_um = (x, y)
        if (settle := float(self._values["SettleTimeMs"])) > 0:
            time.sleep(settle / 1000.0)

    def get_position_um(self) -> tuple[float, float]:
        return self._xy_um

    def set_origin_x(self) -> None:
        raise NotImplementedError(f"{self.get_label()}: the simulated stage's origin is fixed")

    def set_origin_y(self) -> None:
        raise NotImplementedError(f"{self.get_label()}: the simulated stage's origin is fixed")

    def home(self) -> None:
        self.set_position_um(0.0, 0.0)

    def stop(self) -> None:
        """Moves are instantaneous: nothing to stop."""
