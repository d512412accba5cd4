"""A run folder as ``rmz-acq acquire`` writes it, named and read in one place.

The file names are part of the command-line contract (DESIGN.md): the scan
writes them, `rmz-acq view`, ``reconstruct-runs`` and the experiment viewer
read them, all through `RunFiles` and `RunReport`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RmzError

__all__ = [
    "EXPERIMENT",
    "FRAMES",
    "PREVIEW",
    "REPORT",
    "UNUSED_FRAMES",
    "VOLUME",
    "RunFiles",
    "RunReport",
    "volume_after_name",
]

FRAMES = "frames.ome.tif"
UNUSED_FRAMES = "unused_frames.ome.tif"
VOLUME = "volume.ome.tif"
REPORT = "report.json"
PREVIEW = "preview.png"
EXPERIMENT = "experiment.json"
VOLUME_AFTER_PATTERN = "volume_after_*_frames.ome.tif"


def volume_after_name(frames: int) -> str:
    """``--save-history``'s volume after ``frames`` frames."""
    return f"volume_after_{frames:02d}_frames.ome.tif"


@dataclass(frozen=True)
class RunFiles:
    """The paths of one run folder's files."""

    folder: Path

    @property
    def frames(self) -> Path:
        return self.folder / FRAMES

    @property
    def unused_frames(self) -> Path:
        return self.folder / UNUSED_FRAMES

    @property
    def volume(self) -> Path:
        return self.folder / VOLUME

    @property
    def report(self) -> Path:
        return self.folder / REPORT

    @property
    def preview(self) -> Path:
        return self.folder / PREVIEW

    def volume_after(self, frames: int) -> Path:
        return self.folder / volume_after_name(frames)

    @property
    def finished(self) -> bool:
        """A volume and its report are there (the scan wrote them at its end)."""
        return self.volume.is_file() and self.report.is_file()

    @property
    def is_experiment(self) -> bool:
        return (self.folder / EXPERIMENT).is_file()


@dataclass(frozen=True)
class RunReport:
    """``report.json`` read back: the contract's keys as properties, the rest in ``data``."""

    path: Path
    data: dict[str, Any]

    @classmethod
    def read(cls, where: str | Path) -> RunReport:
        """The report of a run folder (or the ``report.json`` itself).

        Raises
        ------
        RmzError
            No report there, or one that is not a JSON object.
        """
        path = Path(where)
        if path.is_dir():
            path = path / REPORT
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise RmzError(f"{path.parent} has no {REPORT}: not a run folder of rmz-acq") from None
        except (OSError, ValueError) as exc:
            raise RmzError(f"{path} cannot be read as JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RmzError(f"{path} is not a scan report (a JSON object expected)")
        return cls(path, data)

    def _required(self, key: str) -> Any:
        if key not in self.data:
            raise RmzError(f"{self.path} lacks {key!r}: not a complete scan report")
        return self.data[key]

    @property
    def output_planes_um(self) -> list[float]:
        planes = self._required("output_planes_um")
        try:
            return [float(z) for z in planes]
        except (TypeError, ValueError):
            raise RmzError(f"{self.path}: output_planes_um is not a list of numbers") from None

    @property
    def frames(self) -> list[dict[str, Any]]:
        frames = self._required("frames")
        if not isinstance(frames, list):
            raise RmzError(f"{self.path}: frames is not a list")
        return frames

    @property
    def stop_reason(self) -> str:
        return str(self._required("stop_reason"))

    @property
    def model(self) -> dict[str, Any]:
        return dict(self.data.get("model") or {})

    @property
    def pixel_size_um(self) -> float | None:
        value = self.data.get("pixel_size_um")
        return float(value) if value is not None else None

    @property
    def relative_epsilon(self) -> float | None:
        value = self.data.get("relative_epsilon")
        return float(value) if value is not None else None

    @property
    def volume_order(self) -> str:
        """The order the scan built its final volume in.

        ``volume_order``; before reports had it, ``settings.volume_order``
        (``"as-taken"`` before scans had the setting).
        """
        built = self.data.get("volume_order")
        if built in ("as-taken", "z"):
            return str(built)
        settings = self.data.get("settings")
        order = settings.get("volume_order") if isinstance(settings, dict) else None
        return str(order) if order else "as-taken"

    @property
    def absolute_epsilon(self) -> float | None:
        """``epsilon`` when the rule was absolute (it holds the relative threshold otherwise)."""
        if self.relative_epsilon is not None:
            return None
        value = self.data.get("epsilon")
        return float(value) if value is not None else None
