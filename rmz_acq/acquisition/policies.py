"""Where an adaptive scan looks next: next-plane policies.

The stop rule decides *when* a scan ends; a next-plane policy decides
*where* each frame is taken.  After every frame the scan hands the policy
what it knows (`ScanState`: the planes taken, the decision planes' volume
and how much the last frame changed each of them) and moves the focus to
the plane the policy returns (`PlaneChoice`), or ends when it returns
``None``.  Every policy chooses among `ScanState.choosable_um`, planes the
plan allows (inside the candidates' span, so inside the stage limits the
plan was checked against), never a plane already taken.

- `Bisection` (``bisection``): the plan's candidates in the plan's order
  (coarse to fine by default, `PlaneOrder`); the baseline.
- `EvenSpacing` (``even``): the plane that brings the planes taken closest
  to an evenly spaced set of the same size, whatever the count.
- `WhereStructure` (``structure``): after the first three frames (centre,
  then the two ends), the plane farthest from every frame taken, weighed by
  how much structure the current volume holds at that depth: empty depth
  needs fewer frames.
- `LeastSettled` (``settle``): after the first three frames, the plane
  farthest from every frame taken, weighed by how much the volume there has
  changed on the recent frames: where the estimate is least settled.

``benchmarks/bench_next_plane.py`` sets them against each other and against
fixed, evenly spaced scans with the same frames (see the README).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidValueError

if TYPE_CHECKING:
    from .plan import ScanPlan

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "STATIC_POLICIES",
    "Bisection",
    "EvenSpacing",
    "LeastSettled",
    "NextPlanePolicy",
    "PlaneChoice",
    "ScanState",
    "Sweeps",
    "WhereStructure",
    "choosable_planes",
    "describe_policy",
    "make_policy",
    "static_order",
]


@dataclass(frozen=True)
class ScanState:
    """What a policy knows after ``len(taken_um)`` frames.

    Attributes
    ----------
    candidates_um
        The plan's candidates, in the plan's order.
    choosable_um
        Every plane the scan may move to (sorted): the candidates and the
        output planes between the lowest and the highest candidate.
    taken_um
        Commanded z of the frames taken, in the order taken.
    planes_um
        The decision planes (the output planes the scan updates as each
        frame arrives); ``None`` before the first frame.
    plane_signal
        Per decision plane, the standard deviation of the current volume
        there (structure; 0 for an empty plane).
    plane_change
        Per decision plane, ``||V_M - V_(M-1)||_F`` of the last frame there
        (``None`` after the first frame).
    """

    candidates_um: tuple[float, ...]
    choosable_um: tuple[float, ...]
    taken_um: tuple[float, ...] = ()
    planes_um: NDArray[np.float64] | None = None
    plane_signal: NDArray[np.float64] | None = None
    plane_change: NDArray[np.float64] | None = None
    history: tuple[NDArray[np.float64], ...] = field(default=())  # plane_change, frame by frame

    def after(
        self,
        z_um: float,
        planes_um: NDArray[np.float64],
        plane_change: NDArray[np.float64] | None,
        plane_signal: NDArray[np.float64] | None,
    ) -> ScanState:
        """The state once a frame at ``z_um`` was taken and judged (a new object)."""
        return replace(
            self,
            taken_um=(*self.taken_um, float(z_um)),
            planes_um=planes_um,
            plane_signal=plane_signal,
            plane_change=plane_change,
            history=self.history if plane_change is None else (*self.history, plane_change),
        )


class PlaneChoice(NamedTuple):
    """The next plane, and why (``report.json`` records both)."""

    z_um: float
    score: float | None  # the policy's own figure for this plane (see each policy)
    why: str


class NextPlanePolicy(Protocol):
    """Chooses each frame's plane.  ``choose`` is called before every frame
    (the first included) on the thread that drives the scan; it must be
    fast beside a frame's acquisition and must not return a plane outside
    ``state.choosable_um`` or one already in ``state.taken_um``."""

    name: str

    def choose(self, state: ScanState) -> PlaneChoice | None:
        """The next plane, or ``None`` when there is nothing left worth taking."""
        ...


def choosable_planes(
    candidates_um: Sequence[float], output_planes_um: Sequence[float]
) -> tuple[float, ...]:
    """The candidates and the output planes inside the candidates' span, sorted."""
    lo, hi = min(candidates_um), max(candidates_um)
    inside = [z for z in output_planes_um if lo - 1e-9 <= z <= hi + 1e-9]
    return tuple(sorted({round(float(z), 9) for z in [*candidates_um, *inside]}))


def _free(state: ScanState) -> NDArray[np.float64]:
    """Choosable planes not yet taken (nor within a hair of one taken)."""
    planes = np.asarray(state.choosable_um, np.float64)
    if not state.taken_um:
        return planes
    taken = np.asarray(state.taken_um, np.float64)
    distance = np.min(np.abs(planes[:, None] - taken[None, :]), axis=1)
    return planes[distance > 1e-6]


