"""What a scan leaves behind: per-frame records and ``report.json``.

``preview.png`` is drawn by `rmz_acq.preview.render` (the preview package
listens to the scan; the scan never imports it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RmzError
from ..io.jsonfile import strict_json, write_json_file
from ..io.run_folder import RunReport
from .stop_rules import StopReason

__all__ = ["FrameRecord", "ScanReport"]


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One frame of the scan, as ``report.json`` lists it.

    ``time_s`` is when the frame arrived, from the start of the scan.
    ``frobenius_change`` and ``relative_change`` are ``||V_M - V_(M-1)||``
    over the whole output grid (``None`` for the first frame, and until the
    full grid has caught up with this frame); ``reconstruction_s`` is that
    full update's time, wherever it ran.  The stop rule judged the
    ``decision_*`` change, ``decision_s`` after the frame's arrival; it was
    measured where ``decided_on`` says: on the ``"decision planes"`` as the
    frame arrived (the Frobenius norm scaled to the full grid), or on the
    ``"full grid"`` (a scan without decision planes, or an estimate too
    near the threshold to trust, `ScanSettings.decision_margin`).
    ``plane_score`` and ``plane_reason`` say why the next-plane policy
    chose this frame's plane.  ``saturated_fraction`` is the share of the
    frame's pixels at the camera's largest count or clipped flat
    (`rmz_acq.saturation`); a scan warns where it reaches 0.01 %.
    """

    index: int
    commanded_z_um: float
    measured_z_um: float
    time_s: float
    frobenius_change: float | None
    relative_change: float | None
    reconstruction_s: float
    decision_s: float | None = None
    decision_frobenius_change: float | None = None
    decision_relative_change: float | None = None
    decided_on: str | None = None  # "decision planes" or "full grid"
    plane_score: float | None = None
    plane_reason: str | None = None
    saturated_fraction: float | None = None


@dataclass
class ScanReport:
    """The whole scan: settings, frames, why it stopped, how long it took."""

    stop_reason: StopReason
    epsilon: float | None
    relative_epsilon: float | None
    model: dict[str, str]
    output_planes_um: list[float]
    candidates_um: list[float]
    frames: list[FrameRecord] = field(default_factory=list)
    unused_frames: list[dict[str, float]] = field(default_factory=list)
    durations_s: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    pixel_size_um: float | None = None
    focus_limits_um: list[float] | None = None
    next_plane: str | None = None  # the next-plane policy's name
    volume_order: str | None = None  # the order the final volume was built in
    finished: bool = False

    def to_json(self) -> dict[str, Any]:
        """The report as strict JSON data (a non-finite number becomes ``null``).

        The contract's ``epsilon`` is the threshold in force: the absolute
        one, or the relative one when the scan stops on the relative change
        (``relative_epsilon`` says which).
        """
        data = asdict(self)
        data["stop_reason"] = self.stop_reason.value
        data["frames"] = [asdict(f) for f in self.frames]
        if data["epsilon"] is None:
            data["epsilon"] = self.relative_epsilon
        return strict_json(data)

    @classmethod
    def read(cls, run_dir: str | Path) -> ScanReport:
        """The report of a run folder, as the scan wrote it (`RunReport` reads the file).

        Raises
        ------
        RmzError
            No report there, or one without the contract's keys.
        """
        found = RunReport.read(run_dir)
        known = set(FrameRecord.__dataclass_fields__)
        frames = [FrameRecord(**{k: v for k, v in f.items() if k in known}) for f in found.frames]
        try:
            reason = StopReason(found.stop_reason)
        except ValueError:
            raise RmzError(f"{found.path}: unknown stop_reason {found.stop_reason!r}") from None
        return cls(
            stop_reason=reason,
            epsilon=found.absolute_epsilon,
            relative_epsilon=found.relative_epsilon,
            model=found.model,
            output_planes_um=found.output_planes_um,
            candidates_um=list(found.data.get("candidates_um") or []),
            frames=frames,
            error=found.data.get("error"),
            pixel_size_um=found.pixel_size_um,
            next_plane=found.data.get("next_plane"),
            volume_order=found.volume_order,
            finished=bool(found.data.get("finished", True)),
        )

    def write(self, path: str | Path) -> Path:
        """Write ``report.json`` atomically (the previous version stays whole until then)."""
        return write_json_file(path, self.to_json())
