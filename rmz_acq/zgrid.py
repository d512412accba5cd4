"""Focus positions: the ``START:STOP:STEP`` ranges of the command line."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ZRange", "parse_z_list", "parse_z_range"]

_MAX_PLANES = 100_000


class ZRange(BaseModel):
    """Evenly spaced planes from ``start_um`` up to and including ``stop_um``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_um: float
    stop_um: float
    step_um: float = Field(gt=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> ZRange:
        if self.stop_um < self.start_um:
            raise ValueError(
                f"stop {self.stop_um} um is below start {self.start_um} um; "
                "write the range low:high:step"
            )
        if (self.stop_um - self.start_um) / self.step_um >= _MAX_PLANES:
            raise ValueError(f"the range has more than {_MAX_PLANES} planes; use a larger step")
        return self

    @property
    def n_planes(self) -> int:
        # A stop that the step reaches up to round-off is included.
        return int(np.floor((self.stop_um - self.start_um) / self.step_um + 1e-6)) + 1

    def planes_um(self) -> NDArray[np.float64]:
        planes = self.start_um + self.step_um * np.arange(self.n_planes)
        return np.round(planes, 9).astype(np.float64)  # 0.6, not 0.6000000000000001

    def __str__(self) -> str:
        return f"{self.start_um:g}:{self.stop_um:g}:{self.step_um:g}"


def parse_z_range(text: str) -> ZRange:
    """Parse ``"START:STOP:STEP"`` (micrometres) with a message that shows the fix."""
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise ValueError(f"z range {text!r} must be START:STOP:STEP in micrometres, e.g. 0:10:0.1")
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"z range {text!r} has a part that is not a number; write e.g. 0:10:0.1"
        ) from None
    if not all(np.isfinite([start, stop, step])):
        raise ValueError(f"z range {text!r} must be finite numbers")
    if step <= 0:
        raise ValueError(f"z range {text!r}: STEP must be positive, got {step:g}")
    return ZRange(start_um=start, stop_um=stop, step_um=step)


def parse_z_list(text: str) -> list[float]:
    """Parse ``"3,6,9"`` (micrometres)."""
    try:
        values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"z list {text!r} must be comma-separated numbers, e.g. 3,6,9") from None
    if not values or not all(np.isfinite(values)):
        raise ValueError(f"z list {text!r} must hold at least one finite number")
    return values
