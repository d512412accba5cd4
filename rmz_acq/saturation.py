"""Saturated frames: pixels at the top of the camera's range, or clipped flat.

Where a camera saturates (its full well, or the largest count its bit depth
holds), the frame records only a lower bound of the light.  Recurrent-MZ
reads the defocus of each frame's structures to place them in z; a flat top
carries no defocus, so the volume near a saturated plane is unreliable, and
a saturated z-stack is no ground truth there either.  The `flowdec` neuron
stack that `benchmarks/generalisation.py` scores is one: its soma is clipped
at 255 in 17 of its 50 planes, 0.13 % of its voxels, which costs the
`nuclei` preset 1.3 dB of PSNR on the truth's scale
(`benchmarks/neuron_planes.py`).

A frame counts as saturated where its pixels reach ``ceiling`` (the camera's
largest count, where it is known), or where its maximum is a pile-up: at
least `PILE_UP_PIXELS` pixels share it exactly, `PILE_UP_RATIO` times as
many as share the next value below, and it lies above the frame's median.
A noisy image thins out towards its brightest pixel; a digitally clipped
one piles up there, whether the clip is the bit depth, a file rescaled to
8 bits, or a display range burnt in.  What is not found: a full well that
fills below the top count with read noise added after it (the top is then
a few counts wide, and only the camera's ceiling would tell), and a frame
clipped all over (no top left to pile up).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .errors import DataWarning

__all__ = [
    "PILE_UP_PIXELS",
    "PILE_UP_RATIO",
    "WARN_FRACTION",
    "Saturation",
    "camera_ceiling",
    "find_saturation",
    "saturated_planes_note",
    "saturation_note",
    "warn_if_saturated",
]

# A clipped top: at least PILE_UP_PIXELS pixels share the maximum, PILE_UP_RATIO
# times as many as share the next value below it.
PILE_UP_PIXELS = 4
PILE_UP_RATIO = 2.0
# Saturated share of a frame worth a warning (0.01 %: 6 px of 256 x 256,
# 420 px of 2048 x 2048; a hot pixel or two is not).
WARN_FRACTION = 1e-4


@dataclass(frozen=True, slots=True)
class Saturation:
    """The saturated pixels of one frame: how many, their share, their value."""

    pixels: int
    fraction: float
    value: float | None  # the saturated count (None where nothing is saturated)

    @property
    def worth_warning(self) -> bool:
        return self.fraction >= WARN_FRACTION


def camera_ceiling(bit_depth: int | None, dtype: np.dtype | None = None) -> float | None:
    """The largest count a camera of ``bit_depth`` bits (or an integer ``dtype``) can hold."""
    if bit_depth is not None and bit_depth > 0:
        return float(2**bit_depth - 1)
    if dtype is not None and np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return None


def find_saturation(frame: NDArray[np.number], ceiling: float | None = None) -> Saturation:
    """The pixels of ``frame`` at ``ceiling``, or piled up at its maximum (module docstring)."""
    image = np.asarray(frame)
    if image.size == 0:
        raise ValueError("an empty frame has no pixels to check for saturation")
    top = image.max()
    if ceiling is not None and top >= ceiling:
        count = int(np.count_nonzero(image >= ceiling))
        return Saturation(count, count / image.size, float(ceiling))
    at_top = int(np.count_nonzero(image == top))
    if at_top < PILE_UP_PIXELS:
        return Saturation(0, 0.0, None)
    below = image[image < top]
    if below.size == 0 or top <= np.median(image):  # a flat frame: no top to pile up
        return Saturation(0, 0.0, None)
    if at_top < PILE_UP_RATIO * np.count_nonzero(below == below.max()):
        return Saturation(0, 0.0, None)
    return Saturation(at_top, at_top / image.size, float(top))


def saturation_note(what: str, found: Saturation) -> str:
    """One line for a saturated frame: what, how much, and what to do about it."""
    return (
        f"{what}: {found.fraction:.2%} of its pixels ({found.pixels}) are saturated at "
        f"{found.value:g}; the camera recorded only a lower bound there, so the volume near "
        "this plane is unreliable. Lower the exposure, gain or light power and take it again"
    )


def saturated_planes_note(
    found: Sequence[Saturation], z_um: Sequence[float] | NDArray[np.floating], source: str
) -> str | None:
    """One line naming the planes in ``found`` saturated beyond `WARN_FRACTION` (None: none)."""
    bad = [(float(z), s) for z, s in zip(z_um, found, strict=True) if s.worth_warning]
    if not bad:
        return None
    worst_z, worst = max(bad, key=lambda pair: pair[1].fraction)
    if len(bad) == 1:
        return saturation_note(f"{source}, the plane at z {worst_z:g} um", worst)
    where = ", ".join(f"{z:g}" for z, _ in bad[:6]) + (", ..." if len(bad) > 6 else "")
    return saturation_note(
        f"{source}: {len(bad)} of {len(found)} planes saturated (z {where} um); "
        f"the worst, at z {worst_z:g} um",
        worst,
    )


def warn_if_saturated(
    frames: Sequence[NDArray[np.number]] | NDArray[np.number],
    z_um: Sequence[float] | NDArray[np.floating],
    source: str,
    ceiling: float | None = None,
) -> list[Saturation]:
    """One `DataWarning` naming the planes of ``frames`` saturated beyond `WARN_FRACTION`.

    Returns each frame's `Saturation`; ``source`` names the file in the message.
    """
    found = [find_saturation(f, ceiling) for f in frames]
    note = saturated_planes_note(found, z_um, source)
    if note is not None:
        warnings.warn(note, DataWarning, stacklevel=2)
    return found
