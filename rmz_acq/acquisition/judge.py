"""The stop rule fed frame by frame: decision planes, their change, the verdict.

Shared by the live scan (`AdaptiveScan`) and its offline replay
(`rmz_acq.validation`), so a replay decides exactly as a live scan fed the
same frames would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import torch
from numpy.typing import NDArray

from ..fidelity import noise_variance
from ..model.weights import LoadedModel
from ..session import PushResult, ReconstructionSession, compute_dtype
from .plan import ScanPlan, decision_plane_indices
from .settings import ScanSettings
from .stop_rules import ScanProgress, StopReason, evenly_spaced, first_stop, relative_change

__all__ = ["FullChanges", "GridChange", "ScanJudge", "Verdict", "within_margin"]

# Frames are larger than this only in area: their noise is estimated on a central crop
NOISE_CROP_PX = 512


class GridChange(NamedTuple):
    """What one frame did to the full grid, as far as the stop rule needs it."""

    frobenius: float | None
    relative: float | None  # to the volume's norm
    centred_norm: float | None
    voxels: int

    @classmethod
    def of(cls, result: PushResult) -> GridChange:
        return cls(
            result.frobenius_change, result.relative_change, result.centred_norm, result.voxels
        )


# The full grid's change for one frame, or None when it cannot be had (the
# scan was cancelled while waiting for it)
FullChanges = Callable[[], GridChange | None]


def frame_noise_rms(frame: NDArray[np.number]) -> float:
    """A frame's typical noise (standard deviation per pixel), from its central crop."""
    height, width = frame.shape[-2:]
    top, left = max(0, (height - NOISE_CROP_PX) // 2), max(0, (width - NOISE_CROP_PX) // 2)
    crop = frame[..., top : top + NOISE_CROP_PX, left : left + NOISE_CROP_PX]
    return float(np.sqrt(noise_variance(np.asarray(crop, np.float64))))


def within_margin(value: float | None, threshold: float, margin: float) -> bool:
    """Whether ``value`` lies within ``margin`` (a fraction) of ``threshold``, either side."""
    if value is None or margin <= 0:
        return False
    return threshold / (1 + margin) < value < threshold * (1 + margin)


class Verdict(NamedTuple):
    """What the rule saw after one frame, and its decision (``None``: go on).

    ``plane_changes`` and ``plane_signal`` are per judged plane (`ScanJudge.planes_um`,
    or the full grid): the frame's change there and the volume's standard
    deviation there, for the next-plane policy.
    """

    frobenius_change: float | None  # scaled to the full grid
    relative_change: float | None
    stop: StopReason | None
    plane_changes: NDArray[np.float64] | None = None
    plane_signal: NDArray[np.float64] | None = None
    full_grid: bool = False  # the change judged was the full grid's (near the threshold)


class ScanJudge:
    """Judges each frame of a scan on a few evenly spread output planes.

    Every output plane's recurrent state is independent of the others, so
    the volume on the decision planes is exactly the full volume's there and
    its relative change estimates the whole grid's; the Frobenius norm is
    scaled by ``sqrt(planes / decision planes)``.  When the decision planes
    would be half the grid or more (or ``settings.decision_planes`` is
    ``None``) there is no decision session: the caller's full push is judged.

    An estimate within ``settings.decision_margin`` of the threshold is not
    trusted: eleven planes of a sparse bead volume put the change on the
    wrong side of epsilon in a quarter of the scans.  There the full grid's
    own change for the frame decides, when the caller can give it (``full``,
    or ``full_changes``, which may wait for the completion to reach the frame).
    With ``settings.stop_at == "even"`` the rule may fire only when the
    planes judged so far are evenly spaced over the candidates' span; on
    other frames the full grid is never waited for.
    """

    def __init__(
        self,
        model: LoadedModel,
        plan: ScanPlan,
        settings: ScanSettings,
        *,
        device: str | torch.device | None = None,
    ) -> None:
        self.settings = settings
        self.n_candidates = len(plan.candidates_um)
        self.span_um = (min(plan.candidates_um), max(plan.candidates_um))
        self.taken_um: list[float] = []  # the planes judged, as planned (commanded)
        self.noise_rms: list[float] = []  # per frame (relative to structure and noise only)
        planes = np.asarray(plan.output_planes_um, np.float64)
        chosen = (
            decision_plane_indices(len(planes), settings.decision_planes)
            if settings.decision_planes is not None
            else np.arange(len(planes))
        )
        self.session: ReconstructionSession | None = None
        self.grid_um = planes
        self.scale = 1.0
        if 2 * len(chosen) <= len(planes):
            self.session = ReconstructionSession(
                model,
                planes[chosen],
                device=device,
                compute_dtype=compute_dtype(settings.precision),
                blend_centre_um=0.5 * float(planes.min() + planes.max()),
            )
            self.scale = float(np.sqrt(len(planes) / len(chosen)))

    @property
    def planes_um(self) -> NDArray[np.float64] | None:
        """The decision planes, or ``None`` when the full grid decides."""
        return None if self.session is None else self.session.output_planes_um

    @property
    def judged_planes_um(self) -> NDArray[np.float64]:
        """The planes a verdict's per-plane figures are on: the decision planes or the grid."""
        return self.grid_um if self.session is None else self.session.output_planes_um

    def judge(
        self,
        index: int,
        frame: NDArray[np.number],
        z_um: float,
        *,
        elapsed_s: float = 0.0,
        full: PushResult | None = None,
        full_changes: FullChanges | None = None,
        planned_um: float | None = None,
    ) -> Verdict:
        """Push frame ``index`` into the decision planes (or take ``full``) and judge it.

        ``full`` is the full grid's push of this frame, when the caller has
        made it; ``full_changes`` gives the full grid's changes when asked
        (only near the threshold); ``planned_um`` is the plane the frame was
        meant for (default ``z_um``, the measured one), for ``stop_at``.
        """
        self.taken_um.append(float(z_um if planned_um is None else planned_um))
        if self.settings.relative_to == "structure-noise":
            self.noise_rms.append(frame_noise_rms(frame))
        if self.session is not None:
            result = self.session.push(frame, z_um)
        elif full is not None:
            result = full
        else:
            raise ValueError("no decision planes: pass the full grid's push result")
        frobenius = None if result.frobenius_change is None else result.frobenius_change
        if frobenius is not None and self.session is not None:
            frobenius *= self.scale
        progress = ScanProgress(
            frames=index + 1,
            frobenius_change=frobenius,
            relative_change=self._relative(GridChange.of(result)),
            elapsed_s=elapsed_s,
            candidates_left=self.n_candidates - index - 1,
            evenly_spaced=evenly_spaced(self.taken_um, *self.span_um),
        )
        full_grid = False
        if self.session is not None and self._near_threshold(progress):
            exact = (
                GridChange.of(full)
                if full is not None
                else (full_changes() if full_changes is not None else None)
            )
            if exact is not None:
                progress = replace(
                    progress,
                    frobenius_change=exact.frobenius,
                    relative_change=self._relative(exact),
                )
                full_grid = True
        stop = first_stop(
            self.settings.rules(),
            progress,
            min_frames=self.settings.min_frames,
            stop_at=self.settings.stop_at,
        )
        signal = result.volume.reshape(len(result.volume), -1).std(axis=1, dtype=np.float64)
        return Verdict(
            progress.frobenius_change,
            progress.relative_change,
            stop,
            result.plane_changes,
            signal,
            full_grid,
        )

    def _relative(self, change: GridChange) -> float | None:
        """The change relative to what ``settings.relative_to`` names."""
        if self.settings.relative_to == "volume":
            return change.relative
        return relative_change(
            change.frobenius,
            norm=0.0,  # not used
            centred_norm=change.centred_norm,
            voxels=change.voxels,
            noise_rms=float(np.mean(self.noise_rms)),
            relative_to=self.settings.relative_to,
        )

    def _near_threshold(self, progress: ScanProgress) -> bool:
        """Whether the change the rule reads is too near its threshold to trust an estimate."""
        settings = self.settings
        if progress.frames < settings.min_frames or (
            settings.stop_at == "even" and not progress.evenly_spaced
        ):
            return False  # the rule cannot fire on this frame
        if settings.epsilon is not None:
            value, threshold = progress.frobenius_change, settings.epsilon
        elif settings.relative_epsilon is not None:
            value, threshold = progress.relative_change, settings.relative_epsilon
        else:
            return False
        return within_margin(value, threshold, settings.decision_margin)
