"""A shutter that really gates the excitation light."""

from __future__ import annotations

from typing import Any

from pymmcore_plus.experimental.unicore import ShutterDevice

from ..bench import Bench, bench_for
from ._properties import Setting, register_settings

__all__ = ["SimulatedShutter"]


class SimulatedShutter(ShutterDevice):
    """Closed: the camera sees no fluorescence, only offset and read noise."""

    def __init__(self) -> None:
        super().__init__()
        self._values: dict[str, Any] = {}
        self._open = False
        self._bench: Bench | None = None
        register_settings(self, (Setting("Bench", str, "default"),), self._values)

    def initialize(self) -> None:
        self._bench = bench_for(self, self._values["Bench"])
        self._bench.shutter = self

    def shutdown(self) -> None:
        if self._bench is not None and self._bench.shutter is self:
            self._bench.shutter = None

    def get_open(self) -> bool:
        return self._open

    def set_open(self, open: bool) -> None:
        self._open = bool(open)
