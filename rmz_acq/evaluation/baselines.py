"""Simple reconstructions to compare Recurrent-MZ against.

- nearest input plane: each output plane is the input frame closest in z;
- linear interpolation between the two input frames that bracket the plane
  (the nearest frame outside their span);
- single-input propagation: the same network fed only the nearest frame
  (M = 1), the paper's Deep-Z comparison.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..model.weights import LoadedModel
from ..session import ReconstructionSession, compute_dtype

__all__ = ["linear_interpolation", "nearest_plane", "single_input_propagation"]


def _nearest_index(z_frames: NDArray[np.float64], plane: float) -> int:
    return int(np.argmin(np.abs(z_frames - plane)))


def nearest_plane(
    frames: NDArray[np.floating], z_frames: NDArray[np.floating], planes: NDArray[np.floating]
) -> NDArray[np.float32]:
    z = np.asarray(z_frames, np.float64)
    return np.stack([frames[_nearest_index(z, p)] for p in planes]).astype(np.float32)


def linear_interpolation(
    frames: NDArray[np.floating], z_frames: NDArray[np.floating], planes: NDArray[np.floating]
) -> NDArray[np.float32]:
    z = np.asarray(z_frames, np.float64)
    order = np.argsort(z)
    zs, stack = z[order], np.asarray(frames, np.float32)[order]
    out = []
    for p in planes:
        if len(zs) == 1 or p <= zs[0]:
            out.append(stack[0] if p <= zs[0] else stack[-1])
            continue
        if p >= zs[-1]:
            out.append(stack[-1])
            continue
        j = int(np.searchsorted(zs, p) - 1)
        t = (p - zs[j]) / (zs[j + 1] - zs[j]) if zs[j + 1] > zs[j] else 0.0
        out.append((1 - t) * stack[j] + t * stack[j + 1])
    return np.stack(out).astype(np.float32)


def single_input_propagation(
    model: LoadedModel,
    frames: NDArray[np.floating],
    z_frames: NDArray[np.floating],
    planes: NDArray[np.floating],
    device: str | None = None,
    precision: str = "float32",
) -> NDArray[np.float32]:
    z = np.asarray(z_frames, np.float64)
    planes = np.asarray(planes, np.float64)
    nearest = np.array([_nearest_index(z, p) for p in planes])
    out = np.zeros((len(planes), *frames.shape[1:]), np.float32)
    for i in np.unique(nearest):
        chosen = np.flatnonzero(nearest == i)
        session = ReconstructionSession(
            model, planes[chosen], device=device, compute_dtype=compute_dtype(precision)
        )
        out[chosen] = session.push(frames[i], float(z[i])).volume
    return out
