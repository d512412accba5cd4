"""Stage safety: no focus move outside the travel limits, ever.

A real objective can be driven into the slide.  Every plan is checked in
full against the focus stage's limits before the first move, and a plan
with any plane outside them is refused whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import StageSafetyError

__all__ = ["check_within_limits"]


def check_within_limits(planes_um: Sequence[float], limits_um: tuple[float, float] | None) -> None:
    """Raise `StageSafetyError` unless every plane lies within ``limits_um``.

    Unknown limits (``None``) are refused too: the user must state them.
    """
    if limits_um is None:
        raise StageSafetyError(
            "the focus stage does not report travel limits; give them explicitly "
            "(--z-limits LOW:HIGH in micrometres) so no move can hit the sample"
        )
    lo, hi = limits_um
    outside = [z for z in planes_um if not lo <= z <= hi]
    if outside:
        raise StageSafetyError(
            f"{len(outside)} planned z position(s) ({min(outside):g} to {max(outside):g} um) "
            f"are outside the focus travel limits [{lo:g}, {hi:g}] um; nothing was "
            "moved. Narrow the z range."
        )
