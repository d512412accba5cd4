"""The whole volume in bounded memory: batches of output planes through every frame.

A streaming session advances every output plane with each frame, so it
holds the recurrent state of all of them (about planes x frame area x 30
bytes: 12 GiB for 101 planes of 2048 x 2048).  Every plane's state is
independent of the others, so once the frames are known the volume can be
built plane-major instead: a batch of planes through all the frames, then
the next batch, holding the state of one batch only.  Same frames, same
order, same weights: the same volume as the streaming session (to float
round-off), and the same per-frame change ``||V_M - V_(M-1)||`` of the whole
grid, summed over the batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from .model.network import RecurrentMZ
from .model.normalization import IntensityNormalization
from .model.weights import LoadedModel
from .session import ReconstructionSession, measured_plane_tolerance_um

__all__ = ["PlaneBatchResult", "planes_per_batch", "reconstruct_by_plane_batches"]


@dataclass
class PlaneBatchResult:
    """The volume after all frames, and per frame the whole grid's change and cost."""

    volume: NDArray[np.float32]
    frobenius_changes: list[float | None]
    relative_changes: list[float | None]
    seconds: list[float]


def planes_per_batch(state_bytes_per_plane: int, budget_bytes: int, n_planes: int) -> int:
    """The most planes whose state fits ``budget_bytes`` (at least one)."""
    return max(1, min(n_planes, budget_bytes // max(state_bytes_per_plane, 1)))


def reconstruct_by_plane_batches(
    model: RecurrentMZ | LoadedModel,
    frames: Sequence[NDArray[np.number]],
    z_um: Sequence[float],
    planes_um: NDArray[np.floating],
    *,
    batch_planes: int,
    device: str | torch.device | None = None,
    compute_dtype: torch.dtype = torch.float32,
    on_batch: Callable[[int, int], None] | None = None,
    normalization: IntensityNormalization | None = None,
) -> PlaneBatchResult:
    """``frames`` (in order) into ``planes_um``, ``batch_planes`` output planes at a time.

    ``on_batch(done, total)`` after each batch of planes.  ``normalization``:
    fixed intensity statistics (default: the first frame's, as a stream).
    """
    planes = np.asarray(planes_um, np.float64)
    if not len(frames):
        raise ValueError("no frames to reconstruct from")
    height, width = np.asarray(frames[0]).shape
    volume = np.zeros((len(planes), height, width), np.float32)
    tolerance = measured_plane_tolerance_um(planes)
    n = len(frames)
    squared_change = np.zeros(n)
    squared_norm = np.zeros(n)
    seconds = np.zeros(n)
    starts = list(range(0, len(planes), max(1, batch_planes)))
    for done, p0 in enumerate(starts, start=1):
        p1 = min(p0 + batch_planes, len(planes))
        session = ReconstructionSession(
            model,
            planes[p0:p1],
            device=device,
            compute_dtype=compute_dtype,
            plane_tolerance_um=tolerance,
            blend_centre_um=0.5 * float(planes.min() + planes.max()),
            normalization=normalization,
        )
        for m, (frame, z) in enumerate(zip(frames, z_um, strict=True)):
            started = time.perf_counter()
            result = session.push(frame, float(z))
            seconds[m] += time.perf_counter() - started
            if result.frobenius_change is not None:
                squared_change[m] += result.frobenius_change**2
            # plane by plane: no float64 copy of the batch (0.5 GiB at 2048 px)
            squared_norm[m] += sum(
                float(np.einsum("ij,ij->", plane, plane, dtype=np.float64))
                for plane in result.volume
            )
        volume[p0:p1] = session.volume  # type: ignore[assignment]
        del session
        if on_batch is not None:
            on_batch(done, len(starts))
    changes: list[float | None] = [None] + [float(np.sqrt(c)) for c in squared_change[1:]]
    relative: list[float | None] = [None] + [
        float(np.sqrt(c) / max(np.sqrt(s), 1e-30))
        for c, s in zip(squared_change[1:], squared_norm[1:], strict=True)
    ]
    return PlaneBatchResult(volume, changes, relative, [float(s) for s in seconds])
