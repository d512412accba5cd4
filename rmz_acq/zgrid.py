"""Focus positions: the ``START:STOP:STEP`` ranges of the command line."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InvalidValueError, validation_message

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
        span = self.stop_um - self.start_um
        if span > 0 and self.step_um > span * (1 + 1e-9):
            raise ValueError(
                f"step {self.step_um:g} um is longer than the range {self.start_um:g} to "
                f"{self.stop_um:g} um, which would give one plane; use a step of at most "
                f"{span:g} um (or START:START:1 for a single plane)"
            )
        if span / self.step_um >= _MAX_PLANES:
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
    """Parse ``"START:STOP:STEP"`` (micrometres) with a message that shows the fix.

    Raises
    ------
    InvalidValueError
        Not three finite numbers, a non-positive step, STOP below START, a
        step longer than the range, or too many planes.
    """
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise InvalidValueError(
            f"z range {text!r} must be START:STOP:STEP in micrometres, e.g. 0:10:0.1"
        )
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise InvalidValueError(
            f"z range {text!r} has a part that is not a number; write e.g. 0:10:0.1"
        ) from None
    if not all(np.isfinite([start, stop, step])):
        raise InvalidValueError(f"z range {text!r} must be finite numbers, e.g. 0:10:0.1")
    if step <= 0:
        raise InvalidValueError(f"z range {text!r}: STEP must be positive, got {step:g}")
    try:
        return ZRange(start_um=start, stop_um=stop, step_um=step)
    except ValidationError as exc:
        raise InvalidValueError(f"z range {text!r}: {validation_message(exc)}") from None


def parse_z_list(text: str) -> list[float]:
    """Parse ``"3,6,9"`` (micrometres).

    Raises
    ------
    InvalidValueError
        A part that is not a number, not finite, or no number at all.
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise InvalidValueError(f"z list {text!r} holds no numbers; write e.g. 3,6,9")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise InvalidValueError(
                f"z list {text!r}: {part!r} is not a number; write comma-separated "
                "micrometres, e.g. 3,6,9"
            ) from None
        if not np.isfinite(value):
            raise InvalidValueError(
                f"z list {text!r}: {part!r} is not a finite number; write comma-separated "
                "micrometres, e.g. 3,6,9"
            )
        values.append(value)
    return values
