"""A useq ``MDASequence`` read as an experiment: positions x time points, one volume each.

rmz_acq honours the parts of a sequence that describe *where* and *when*
(stage positions, a grid plan expanded around them as useq expands it, a
time plan) and reads an optional relative z plan as the candidate planes
around each position's z.  Everything else useq can express but an
adaptive volume cannot honour is refused by name, never ignored.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import useq
from pydantic import ValidationError

from ..errors import InvalidValueError

__all__ = ["ExperimentPlan", "PositionPlan", "load_sequence", "plan_experiment"]


@dataclass(frozen=True)
class PositionPlan:
    """One place the experiment takes a volume at, every time point.

    ``z_um`` is the position's focus reference (the centre of its volume),
    ``None`` where the sequence gives none (the model's own output range
    then applies); ``x_um``/``y_um`` are ``None`` for a sequence without
    positions (the stage stays where it is).
    """

    index: int
    name: str
    x_um: float | None
    y_um: float | None
    z_um: float | None


@dataclass(frozen=True)
class ExperimentPlan:
    """Where and when: positions, the start of each time point, the candidate offsets."""

    positions: tuple[PositionPlan, ...]
    time_points_s: tuple[float, ...]  # start of each time point from the experiment's start
    candidate_offsets_um: tuple[float, ...] | None  # from a relative z plan, or None
    sequence: dict[str, Any]  # the sequence as given (JSON data)

    @property
    def volumes(self) -> int:
        return len(self.positions) * len(self.time_points_s)

    @property
    def interval_s(self) -> float | None:
        """The time between time points, when they are evenly spaced."""
        t = self.time_points_s
        if len(t) < 2:
            return None
        steps = {round(b - a, 6) for a, b in itertools.pairwise(t)}
        return steps.pop() if len(steps) == 1 else None


def load_sequence(path: str | Path) -> useq.MDASequence:
    """Read a useq-schema ``MDASequence`` from YAML or JSON, with a clear error."""
    source = Path(path)
    if not source.is_file():
        raise InvalidValueError(f"--sequence {source}: no such file")
    if source.suffix.lower() not in {".yaml", ".yml", ".json"}:
        raise InvalidValueError(
            f"--sequence {source}: give a useq MDASequence as .yaml, .yml or .json"
        )
    try:
        return useq.MDASequence.from_file(source)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        raise InvalidValueError(
            f"--sequence {source} is not a valid MDASequence: {problems}"
        ) from None
    except Exception as exc:  # a YAML or JSON syntax error
        raise InvalidValueError(f"--sequence {source} could not be read: {exc}") from None


def _refusals(sequence: useq.MDASequence) -> list[str]:
    """What the sequence asks for that an adaptive volume cannot honour."""
    refused = []
    if sequence.channels:
        refused.append(
            "channels: an experiment takes one channel (the volume is reconstructed from "
            "one kind of frame); remove 'channels' and set the light path in the config, "
            "or run one experiment per channel"
        )
    if sequence.autofocus_plan is not None:
        refused.append("autofocus_plan: each volume's focus comes from the position's z; remove it")
    if sequence.keep_shutter_open_across:
        refused.append(
            "keep_shutter_open_across: the scan opens the shutter around each volume; remove it"
        )
    if getattr(sequence, "setup", None) is not None:
        refused.append("setup: set the microscope up in the config instead; remove it")
    if sequence.z_plan is not None and not sequence.z_plan.is_relative:
        refused.append(
            "z_plan: only a relative z plan (range/step, above/below/step, or relative "
            "positions) is understood, as candidate planes around each position's z"
        )
    for i, position in enumerate(sequence.stage_positions):
        if position.sequence is not None:
            refused.append(
                f"stage_positions[{i}].sequence: sub-sequences per position are not supported"
            )
    order = "".join(str(axis) for axis in sequence.axis_order if str(axis) in "tp")
    if sequence.time_plan is not None and sequence.stage_positions and order == "pt":
        refused.append("axis_order: rmz_acq visits every position at each time point (t before p)")
    return refused


def plan_experiment(sequence: useq.MDASequence) -> ExperimentPlan:
    """Positions (grid expanded as useq expands it) and time points of ``sequence``.

    Raises
    ------
    InvalidValueError
        The sequence asks for something rmz_acq would otherwise ignore
        (each refused field named, with the fix).
    """
    refused = _refusals(sequence)
    if refused:
        raise InvalidValueError("the sequence cannot be run as given: " + "; ".join(refused))
    where_when = sequence.replace(z_plan=None, channels=())
    positions: dict[tuple[int, int], PositionPlan] = {}
    starts: dict[int, float] = {}
    for event in where_when.iter_events():
        index = dict(event.index)
        t, p, g = (int(index.get(axis, 0)) for axis in ("t", "p", "g"))
        starts.setdefault(t, float(event.min_start_time or 0.0))
        if (p, g) not in positions:
            name = event.pos_name or f"p{len(positions):03d}"
            if sequence.grid_plan is not None and "g" in index:
                name = f"{name}_g{g:03d}"
            positions[(p, g)] = PositionPlan(
                index=len(positions),
                name=name,
                x_um=event.x_pos,
                y_um=event.y_pos,
                z_um=event.z_pos,
            )
    offsets = None
    if sequence.z_plan is not None:
        offsets = tuple(sorted({round(float(z), 9) for z in sequence.z_plan}))
        if not offsets:
            raise InvalidValueError("z_plan gives no planes; give a range and a step")
    times = tuple(starts[t] for t in sorted(starts)) or (0.0,)
    plan_positions = tuple(positions.values()) or (PositionPlan(0, "p000", None, None, None),)
    return ExperimentPlan(
        positions=plan_positions,
        time_points_s=times,
        candidate_offsets_um=offsets,
        sequence=sequence.model_dump(mode="json", exclude_unset=True),
    )
