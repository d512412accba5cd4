"""Intensity normalisation of frames before the network, and its inverse.

The statistics come from the *first* frame of a run (the only one known when
streaming starts), are fixed for the rest of it, and invert exactly, so the
reconstruction comes back in the camera's units.  Where every frame is known
before the first is pushed (a z-stack: a file reconstructed ``--order z``, or
a scan's final volume rebuilt sorted by z), they come from all the frames
together (`IntensityNormalization.from_frames`), so the scale does not depend
on which frame happens to be first.  Two methods (`IntensityMethod`):

``"triangle"`` (the paper, section 4.1, and the first presets)
    shift by the mean of the background and scale by the 99th percentile of
    the foreground, the two separated by a triangle threshold.  On a frame
    far from focus the foreground is a faint haze, so the scale depends on
    *which* frame came first: up to 27 times apart across one bead stack and
    2.5 times across a nuclei stack, and a run that starts outside the
    specimen normalises later in-focus frames to values far outside those
    seen in training.

``"energy"`` (the default for new models)
    shift by the frame's mean and scale by the mean minus its 1st percentile
    (the dark floor).  Defocus spreads light but does not remove it, so a
    wide-field frame's mean is the same at every focus (within 6 % across
    the same stacks, against the light lost past the field's edge), and the
    dark floor moves little: whichever frame comes first sets nearly the same
    scale (1.2 times apart across a bead stack, 1.9 across a nuclei stack,
    against 98 and 6 times for the triangle method).  On that scale a bright
    object in a dark field is far above 1 (a lone neuron's soma reaches 90),
    so values are then compressed, ``c * asinh(v / c)`` with ``c = 3``: linear
    below about 3, logarithmic above, and inverted exactly on the output.
    Both statistics follow ``a * frame + b`` exactly, so the reconstruction
    of rescaled frames is the rescaled reconstruction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ENERGY_COMPRESSION",
    "INTENSITY_METHODS",
    "NORMALIZATIONS",
    "IntensityMethod",
    "IntensityNormalization",
    "fixed_normalization",
    "triangle_threshold",
]

IntensityMethod = Literal["triangle", "energy"]
INTENSITY_METHODS: tuple[IntensityMethod, ...] = get_args(IntensityMethod)
# Whose statistics scale a run's frames: the first frame's (a stream) or all
# the frames' together (a z-stack, every frame known first).
NORMALIZATIONS = ("first", "all")


def triangle_threshold(image: NDArray[np.floating], bins: int = 256) -> float:
    """Zack's triangle threshold of an image's histogram.

    The threshold is where the histogram is farthest below the line from its
    peak to its far tail: good for a large dark background with a long tail
    of brighter structure, which is what fluorescence frames are.
    """
    values = np.asarray(image, np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return hi
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    peak = int(np.argmax(counts))
    nonzero = np.flatnonzero(counts)
    # The line runs from the peak to the farther end of the histogram.
    end = int(nonzero[-1]) if nonzero[-1] - peak >= peak - nonzero[0] else int(nonzero[0])
    if end == peak:
        return float(edges[peak + 1])
    idx = np.arange(min(peak, end), max(peak, end) + 1)
    x0, y0, x1, y1 = peak, counts[peak], end, counts[end]
    distance = np.abs((y1 - y0) * idx - (x1 - x0) * counts[idx] + x1 * y0 - y1 * x0)
    best = int(idx[np.argmax(distance)])
    return float(edges[best + 1] if end > peak else edges[best])


# Where the energy method's compression turns from linear to logarithmic.
ENERGY_COMPRESSION = 3.0
# The largest compressed value inverted: sinh beyond it would overflow float32
# long before any camera could record it.
_MAX_COMPRESSED = 60.0
# At most this many pixels enter `IntensityNormalization.from_frames` (a
# regular lateral stride beyond): seventeen 2048 x 2048 frames would otherwise
# need 0.6 GB of float64 for a handful of statistics.
POOLED_PIXELS = 4_000_000


@dataclass(frozen=True)
class IntensityNormalization:
    """``v = (raw - shift) / scale``, then ``c * asinh(v / c)`` when ``compression`` c > 0.

    `invert` undoes both: ``raw = c * sinh(n / c) * scale + shift``.
    """

    shift: float
    scale: float
    compression: float = 0.0

    @classmethod
    def from_frame(
        cls,
        frame: NDArray[np.number],
        percentile: float = 99.0,
        method: IntensityMethod = "triangle",
    ) -> IntensityNormalization:
        """Statistics of one frame by ``method`` (see the module docstring).

        ``percentile`` is the foreground percentile of the triangle method.
        """
        values = np.asarray(frame, np.float64)
        if not np.isfinite(values).all():
            raise ValueError("frame has NaN or infinite pixels; replace them before reconstructing")
        if method == "energy":
            return cls._energy(values)
        if method != "triangle":
            raise ValueError(
                f"intensity method {method!r} is not one of {', '.join(INTENSITY_METHODS)}"
            )
        threshold = triangle_threshold(values)
        background = values[values <= threshold]
        foreground = values[values > threshold]
        shift = float(background.mean()) if background.size else float(values.min())
        top = (
            float(np.percentile(foreground, percentile)) if foreground.size else float(values.max())
        )
        scale = top - shift
        # A blank frame has no foreground: fall back to the noise level so the
        # scale never collapses to zero.
        floor = max(float(values.std()), 1e-6 * max(abs(shift), 1.0), 1e-12)
        return cls(shift=shift, scale=max(scale, floor))

    @classmethod
    def from_frames(
        cls,
        frames: Sequence[NDArray[np.number]] | NDArray[np.number],
        method: IntensityMethod = "triangle",
    ) -> IntensityNormalization:
        """Statistics of all the frames together, whatever their order.

        Where every frame is known before the first is pushed (a file, or a
        scan's final volume rebuilt as a z-stack), the scale need not rest on
        the one frame that happened to come first: a field whose haze or dark
        floor changes with focus gives frames whose own scales differ up to
        three times (`benchmarks/generalisation.py`, cells).  Pixels are taken
        on a regular lateral stride so that at most `POOLED_PIXELS` enter the
        statistics; both still follow ``a * frames + b`` exactly.

        Raises
        ------
        ValueError
            No frames, frames of different sizes, or NaN / infinite pixels.
        """
        if len(frames) == 0:
            raise ValueError("no frames to take intensity statistics from")
        shapes = {np.shape(f) for f in frames}
        if len(shapes) != 1:
            raise ValueError(f"frames differ in size ({sorted(shapes)}); give frames of one size")
        height, width = np.shape(frames[0])[-2:]
        stride = max(1, int(np.ceil(np.sqrt(len(frames) * height * width / POOLED_PIXELS))))
        sample = np.stack([np.asarray(f)[..., ::stride, ::stride] for f in frames])
        return cls.from_frame(sample, method=method)

    @classmethod
    def _energy(cls, values: NDArray[np.float64]) -> IntensityNormalization:
        mean = float(values.mean())
        spread = mean - float(np.percentile(values, 1.0))
        # A flat frame has no spread: fall back to a tiny positive scale
        # relative to its level so that nothing divides by zero.
        floor = max(1e-6 * max(abs(mean), 1.0), 1e-12)
        return cls(shift=mean, scale=max(spread, floor), compression=ENERGY_COMPRESSION)

    def apply(self, raw: NDArray[np.number]) -> NDArray[np.float32]:
        linear = (np.asarray(raw, np.float32) - self.shift) / self.scale
        if self.compression > 0:
            c = np.float32(self.compression)
            linear = c * np.arcsinh(linear / c)
        return linear.astype(np.float32)

    def invert(self, normalised: NDArray[np.floating]) -> NDArray[np.float32]:
        values = np.asarray(normalised, np.float32)
        if self.compression > 0:
            c = np.float32(self.compression)
            values = c * np.sinh(np.clip(values, -_MAX_COMPRESSED, _MAX_COMPRESSED) / c)
        return (values * self.scale + self.shift).astype(np.float32)


def fixed_normalization(
    frames: Sequence[NDArray[np.number]] | NDArray[np.number],
    method: IntensityMethod,
    statistics: str,
) -> IntensityNormalization | None:
    """The fixed normalisation for ``statistics`` in `NORMALIZATIONS`.

    ``"all"``: `IntensityNormalization.from_frames`; ``"first"``: None (a
    session then takes the first frame's when it arrives).

    Raises
    ------
    ValueError
        ``statistics`` is neither.
    """
    if statistics not in NORMALIZATIONS:
        raise ValueError(f"normalization {statistics!r} is not one of {', '.join(NORMALIZATIONS)}")
    return (
        IntensityNormalization.from_frames(frames, method=method) if statistics == "all" else None
    )
