"""When to stop scanning: small rules, each testable on its own.

A rule looks at the scan so far (`ScanProgress`) and returns a `StopReason`
when the scan should end.  The paper's rule (section 3) is
``||V_M - V_(M-1)||_F <= epsilon`` (`FrobeniusChange`); `RelativeChange`
divides that by ``||V_M||_F``, which does not depend on the brightness or
size of the volume and so carries over between samples.

What the relative change is relative to is a setting (``relative_to``):
``"volume"``, ``||V_M||_F`` as above; or ``"structure-noise"``
(`relative_change`), a weighted geometric mean of the volume's structure,
``||V_M - mean(V_M)||_F``, and the frames' noise over the same voxels.  That
one does not move with the camera offset or a uniform background, and it
loosens the threshold for noisy, low-contrast specimens, whose volume keeps
moving by each new frame's noise after it has converged, and tightens it for
clean, high-contrast ones.

Where a rule may end the scan is a setting of its own (``stop_at``):
``"any"`` frame, or only ``"even"``, when the planes taken are evenly
spaced over the candidates' span (`evenly_spaced`): after each complete
sweep of a coarse-to-fine scan (3, 5, 9, 17 of 17 candidates), so that the
volume the scan ends with is always that of an evenly spaced stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal, Protocol

import numpy as np

__all__ = [
    "RELATIVE_TO",
    "STOP_AT",
    "STRUCTURE_WEIGHT",
    "FrobeniusChange",
    "MaxFrames",
    "RelativeChange",
    "ScanProgress",
    "StopReason",
    "StopRule",
    "TimeBudget",
    "evenly_spaced",
    "first_stop",
    "relative_change",
    "replayed_stop",
]

# Where a converged rule may end the scan: after any frame, or only when the
# planes taken are evenly spaced over the candidates' span.
STOP_AT = ("any", "even")
StopAt = Literal["any", "even"]
# What `RelativeChange` divides the change by (`relative_change`)
RELATIVE_TO = ("volume", "structure-noise")
RelativeTo = Literal["volume", "structure-noise"]
# benchmarks/bench_next_plane.py over seven specimen families (docs/benchmarks.md,
# "One threshold for many specimens"): the weight of the structure against the noise
STRUCTURE_WEIGHT = 0.7


def relative_change(
    change: float | None,
    *,
    norm: float,
    centred_norm: float | None,
    voxels: int,
    noise_rms: float | None,
    relative_to: RelativeTo,
) -> float | None:
    """The change ``||V_M - V_(M-1)||_F`` relative to what ``relative_to`` names.

    ``norm`` is ``||V_M||_F``, ``centred_norm`` ``||V_M - mean(V_M)||_F``,
    over ``voxels`` voxels; ``noise_rms`` the frames' typical noise (standard
    deviation per pixel, in the same units).  ``"volume"``: change / norm.
    ``"structure-noise"``: the root-mean-square change over a weighted
    geometric mean of the volume's RMS structure and the frames' RMS noise,
    ``structure**w * noise**(1 - w)`` with ``w = STRUCTURE_WEIGHT``.
    """
    if change is None:
        return None
    if relative_to == "volume":
        return change / max(norm, 1e-30)
    if relative_to != "structure-noise":
        raise ValueError(f"relative_to {relative_to!r} is not one of {', '.join(RELATIVE_TO)}")
    if centred_norm is None or noise_rms is None or voxels <= 0:
        raise ValueError("the structure-noise change needs the centred norm, voxels and noise")
    structure = centred_norm / np.sqrt(voxels)
    # noise-free frames (a simulation without noise): as if 60 dB below the structure
    noise = max(noise_rms, 1e-3 * structure)
    scale = structure**STRUCTURE_WEIGHT * noise ** (1.0 - STRUCTURE_WEIGHT)
    return change / np.sqrt(voxels) / max(float(scale), 1e-30)


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
    (``None`` after the first frame); ``elapsed_s`` counts from the start;
    ``evenly_spaced``: the planes taken so far are evenly spaced over the
    candidates' span (`evenly_spaced`).
    """

    frames: int
    frobenius_change: float | None
    relative_change: float | None
    elapsed_s: float
    candidates_left: int
    evenly_spaced: bool = False


def evenly_spaced(planes_um: Sequence[float], lo_um: float, hi_um: float) -> bool:
    """Whether ``planes_um`` are (about) as many evenly spaced planes from ``lo_um`` to ``hi_um``.

    Both ends included; each plane, sorted, within a quarter of the spacing
    of its evenly spaced position (so planes moved to the nearest plane of a
    finer grid, as a replay on a z-stack moves them, still count).  At least
    two planes.
    """
    planes = np.sort(np.asarray(planes_um, np.float64))
    if planes.size < 2 or not hi_um > lo_um:
        return False
    ideal = np.linspace(lo_um, hi_um, planes.size)
    return bool(np.max(np.abs(planes - ideal)) <= 0.25 * (hi_um - lo_um) / (planes.size - 1))


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
    """Converged when ``progress.relative_change <= epsilon``.

    ``||V_M - V_(M-1)||_F / ||V_M||_F``, or relative to structure and noise
    (`relative_change`), as the scan's ``relative_to`` setting says.
    """

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
    rules: Sequence[StopRule],
    progress: ScanProgress,
    *,
    min_frames: int = 1,
    stop_at: StopAt = "any",
) -> StopReason | None:
    """The first rule that fires, honouring ``min_frames`` and ``stop_at`` for convergence.

    With ``stop_at="even"`` convergence counts only on evenly spaced planes
    (``progress.evenly_spaced``); the frame limit and the time budget end
    the scan wherever it is.  Running out of candidates ends it as
    ``max_frames``.
    """
    for rule in rules:
        reason = rule.check(progress)
        if reason is StopReason.CONVERGED and (
            progress.frames < min_frames or (stop_at == "even" and not progress.evenly_spaced)
        ):
            continue
        if reason is not None:
            return reason
    if progress.candidates_left == 0:
        return StopReason.MAX_FRAMES
    return None


def replayed_stop(
    relative_changes: Sequence[float | None],
    planes_um: Sequence[float],
    span_um: tuple[float, float],
    relative_epsilon: float,
    *,
    min_frames: int = 2,
    stop_at: StopAt = "any",
) -> int:
    """The frames a relative-change rule takes on a scan replayed through every candidate.

    ``relative_changes`` and ``planes_um`` per frame, in the order taken;
    ``span_um`` the candidates' lowest and highest plane.  All of them when
    the rule never fires (the scan ran out of candidates).
    """
    for m in range(max(min_frames, 2), len(relative_changes) + 1):
        change = relative_changes[m - 1]
        if change is None or change > relative_epsilon:
            continue
        if stop_at == "even" and not evenly_spaced(planes_um[:m], *span_um):
            continue
        return m
    return len(relative_changes)