def _distance_to_taken(z: NDArray[np.float64], taken: tuple[float, ...]) -> NDArray[np.float64]:
    return np.min(np.abs(z[:, None] - np.asarray(taken)[None, :]), axis=1)


def _first_sweep(state: ScanState, free: NDArray[np.float64]) -> PlaneChoice:
    """The first three frames: the lowest choosable plane, the centre, the highest.

    Evenly spaced at three frames, and taken upwards as a z-stack is: the
    order the network reconstructs best (bench_next_plane.py).
    """
    span = np.asarray(state.choosable_um)
    targets = (span[0], (span[0] + span[-1]) / 2, span[-1])
    target = targets[min(len(state.taken_um), 2)]
    best = int(np.argmin(np.abs(free - target)))
    return PlaneChoice(float(free[best]), None, "first sweep: lowest, centre, highest")


class Bisection:
    """The plan's candidates, in the plan's order (coarse to fine by default)."""

    name = "bisection"

    def choose(self, state: ScanState) -> PlaneChoice | None:
        taken = np.asarray(state.taken_um, np.float64)
        for z in state.candidates_um:
            if taken.size == 0 or np.min(np.abs(taken - z)) > 1e-6:
                return PlaneChoice(float(z), None, "next candidate in the plan's order")
        return None


class Sweeps:
    """Bisection's levels, each swept from the lowest plane up.

    The first sweep takes the lowest, the centre and the highest candidate;
    each later sweep the midpoints of the gaps left, lowest first (3, 9, 15,
    then 6, 12, then 4.5, 7.5, 10.5, 13.5 for candidates every 1.5 µm from
    3 to 15).  The planes after 3, 5, 9, ... frames are bisection's; the
    order within a sweep runs the way a z-stack does, which the network
    reconstructs better than bisection's centre-first order.
    """

    name = "sweeps"

    def choose(self, state: ScanState) -> PlaneChoice | None:
        candidates = np.sort(np.asarray(state.candidates_um, np.float64))
        taken = np.asarray(state.taken_um, np.float64)
        level = _bisection_levels(candidates)
        free = [
            i
            for i in range(len(candidates))
            if taken.size == 0 or np.min(np.abs(taken - candidates[i])) > 1e-6
        ]
        if not free:
            return None
        best = min(free, key=lambda i: (level[i], candidates[i]))
        return PlaneChoice(
            float(candidates[best]), float(level[best]), f"sweep {level[best] + 1}, lowest first"
        )


def _bisection_levels(planes: NDArray[np.float64]) -> list[int]:
    """Per sorted plane, the bisection level it is taken at (0: ends and centre)."""
    order = [0, len(planes) - 1, int(np.argmin(np.abs(planes - (planes[0] + planes[-1]) / 2)))]
    level = {i: 0 for i in order}
    current = 0
    while len(level) < len(planes):
        current += 1
        taken = sorted(level)
        gaps = [(a, b) for a, b in itertools.pairwise(taken) if b - a > 1]
        if not gaps:
            break
        widest = max(planes[b] - planes[a] for a, b in gaps)
        for a, b in gaps:  # halve every gap near the widest: one sweep
            if planes[b] - planes[a] >= widest * 0.75 - 1e-9:
                mid = (planes[a] + planes[b]) / 2
                inner = range(a + 1, b)
                level[min(inner, key=lambda i: abs(planes[i] - mid))] = current
    return [level.get(i, current + 1) for i in range(len(planes))]


class EvenSpacing:
    """The plane that keeps the frames closest to evenly spaced, now and next.

    After the first sweep (lowest, centre, highest), each free plane z is
    scored by how far the sorted planes (taken and z) lie from as many
    evenly spaced planes over the span (root mean square, µm), plus the
    same for the best plane after it: a one-step look-ahead, so that a
    choice that is even now does not leave the next count lopsided.  The
    lowest score wins.  Bisection is even only at 3, 5, 9, ... frames.
    """

    name = "even"

    def choose(self, state: ScanState) -> PlaneChoice | None:
        free = _free(state)
        if free.size == 0:
            return None
        if len(state.taken_um) < 3:
            return _first_sweep(state, free)
        span = np.asarray(state.choosable_um)
        lo, hi = float(span[0]), float(span[-1])
        taken = np.asarray(state.taken_um, np.float64)
        now = _unevenness(np.broadcast_to(taken, (free.size, taken.size)), free, lo, hi)
        score = now.copy()
        if free.size > 1:
            for i, z in enumerate(free):  # the best plane after z
                others = np.delete(free, i)
                base = np.broadcast_to(np.append(taken, z), (others.size, taken.size + 1))
                score[i] += float(np.min(_unevenness(base, others, lo, hi)))
        best = int(np.argmin(score))
        count = taken.size + 1
        return PlaneChoice(
            float(free[best]),
            float(now[best]),
            f"closest to {count} evenly spaced planes (rms {now[best]:.2f} um)",
        )


