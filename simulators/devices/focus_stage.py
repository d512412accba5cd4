"""A focus (Z) stage with travel limits, positioning error and drift."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pymmcore_plus.experimental.unicore import StageDevice

from ..bench import Bench, bench_for
from ._properties import Setting, register_settings

__all__ = ["SimulatedFocusStage", "StageLimitError"]


class StageLimitError(ValueError):
    """A move was asked for outside the stage's travel; the stage did not move."""


SETTINGS = (
    Setting("Bench", str, "default"),
    Setting("LowerLimitUm", float, -2.0, limits=(-10000.0, 10000.0)),
    Setting("UpperLimitUm", float, 12.0, limits=(-10000.0, 10000.0)),
    Setting(
        "PositionErrorSigmaUm",
        float,
        0.0,
        limits=(0.0, 10.0),
        doc="standard deviation of the Gaussian error of each move",
    ),
    Setting("DriftUmPerMin", float, 0.0, limits=(-100.0, 100.0), doc="slow focus drift"),
    Setting("Seed", int, 0, limits=(0, 2**31 - 1)),
    Setting("SettleTimeMs", float, 0.0, limits=(0.0, 10000.0), doc="sleep after each move"),
)


class SimulatedFocusStage(StageDevice):
    """Where the focal plane is, in sample coordinates (z = 0 at the coverslip).

    A move lands at the commanded z plus a Gaussian positioning error, and the
    focus then drifts slowly; the position the stage *reports* is where the
    focal plane really is (as an encoder would read it), so it differs from
    the commanded z.  `commanded_um` keeps what was asked for.
    """

    def __init__(self) -> None:
        super().__init__()
        self._values: dict[str, Any] = {}
        register_settings(self, SETTINGS, self._values, self._changed)
        self._rng = np.random.default_rng(0)
        self.commanded_um = 0.0
        self._landed_um = 0.0
        self._drift_origin_s = time.monotonic()
        self._bench: Bench | None = None

    def initialize(self) -> None:
        lo, hi = self.travel_range_um()
        if not lo < hi:
            raise ValueError(
                f"{self.get_label()}: LowerLimitUm {lo} must be below UpperLimitUm {hi}"
            )
        self._rng = np.random.default_rng(self._values["Seed"])
        self.commanded_um = self._landed_um = min(max(0.0, lo), hi)
        self._drift_origin_s = time.monotonic()
        self._bench = bench_for(self, self._values["Bench"])
        self._bench.stage = self

    def shutdown(self) -> None:
        if self._bench is not None and self._bench.stage is self:
            self._bench.stage = None

    def _changed(self, name: str) -> None:
        if name == "Seed":
            self._rng = np.random.default_rng(self._values["Seed"])

    def travel_range_um(self) -> tuple[float, float]:
        return float(self._values["LowerLimitUm"]), float(self._values["UpperLimitUm"])

    def _drift_um(self) -> float:
        minutes = (time.monotonic() - self._drift_origin_s) / 60.0
        return float(self._values["DriftUmPerMin"]) * minutes

    def true_position_um(self) -> float:
        """The focal plane's z, kept inside the travel (a stage stops at its end)."""
        lo, hi = self.travel_range_um()
        return min(max(self._landed_um + self._drift_um(), lo), hi)

    # StageDevice API ----------------------------------------------------------

    def set_position_um(self, val: float) -> None:
        target = float(val)
        lo, hi = self.travel_range_um()
        if not (np.isfinite(target) and lo <= target <= hi):
            raise StageLimitError(
                f"{self.get_label()}: z = {target} um is outside the travel limits "
                f"[{lo}, {hi}] um; the stage did not move"
            )
        sigma = float(self._values["PositionErrorSigmaUm"])
        error = float(self._rng.normal(0.0, sigma)) if sigma > 0 else 0.0
        self.commanded_um = target
        self._landed_um = target + error - self._drift_um()
        if (settle := float(self._values["SettleTimeMs"])) > 0:
            time.sleep(settle / 1000.0)
        self.core.events.stagePositionChanged.emit(self.get_label(), self.get_position_um())

    def get_position_um(self) -> float:
        return self.true_position_um()

    def home(self) -> None:
        lo, hi = self.travel_range_um()
        self.set_position_um(min(max(0.0, lo), hi))

    def stop(self) -> None:
        """Moves are instantaneous: nothing to stop."""

    def set_origin(self) -> None:
        raise NotImplementedError(
            f"{self.get_label()}: the simulated stage's origin is the coverslip (z = 0)"
        )
