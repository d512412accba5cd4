"""``experiment.json``: the sequence as given, and what happened to every volume."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..io.jsonfile import strict_json, write_json_file

__all__ = ["ExperimentReport", "VolumeRecord"]


@dataclass
class VolumeRecord:
    """One volume: where, when (seconds from the experiment's start), how it ended.

    ``late_s``: how long after its time point's scheduled start the volume
    began (0 for the first position of a time point that started on time).
    ``stop_reason`` is the scan's (``report.json``), ``error`` for a volume
    that could not be taken, ``None`` while it runs.
    """

    p: int
    t: int
    position: str
    position_um: dict[str, float | None]
    scheduled_s: float
    started_s: float
    late_s: float
    run: str
    stop_reason: str | None = None
    frames: int = 0
    error: str | None = None
    finished_s: float | None = None
    in_zarr: bool = False


@dataclass
class ExperimentReport:
    """The whole experiment (``RUN_DIR/experiment.json``)."""

    sequence: dict[str, Any]
    model: dict[str, str]
    positions: list[dict[str, Any]]
    time_points_s: list[float]
    on_error: str
    volumes: list[VolumeRecord] = field(default_factory=list)
    stop_reason: str = "running"  # completed | cancelled | error (then) | running (so far)
    error: str | None = None
    lateness: dict[str, float | int] = field(default_factory=dict)
    durations_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    finished: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["volumes"] = [asdict(v) for v in self.volumes]
        return strict_json(data)

    def write(self, path: str | Path) -> Path:
        return write_json_file(path, self.to_json())

    def update_lateness(self) -> None:
        """Lateness of the time points' starts (the first volume of each)."""
        starts: dict[int, float] = {}
        for volume in self.volumes:
            starts.setdefault(volume.t, volume.late_s)
        late = [s for s in starts.values() if s > LATE_TOLERANCE_S]
        self.lateness = {
            "late_time_points": len(late),
            "max_late_s": max(starts.values(), default=0.0),
            "mean_late_s": sum(starts.values()) / len(starts) if starts else 0.0,
        }


# A time point that starts this much after its schedule is counted late
# (below it is the scheduler's own jitter).
LATE_TOLERANCE_S = 0.05