def _unevenness(
    taken: NDArray[np.float64], added: NDArray[np.float64], lo: float, hi: float
) -> NDArray[np.float64]:
    """Per row: rms distance (µm) of sorted (taken row + added) from evenly spaced planes."""
    sets = np.sort(np.concatenate([taken, added[:, None]], axis=1), axis=1)
    ideal = np.linspace(lo, hi, sets.shape[1])
    return np.sqrt(np.mean((sets - ideal[None, :]) ** 2, axis=1))


class _Weighted:
    """Farthest from every frame taken, weighed by a per-depth figure.

    The first three frames are the lowest plane, the centre and the highest
    (`_first_sweep`), which the weighting needs: before them there is no volume
    to weigh by.  Then each free plane scores ``distance to the nearest
    frame x (floor + weight)``, the weight interpolated between the decision
    planes and scaled to its maximum; ``floor`` keeps empty depth from being
    skipped for ever.
    """

    name = "weighted"
    floor = 0.25

    def weight(self, state: ScanState) -> NDArray[np.float64] | None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def choose(self, state: ScanState) -> PlaneChoice | None:
        free = _free(state)
        if free.size == 0:
            return None
        if len(state.taken_um) < 3:
            return _first_sweep(state, free)
        assert state.planes_um is not None
        weights = self.weight(state)
        if weights is None:
            return EvenSpacing().choose(state)
        top = float(np.max(weights))
        scaled = weights / top if top > 0 else np.ones_like(weights)
        at_free = np.interp(free, state.planes_um, scaled)
        score = _distance_to_taken(free, state.taken_um) * (self.floor + at_free)
        best = int(np.argmax(score))
        return PlaneChoice(
            float(free[best]),
            float(score[best]),
            f"{self.describe()} {at_free[best]:.2f}, "
            f"{_distance_to_taken(free[best : best + 1], state.taken_um)[0]:.2f} um from a frame",
        )


class WhereStructure(_Weighted):
    """Far from the frames taken, where the volume holds structure."""

    name = "structure"

    def weight(self, state: ScanState) -> NDArray[np.float64] | None:
        return state.plane_signal

    def describe(self) -> str:
        return "structure"


class LeastSettled(_Weighted):
    """Far from the frames taken, where the recent frames changed the volume most.

    The weight is the largest change any of the last two frames made at
    that depth (one frame changes the planes near it most; two keep a
    region that the previous frame unsettled in view).
    """

    name = "settle"

    def weight(self, state: ScanState) -> NDArray[np.float64] | None:
        if not state.history:
            return None
        return np.max(np.stack(state.history[-2:]), axis=0)

    def describe(self) -> str:
        return "change"


POLICIES: dict[str, Callable[[], NextPlanePolicy]] = {
    "bisection": Bisection,
    "sweeps": Sweeps,
    "even": EvenSpacing,
    "structure": WhereStructure,
    "settle": LeastSettled,
}
DEFAULT_POLICY = "bisection"
# Policies whose planes depend only on the planes already taken, not on the
# volume: their orders can be drawn without a network (for training).
STATIC_POLICIES = ("bisection", "sweeps", "even")


def static_order(
    name: str,
    candidates_um: Sequence[float],
    count: int,
    choosable_um: Sequence[float] | None = None,
) -> list[float]:
    """The first ``count`` planes a static policy takes.

    ``candidates_um`` in the plan's order (bisection's, for ``bisection``);
    the policy chooses among ``choosable_um`` (default: the candidates
    alone; a scan's are `choosable_planes`).
    """
    if name not in STATIC_POLICIES:
        raise InvalidValueError(
            f"next-plane policy {name!r} depends on the volume; orders can be drawn without "
            f"a network for {', '.join(STATIC_POLICIES)} only"
        )
    policy = make_policy(name)
    state = ScanState(
        candidates_um=tuple(float(z) for z in candidates_um),
        choosable_um=tuple(sorted(float(z) for z in choosable_um or candidates_um)),
    )
    taken: list[float] = []
    for _ in range(min(count, len(candidates_um))):
        choice = policy.choose(state)
        if choice is None:
            break
        taken.append(choice.z_um)
        state = state.after(choice.z_um, np.empty(0), None, None)
    return taken


def make_policy(name: str) -> NextPlanePolicy:
    """The policy called ``name`` (`POLICIES`)."""
    try:
        return POLICIES[name]()
    except KeyError:
        raise InvalidValueError(
            f"next-plane policy {name!r} is not known; choose one of {', '.join(POLICIES)}"
        ) from None


def describe_policy(name: str, plan: ScanPlan) -> str:
    """The policy in words, with its planes in order when they do not depend on the volume."""
    if name not in STATIC_POLICIES:
        return f"next plane: {name} (chosen frame by frame from the volume; first three as 'even')"
    choosable = choosable_planes(plan.candidates_um, plan.output_planes_um)
    planes = static_order(name, plan.candidates_um, len(plan.candidates_um), choosable)
    return f"next plane: {name}, in this order: " + ", ".join(f"{z:g}" for z in planes)
