"""Stage and memory safety: checked in full before anything moves.

A real objective can be driven into the slide.  Every plan is checked in
full against the focus stage's limits before the first move, and a plan
with any plane outside them is refused whole.  Limits the user gives can only
narrow the travel the stage reports, never widen it.  A plan whose volume
will not fit in memory is refused before the stage moves too, not after.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import RmzError, StageSafetyError

if TYPE_CHECKING:
    import torch

__all__ = [
    "MEMORY_SHARE",
    "XYLimits",
    "available_memory_bytes",
    "check_memory",
    "check_within_limits",
    "check_xy_within_limits",
    "format_um",
    "travel_limits",
    "xy_travel_limits",
]

# A plane this close outside a limit (well below any stage's resolution) is
# round-off from arithmetic on the plan, not a move past the limit.
_ROUND_OFF_UM = 1e-9

# Share of the free memory a plan may count on (the rest is for the frames,
# the network's activations, Python and everyone else).
MEMORY_SHARE = 0.8


def format_um(value: float) -> str:
    """A position as it is: 12.0000001 stays 12.0000001 (never rounded to 12)."""
    return f"{value:.15g}"


def travel_limits(
    stage_um: tuple[float, float] | None, user_um: tuple[float, float] | None
) -> tuple[tuple[float, float], str | None]:
    """The focus travel a scan may use, and a note when the user's limits were cut.

    ``user_um`` (``--z-limits``) can only narrow what the stage reports; where
    the stage reports nothing, the user's limits are required.

    Raises
    ------
    StageSafetyError
        Neither gives limits, or the user's limits lie outside the stage's.
    """
    if stage_um is None:
        if user_um is None:
            raise StageSafetyError(
                "the focus stage does not report travel limits; give them explicitly "
                "(--z-limits LOW:HIGH in micrometres) so no move can hit the sample"
            )
        return user_um, None
    if user_um is None:
        return stage_um, None
    lo, hi = max(stage_um[0], user_um[0]), min(stage_um[1], user_um[1])
    if lo > hi:
        raise StageSafetyError(
            f"--z-limits {format_um(user_um[0])}:{format_um(user_um[1])} um lies outside the "
            f"focus stage's travel [{format_um(stage_um[0])}, {format_um(stage_um[1])}] um; "
            "give limits within it"
        )
    note = None
    if (lo, hi) != tuple(user_um):
        note = (
            f"--z-limits {format_um(user_um[0])}:{format_um(user_um[1])} reaches beyond the "
            f"focus stage's travel [{format_um(stage_um[0])}, {format_um(stage_um[1])}] um; "
            f"--z-limits can only narrow it: using [{format_um(lo)}, {format_um(hi)}] um"
        )
    return (lo, hi), note


def check_within_limits(planes_um: Sequence[float], limits_um: tuple[float, float] | None) -> None:
    """Raise `StageSafetyError` unless every plane lies within ``limits_um``.

    Unknown limits (``None``) are refused too: the user must state them.
    Positions are reported as given, never rounded into the limits.
    """
    if limits_um is None:
        travel_limits(None, None)  # raises: the user must state limits
        return
    lo, hi = limits_um
    outside = [float(z) for z in planes_um if not lo - _ROUND_OFF_UM <= z <= hi + _ROUND_OFF_UM]
    if outside:
        where = (
            format_um(outside[0])
            if len(outside) == 1
            else f"{format_um(min(outside))} to {format_um(max(outside))}"
        )
        raise StageSafetyError(
            f"{len(outside)} planned z position(s) ({where} um) are outside the focus travel "
            f"limits [{format_um(lo)}, {format_um(hi)}] um; nothing was moved. Narrow the "
            "z range or the candidate planes."
        )


def available_memory_bytes(device: str | torch.device = "cpu") -> int | None:
    """Free memory on ``device`` (RAM for the CPU), or ``None`` if unknown."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _total = torch.cuda.mem_get_info(device)
        except (RuntimeError, AssertionError):
            return None
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n < 2**40 else f"{n / 2**40:.2f} TiB"


def check_memory(
    needs: dict[str, int],
    *,
    device: str | torch.device = "cpu",
    what: str,
    fix: str,
    available: int | None = None,
) -> None:
    """Refuse a plan whose parts ``needs`` (name: bytes) exceed the free memory.

    Parameters
    ----------
    needs
        Bytes by what holds them, e.g. ``{"recurrent state": ..., "volume": ...}``.
    device
        Where the largest part lives (free GPU memory for ``cuda``).
    what
        The plan in words, e.g. ``"40001 output planes of 256 x 256 px"``.
    fix
        How to make it fit.
    available
        Free bytes (default: measured now); unknown memory is not refused.

    Raises
    ------
    RmzError
        The plan needs more than 80 % of the free memory.
    """
    import torch

    free = available_memory_bytes(device) if available is None else available
    total = sum(needs.values())
    if free is None or total <= MEMORY_SHARE * free:
        return
    parts = ", ".join(f"{name} {_gib(n)}" for name, n in needs.items())
    raise RmzError(
        f"{what} need about {_gib(total)} ({parts}) but only {_gib(free)} is free on "
        f"{torch.device(device)}; nothing was moved. {fix}"
    )


XYLimits = tuple[tuple[float, float], tuple[float, float]]


def xy_travel_limits(
    stage_um: XYLimits | None, user_um: XYLimits | None
) -> tuple[XYLimits, list[str]]:
    """The XY travel an experiment may use (as `travel_limits`, per axis), and notes.

    Raises
    ------
    StageSafetyError
        Neither gives limits, or the user's lie outside the stage's.
    """
    if stage_um is None and user_um is None:
        raise StageSafetyError(
            "the XY stage does not report travel limits; give them explicitly "
            "(--xy-limits XLOW:XHIGH,YLOW:YHIGH in micrometres) so no move can hit anything"
        )
    axes, notes = [], []
    for k, axis in enumerate("xy"):
        stage = None if stage_um is None else stage_um[k]
        user = None if user_um is None else user_um[k]
        try:
            limits, note = travel_limits(stage, user)
        except StageSafetyError as exc:
            raise StageSafetyError(
                str(exc).replace("--z-limits", "--xy-limits").replace("focus stage", "XY stage")
                + f" (the {axis} axis)"
            ) from None
        axes.append(limits)
        if note:
            notes.append(
                note.replace("--z-limits", "--xy-limits").replace("focus stage", "XY stage")
                + f" (the {axis} axis)"
            )
    return (axes[0], axes[1]), notes


def check_xy_within_limits(
    positions_um: Sequence[tuple[str, float, float]], limits_um: XYLimits
) -> None:
    """Refuse every ``(name, x, y)`` outside ``limits_um``, all named at once."""
    (xlo, xhi), (ylo, yhi) = limits_um
    outside = [
        f"{name} (x {format_um(x)}, y {format_um(y)})"
        for name, x, y in positions_um
        if not (xlo <= x <= xhi and ylo <= y <= yhi)
    ]
    if outside:
        raise StageSafetyError(
            f"{len(outside)} position(s) lie outside the XY travel x [{format_um(xlo)}, "
            f"{format_um(xhi)}], y [{format_um(ylo)}, {format_um(yhi)}] um: "
            + ", ".join(outside[:5])
            + (", ..." if len(outside) > 5 else "")
            + "; nothing moved (fix the positions, or the limits if they are wrong)"
        )
