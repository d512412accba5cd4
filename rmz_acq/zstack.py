"""A full mechanical z-stack through ``core.mda``: the ground-truth scan.

Every plane is moved to by the MDA runner, snapped, and appended to the
output file as it arrives, with the z the stage *reports* after the move
(which differs from the commanded z on a stage with positioning error).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import useq
from pymmcore_plus import CMMCorePlus

from .errors import AcquisitionError
from .hardware import MicroscopeSummary, connect_on_runner_thread, light_path_open, summarize
from .io import FrameStackWriter
from .safety import check_within_limits, travel_limits

__all__ = ["FrameRecord", "acquire_zstack"]


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One acquired frame: where it was asked for and where the stage was."""

    index: int
    commanded_z_um: float
    measured_z_um: float


def acquire_zstack(
    core: CMMCorePlus,
    planes_um: Sequence[float],
    output: str | Path,
    *,
    z_step_um: float | None = None,
    limits_um: tuple[float, float] | None = None,
    on_frame: Callable[[FrameRecord], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[FrameRecord]:
    """Acquire one frame at each z through ``core.mda`` and write an OME-TIFF.

    Parameters
    ----------
    core
        A loaded core with camera, focus stage and shutter.
    planes_um
        Commanded focus positions, in acquisition order.
    output
        OME-TIFF path; frames are appended as they arrive.
    z_step_um
        Nominal spacing written as ``PhysicalSizeZ``.
    limits_um
        Focus travel limits: required when the stage reports none, otherwise
        they can only narrow the stage's (`rmz_acq.safety.travel_limits`).
    on_frame
        Called on the runner thread after each frame is on disk.
    should_stop
        Asked after each frame; ``True`` ends the stack there (a cancel: the
        frames taken are kept, and no error is raised).

    Raises
    ------
    StageSafetyError
        A plane is outside the limits (checked before anything moves).
    AcquisitionError
        Fewer frames arrived than planned (the file keeps those that did).
    """
    summary: MicroscopeSummary = summarize(core)
    limits, _narrowed = travel_limits(summary.focus_limits_um, limits_um)
    check_within_limits(planes_um, limits)
    if len(planes_um) == 0:
        raise AcquisitionError("no z planes to acquire")

    records: list[FrameRecord] = []
    errors: list[BaseException] = []
    stopped: list[bool] = []
    writer = FrameStackWriter(output, summary.pixel_size_um, z_step_um=z_step_um)

    def frame_ready(image: np.ndarray, event: useq.MDAEvent, meta: dict[str, Any]) -> None:
        try:
            measured = float(meta.get("position", {}).get("z", core.getPosition()))
            commanded = float(event.z_pos if event.z_pos is not None else measured)
            writer.append(
                image,
                measured,
                exposure_ms=float(meta.get("exposure_ms", core.getExposure())),
                commanded_z_um=commanded,
            )
            record = FrameRecord(len(records), commanded, measured)
            records.append(record)
            if on_frame is not None:
                on_frame(record)
            if should_stop is not None and should_stop():
                stopped.append(True)
                core.mda.cancel()
        except BaseException as exc:  # surfaced after the run
            errors.append(exc)
            core.mda.cancel()

    sequence = useq.MDASequence(z_plan=useq.ZAbsolutePositions(absolute=list(planes_um)))
    connect_on_runner_thread(core.mda.events.frameReady, frame_ready)
    try:
        with light_path_open(core):
            core.mda.run(sequence)
    finally:
        core.mda.events.frameReady.disconnect(frame_ready)
        writer.close()
    if errors:
        raise errors[0]
    if len(records) != len(planes_um) and not stopped:
        raise AcquisitionError(
            f"only {len(records)} of {len(planes_um)} frames arrived (the camera or "
            f"stage failed; see the log); {output} holds the frames that did"
        )
    return records
