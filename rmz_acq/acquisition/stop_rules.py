"""When to stop scanning: small rules, each testable on its own.

A rule looks at the scan so far (`ScanProgress`) and returns a `StopReason`
when the scan should end.  The paper's rule (section 3) is
``||V_M - V_(M-1)||_F <= epsilon`` (`FrobeniusChange`); `RelativeChange`
divides that by ``||V_M||_F``, which does not depend on the brightness or
size of the volume and so carries over between samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

__all__ = [
    "FrobeniusChange",
    "MaxFrames",
    "RelativeChange",
    "ScanProgress",
    "StopReason",
    "StopRule",
    "TimeBudget",
    "first_stop",
]


class StopReason(str, Enum):
    """Why a scan ended (``report.json``'s ``stop_reason``)."""

    CONVERGED = "converged"
    MAX_FRAMES = "max_frames"
    TIME_BUDGET = "time_budget"
    CANCELLED = "cancelled"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ScanProgress:
    """The scan after a frame was pushed.

    ``frobenius_change`` / ``relative_change`` are those of the last push
    (``None`` after the first frame); ``elapsed_s`` counts from the start.
    """

    frames: int
    frobenius_change: float | None
    relative_change: float | None
    elapsed_s: float
    candidates_left: int


class StopRule(Protocol):
    """Decides after each frame whether the scan is done."""

    def check(self, progress: ScanProgress) -> StopReason | None:
        """Return why to stop now, or ``None`` to take another frame."""
        ...


def _non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value:g}")


@dataclass(frozen=True)
class FrobeniusChange:
    """Converged when ``||V_M - V_(M-1)||_F <= epsilon`` (input intensity units)."""

    epsilon: float

    def __post_init__(self) -> None:
        _non_negative("epsilon", self.epsilon)

    def check(self, progress: ScanProgress) -> StopReason | None:
        change = progress.frobenius_change
        return StopReason.CONVERGED if change is not None and change <= self.epsilon else None


@dataclass(frozen=True)
class RelativeChange:
    """Converged when ``||V_M - V_(M-1)||_F / ||V_M||_F <= epsilon``."""

    epsilon: float

    def __post_init__(self) -> None:
        _non_negative("relative epsilon", self.epsilon)

    def check(self, progress: ScanProgress) -> StopReason | None:
        change = progress.relative_change
        return StopReason.CONVERGED if change is not None and change <= self.epsilon else None


@dataclass(frozen=True)
class MaxFrames:
    """Stop after ``limit`` frames."""

    limit: int

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"max frames must be >= 1, got {self.limit}")

    def check(self, progress: ScanProgress) -> StopReason | None:
        return StopReason.MAX_FRAMES if progress.frames >= self.limit else None


@dataclass(frozen=True)
class TimeBudget:
    """Stop once ``seconds`` have passed since the scan started."""

    seconds: float

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"time budget must be > 0 s, got {self.seconds:g}")

    def check(self, progress: ScanProgress) -> StopReason | None:
        return StopReason.TIME_BUDGET if progress.elapsed_s >= self.seconds else None


def first_stop(
    rules: Sequence[StopRule], progress: ScanProgress, *, min_frames: int = 1
) -> StopReason | None:
    """The first rule that fires, honouring ``min_frames`` for convergence.

    Running out of candidates ends the scan as ``max_frames``.
    """
    for rule in rules:
        reason = rule.check(progress)
        if reason is StopReason.CONVERGED and progress.frames < min_frames:
            continue
        if reason is not None:
            return reason
    if progress.candidates_left == 0:
        return StopReason.MAX_FRAMES
    return None
