"""Which focus planes a scan may visit, and in what order.

The candidates are the planes the scan is allowed to take; the order decides
which come first, and the stop rule decides how many are taken.  Coarse-to-fine
bisection (the default) spreads the first frames over the whole range, so
every frame adds the most new information while M is small.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import RmzError
from ..safety import check_within_limits

if TYPE_CHECKING:
    from ..model.weights import LoadedModel

__all__ = [
    "DECISION_MARGIN",
    "DECISION_PLANES",
    "SCAN_DEFAULTS_KEY",
    "PlaneOrder",
    "ScanDefaults",
    "ScanPlan",
    "decision_plane_indices",
    "order_planes",
    "scan_defaults",
]

# Output planes the stop rule is measured on while the scan runs (the rest
# of the grid is completed in the background); benchmarks/bench_stopping.py.
DECISION_PLANES = 11
# benchmarks/bench_stopping.py: within 25 % of epsilon, 11 planes' estimate of
# a bead volume's change was on the wrong side of epsilon too often to trust
DECISION_MARGIN = 0.25


class ScanDefaults(NamedTuple):
    """What a scan with a model does unless told otherwise (chosen by benchmark)."""

    candidate_step_fraction: float  # candidate spacing, as a share of the input spacing
    relative_epsilon: float
    next_plane: str = "bisection"  # the next-plane policy (`rmz_acq.acquisition.policies`)
    stop_at: str = "any"  # where convergence may end the scan (`stop_rules.STOP_AT`)
    volume_order: str = "as-taken"  # the order the final volume is built in (`FRAME_ORDERS`)
    relative_to: str = "volume"  # what the relative change divides by (`stop_rules.RELATIVE_TO`)
    min_frames: int = 2  # the rule is not heard before this many frames


# benchmarks/bench_stopping.py (see the README, "Benchmarks"): the candidate
# spacing and threshold at which default scans stop on their rule.
PRESET_SCAN_DEFAULTS = {
    # benchmarks/bench_next_plane.py, held-out worms and six other structure families
    # (docs/benchmarks.md, "One threshold for many specimens"): candidates every 0.75 um
    # in sweeps, the rule heard only when a sweep is complete (3, 5, 9, 17 frames), the
    # change relative to structure and noise, the volume then that of the fixed z-stack;
    # heard first after nine frames: five-frame stops of held-out families ended 1-1.5 dB
    # short of every candidate (docs/benchmarks.md, "Not before nine frames")
    "nuclei": ScanDefaults(
        candidate_step_fraction=0.125,
        relative_epsilon=0.33,
        next_plane="sweeps",
        stop_at="even",
        volume_order="z",
        relative_to="structure-noise",
        min_frames=9,
    ),
    # benchmarks/bench_next_plane.py, held-out bead samples (docs/benchmarks.md, "What any
    # stop rule could do on beads"): the volume at the stop rebuilt sorted by z, 0.09-0.16 dB
    # closer to the fixed z-stack of as many planes than the volume as taken
    "beads": ScanDefaults(candidate_step_fraction=1 / 3, relative_epsilon=0.02, volume_order="z"),
}
# benchmarks/bench_next_plane.py with the widefield weights on five held-out seeds of each
# structure family and twenty held-out worms (its card, "Default scans"): nuclei's defaults
# stop at the same frames on every family, so the two presets share them
PRESET_SCAN_DEFAULTS["widefield"] = PRESET_SCAN_DEFAULTS["nuclei"]
OTHER_SCAN_DEFAULTS = ScanDefaults(candidate_step_fraction=0.25, relative_epsilon=0.1)
# weights metadata: the defaults `rmz-acq calibrate` chose for the weights it wrote
SCAN_DEFAULTS_KEY = "scan_defaults"


def scan_defaults(model: LoadedModel | str) -> ScanDefaults:
    """What a scan with ``model`` (or a model name) does unless told otherwise.

    In order: the defaults stored in the weights (`rmz-acq calibrate` writes
    them), those of the preset the weights were calibrated from, the shipped
    presets' own (`PRESET_SCAN_DEFAULTS`); any other model gets
    `OTHER_SCAN_DEFAULTS`.

    Raises
    ------
    RmzError
        Weights whose stored defaults cannot be read.
    """
    if isinstance(model, str):
        return PRESET_SCAN_DEFAULTS.get(model, OTHER_SCAN_DEFAULTS)
    stored = model.metadata.get(SCAN_DEFAULTS_KEY)
    if stored:
        try:
            return ScanDefaults(**json.loads(stored))
        except (TypeError, ValueError):
            raise RmzError(
                f"{model.path} stores unreadable scan defaults ({stored!r}); calibrate again "
                "or give --relative-epsilon and --next-plane"
            ) from None
    try:
        parent = json.loads(model.metadata.get("calibrated_from") or "{}").get("name")
    except (AttributeError, ValueError):
        parent = None
    if parent in PRESET_SCAN_DEFAULTS and model.name not in PRESET_SCAN_DEFAULTS:
        return PRESET_SCAN_DEFAULTS[parent]
    return scan_defaults(model.name)


def decision_plane_indices(n_planes: int, count: int = DECISION_PLANES) -> NDArray[np.intp]:
    """Evenly spread indices into a grid of ``n_planes``, both ends included.

    Every output plane's recurrent state is independent of the others, so
    the volume on these planes is exactly the full volume's there, and its
    relative change estimates the whole grid's without favouring any depth.
    """
    if n_planes <= count:
        return np.arange(n_planes)
    return np.unique(np.round(np.linspace(0, n_planes - 1, count)).astype(np.intp))


class PlaneOrder(str, Enum):
    """How candidate planes are ordered."""

    AS_GIVEN = "as-given"
    CENTRE_OUT = "centre-out"
    BISECTION = "bisection"


def _bisection(planes: NDArray[np.float64]) -> list[int]:
    """Coarse to fine: the plane nearest the centre, then each time the
    candidate farthest from every plane already taken (ties: the lower z),
    i.e. the ends, then the quarter points, halving the largest gap each time.
    Indices into the sorted ``planes``.
    """
    order = [int(np.argmin(np.abs(planes - (planes[0] + planes[-1]) / 2)))]
    remaining = set(range(len(planes))) - set(order)
    while remaining:
        taken = planes[order]
        best = max(
            sorted(remaining),
            key=lambda i: float(np.min(np.abs(taken - planes[i]))),
        )
        order.append(best)
        remaining.remove(best)
    return order


def order_planes(planes: Sequence[float], order: PlaneOrder) -> list[float]:
    """Return ``planes`` in acquisition order."""
    values = [float(p) for p in planes]
    if order is PlaneOrder.AS_GIVEN:
        return values
    sorted_planes = np.sort(np.asarray(values))
    if order is PlaneOrder.CENTRE_OUT:
        centre = (sorted_planes[0] + sorted_planes[-1]) / 2
        idx = np.argsort(np.abs(sorted_planes - centre), kind="stable")
        return [float(sorted_planes[i]) for i in idx]
    return [float(sorted_planes[i]) for i in _bisection(sorted_planes)]


class ScanPlan(BaseModel):
    """Candidate planes (acquisition order) and the output grid, checked.

    ``output_planes_um`` is the volume reconstructed; ``candidates_um`` are the
    focus positions the scan may visit, already ordered.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    candidates_um: tuple[float, ...] = Field(min_length=1)
    output_planes_um: tuple[float, ...] = Field(min_length=1)
    order: PlaneOrder = PlaneOrder.BISECTION
    reach_um: float = Field(
        6.0, gt=0, description="how far from the nearest candidate an output plane may lie"
    )

    @model_validator(mode="after")
    def _output_within_reach(self) -> ScanPlan:
        candidates = np.asarray(self.candidates_um)
        distance = [float(np.min(np.abs(candidates - z))) for z in self.output_planes_um]
        far = [z for z, d in zip(self.output_planes_um, distance, strict=True) if d > self.reach_um]
        if far:
            raise ValueError(
                f"output planes {min(far):g} to {max(far):g} um are more than {self.reach_um:g} um "
                "from every candidate plane; add candidates nearer them or narrow the output range"
            )
        return self

    @classmethod
    def build(
        cls,
        output_planes_um: Sequence[float] | NDArray[np.floating],
        *,
        candidates_um: Sequence[float] | None = None,
        candidate_step_um: float | None = None,
        order: PlaneOrder = PlaneOrder.BISECTION,
        reach_um: float = 6.0,
    ) -> ScanPlan:
        """Candidates from a list, or every ``candidate_step_um`` over the output range."""
        output = [float(z) for z in output_planes_um]
        if not output:
            raise RmzError("the output grid has no planes")
        if candidates_um is not None:
            candidates = [float(z) for z in candidates_um]
            if not candidates:
                raise RmzError("the candidate list is empty; give at least one focus plane")
        else:
            step = 1.0 if candidate_step_um is None else candidate_step_um
            if step <= 0:
                raise RmzError(f"candidate spacing must be positive, got {step:g} um")
            lo, hi = min(output), max(output)
            n = int(np.floor((hi - lo) / step + 1e-6)) + 1
            candidates = [lo + step * i for i in range(n)]
        if len(set(candidates)) != len(candidates):
            raise RmzError("the candidate list repeats a plane; give each focus position once")
        try:
            return cls(
                candidates_um=tuple(order_planes(candidates, order)),
                output_planes_um=tuple(output),
                order=order,
                reach_um=reach_um,
            )
        except ValidationError as exc:
            raise RmzError(
                "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            ) from None

    @classmethod
    def for_model(
        cls,
        model: LoadedModel,
        *,
        output_planes_um: Sequence[float] | NDArray[np.floating] | None = None,
        candidates_um: Sequence[float] | None = None,
        candidate_step_um: float | None = None,
        order: PlaneOrder = PlaneOrder.BISECTION,
    ) -> ScanPlan:
        """The plan a scan with ``model`` takes by default; every part can be overridden.

        - output grid: the model's depth at its output step (``0:depth:step``);
        - candidates: every ``candidate_step_um`` (default: the preset's share
          of its input spacing, `scan_defaults`) from half an input spacing
          inside each end of the grid;
        - order: coarse to fine (bisection); reach: one input spacing.

        Raises
        ------
        RmzError
            The model states no output range and none is given; a bad step.
        """
        conditions: dict[str, Any] = model.conditions
        if output_planes_um is None:
            if not conditions:
                raise RmzError(f"model {model.name!r} states no output range; give --z-range")
            depth, step = float(conditions["depth_um"]), float(conditions["output_step_um"])
            count = int(np.floor(depth / step + 1e-6)) + 1
            output_planes_um = np.round(step * np.arange(count), 9)
        planes = np.asarray(output_planes_um, np.float64)
        if planes.size == 0:
            raise RmzError("the output grid has no planes")
        if candidate_step_um is not None and not candidate_step_um > 0:
            raise RmzError(f"candidate spacing must be positive, got {candidate_step_um:g} um")
        spacing = float(conditions.get("input_spacing_um", 0.0))
        if spacing <= 0:  # a model without conditions: judge by the grid
            spacing = max(float(np.ptp(planes)) / 3, 1.0)
        if candidates_um is None:
            step = candidate_step_um or spacing * scan_defaults(model).candidate_step_fraction
            lo, hi = float(planes.min()) + spacing / 2, float(planes.max()) - spacing / 2
            if hi >= lo:
                n = int(np.floor((hi - lo) / step + 1e-6)) + 1
                candidates_um = [float(np.round(lo + step * i, 9)) for i in range(n)]
            else:
                candidates_um = [float(planes.mean())]
        return cls.build(
            planes, candidates_um=candidates_um, order=order, reach_um=max(spacing, 1.0)
        )

    def check_stage_limits(self, limits_um: tuple[float, float] | None) -> None:
        """Refuse the whole plan, before anything moves, if a candidate is out of travel."""
        check_within_limits(self.candidates_um, limits_um)

    def describe(self) -> str:
        """The plan in words (for ``--dry-run``)."""
        out = self.output_planes_um
        return (
            f"output: {len(out)} planes, {min(out):g} to {max(out):g} um\n"
            f"candidates ({self.order.value} order): "
            + ", ".join(f"{z:g}" for z in self.candidates_um)
        )
