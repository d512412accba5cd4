"""Offline reconstruction: frames with their z in, a volume on a grid out."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from .errors import DataWarning, RmzError
from .io import read_zstack, write_zstack
from .io.outputs import check_output_file
from .io.run_folder import FRAMES, REPORT, RunFiles, RunReport
from .model.normalization import IntensityNormalization
from .model.weights import LoadedModel, load_model
from .saturation import camera_ceiling, warn_if_saturated
from .session import PushResult, ReconstructionSession, compute_dtype

__all__ = [
    "FRAME_ORDERS",
    "FrameSet",
    "default_order",
    "read_frames",
    "reconstruct_file",
    "reconstruct_frames",
    "scan_volume_order",
    "stack_normalization",
]

FRAME_ORDERS = ("as-taken", "z")  # the order frames are pushed in


@dataclass(frozen=True)
class FrameSet:
    """The M input frames, each with the z it was taken at.

    ``stack_statistics``: normalised by the intensity statistics of all the
    frames together (`stack_normalization`, as a z-stack, every frame known
    before the first is pushed), not by the first frame's (as a stream).
    """

    frames: NDArray[np.float32]
    z_um: NDArray[np.float64]
    pixel_size_um: float | None
    stack_statistics: bool = False

    def in_order(self, order: str) -> FrameSet:
        """The frames as taken (``"as-taken"``) or as a z-stack (``"z"``).

        As a z-stack: sorted by z, lowest first, and normalised by all the
        frames' statistics together (``stack_statistics``), so that the
        volume is the same whatever order the frames were taken or stored in.

        Raises
        ------
        RmzError
            An order that is neither.
        """
        if order not in FRAME_ORDERS:
            raise RmzError(f"frame order {order!r} is not one of: {', '.join(FRAME_ORDERS)}")
        if order == "as-taken":
            return self
        index = np.argsort(self.z_um, kind="stable")
        return FrameSet(
            self.frames[index], self.z_um[index], self.pixel_size_um, stack_statistics=True
        )


def stack_normalization(
    model: LoadedModel, frames: Sequence[NDArray[np.number]] | NDArray[np.number]
) -> IntensityNormalization:
    """The intensity statistics of a whole stack of frames, the same in any order.

    What a volume built from frames sorted by z (``order="z"``, a scan's
    ``volume_order="z"``) is normalised by: every frame is known before the
    first is pushed, so the scale need not rest on whichever came first
    (`IntensityNormalization.from_frames`, by the model's method).
    """
    return IntensityNormalization.from_frames(frames, method=model.model.config.intensity)


def read_frames(path: str | Path, z_override: Sequence[float] | None = None) -> FrameSet:
    """Read input frames and their z (OME ``PositionZ``, or ``z_override``).

    Raises
    ------
    RmzError
        No z for the frames, or a z list of the wrong length.
    """
    stack = read_zstack(path)
    n = stack.data.shape[0]
    _warn_if_frames_lost(Path(path), n)
    if z_override is not None:
        if len(z_override) != n:
            raise RmzError(f"--z gives {len(z_override)} positions but {path} holds {n} frames")
        z = np.asarray(z_override, np.float64)
    elif stack.z_um is not None:
        z = stack.z_um
    else:
        raise RmzError(
            f"{path} carries no z positions (OME Plane PositionZ); give them with --z, "
            "e.g. --z 3,9,15"
        )
    warn_if_saturated(stack.data, z, Path(path).name, camera_ceiling(None, stack.data.dtype))
    return FrameSet(stack.data.astype(np.float32), z, stack.pixel_size_um)


def default_order(frames_path: str | Path, n_frames: int, model: LoadedModel) -> str:
    """The order ``rmz-acq reconstruct`` pushes a file's frames in unless told.

    A run's ``frames.ome.tif``: as its scan built its volume
    (`scan_volume_order`), so the volume is the scan's.  Any other file: as a
    z-stack (``"z"``: sorted by z, all the frames' statistics), so the volume
    does not depend on the order the file holds them in, unless it holds
    more frames than the network's training sequences had (then as-taken:
    `rmz_acq.acquisition.settings.sorts_by_z`).
    """
    from .acquisition.settings import sorts_by_z

    path = Path(frames_path)
    if path.name == FRAMES and RunFiles(path.parent).report.is_file():
        return scan_volume_order(path)
    return "z" if sorts_by_z("z", n_frames, model) else "as-taken"


def scan_volume_order(frames_path: str | Path) -> str:
    """The order a run's scan built its volume in, for its ``frames.ome.tif``.

    ``report.json``'s ``volume_order`` (or, in older reports, its
    ``settings.volume_order``) beside a run's frames;
    ``"as-taken"`` for any other file (or a report that cannot be read).
    """
    path = Path(frames_path)
    files = RunFiles(path.parent)
    if path.name != FRAMES or not files.report.is_file():
        return "as-taken"
    try:
        return RunReport.read(files.folder).volume_order
    except RmzError:
        return "as-taken"


def _warn_if_frames_lost(path: Path, n_read: int) -> None:
    """A run's ``report.json`` lists every frame taken: say if the file holds fewer."""
    files = RunFiles(path.parent)
    if path.name != FRAMES or not files.report.is_file():
        return
    try:
        listed = len(RunReport.read(files.folder).frames)
    except RmzError:
        return
    if listed > n_read:
        warnings.warn(
            f"{path} holds {n_read} intact frames but {REPORT} lists {listed}: "
            f"{listed - n_read} lost (the scan was killed while writing?); reconstructing "
            f"from the {n_read} that are there",
            DataWarning,
            stacklevel=3,
        )


def reconstruct_frames(
    model: LoadedModel,
    frames: FrameSet,
    output_planes_um: NDArray[np.floating],
    *,
    device: str | torch.device | None = None,
    precision: str = "float32",
    on_push: Callable[[PushResult], None] | None = None,
) -> NDArray[np.float32]:
    """Push the frames in their order; return the final ``(Z, H, W)`` volume.

    Normalised by the first frame's intensity statistics, or by all of them
    together when ``frames.stack_statistics`` (`FrameSet.in_order`).

    Raises
    ------
    RmzError
        No frames, or a volume that would not fit in memory even a plane at a
        time (checked first).  When only the whole grid's recurrent state does
        not fit, the volume is built a batch of planes at a time instead
        (`rmz_acq.plane_batches`; ``on_push`` is then not called).
    """
    if len(frames.frames) == 0:
        raise RmzError("no frames to reconstruct from; at least one is needed")
    normalization = stack_normalization(model, frames.frames) if frames.stack_statistics else None
    session = ReconstructionSession(
        model,
        output_planes_um,
        device=device,
        compute_dtype=compute_dtype(precision),
        normalization=normalization,
    )
    batch = session.plane_batch_that_fits(
        *frames.frames.shape[1:],
        extra_host_bytes=int(frames.frames.nbytes),
        frames=len(frames.frames),
    )
    if batch is not None:  # the whole grid's state does not fit: a batch of planes at a time
        from .plane_batches import reconstruct_by_plane_batches

        return reconstruct_by_plane_batches(
            model,
            list(frames.frames),
            list(frames.z_um),
            np.asarray(output_planes_um, np.float64),
            batch_planes=batch,
            device=device,
            compute_dtype=compute_dtype(precision),
            normalization=normalization,
        ).volume
    result = None
    for frame, z in zip(frames.frames, frames.z_um, strict=True):
        result = session.push(frame, float(z))
        if on_push is not None:
            on_push(result)
    assert result is not None
    return result.volume.copy()


def reconstruct_file(
    frames_path: str | Path,
    output_path: str | Path,
    output_planes_um: NDArray[np.floating],
    model_name: str | Path,
    *,
    z_override: Sequence[float] | None = None,
    pixel_size_um: float | None = None,
    device: str | torch.device | None = None,
    precision: str = "float32",
    on_push: Callable[[PushResult], None] | None = None,
    overwrite: bool = False,
    order: str | None = None,
) -> Path:
    """``rmz-acq reconstruct``: read frames, reconstruct, write a float32 OME-TIFF.

    ``order`` is the order the frames are pushed in: ``"as-taken"`` (as the
    file holds them, normalised by the first frame's intensity statistics as
    a stream is; an adaptive scan's ``frames.ome.tif`` holds them as taken) or
    ``"z"``, lowest first, normalised by all the frames' statistics together
    (`stack_normalization`), so that the volume does not depend on the order
    the file holds them in.  ``None``: `default_order` (a run's frames as its
    scan built its volume, so the volume equals the scan's; any other file
    as a z-stack, up to the network's trained sequence length).

    Raises
    ------
    RmzError
        The output is the input (always refused) or exists and ``overwrite``
        is false; the frames lack z or pixel size; bad grid, model or device.
    """
    check_output_file(output_path, inputs=[frames_path], overwrite=overwrite)
    read = read_frames(frames_path, z_override)
    pixel = pixel_size_um or read.pixel_size_um
    if pixel is None:
        raise RmzError(
            f"{frames_path} does not state its pixel size (OME PhysicalSizeX); give --pixel-size-um"
        )
    planes = np.asarray(output_planes_um, np.float64)
    if planes.size == 0:
        raise RmzError("the output z range has no planes")
    model = load_model(model_name, device or "cpu")
    if order is None:
        order = default_order(frames_path, len(read.frames), model)
    frames = read.in_order(order)
    volume = reconstruct_frames(
        model,
        frames,
        planes,
        device=device,
        precision=precision,
        on_push=on_push,
    )
    step = float(np.diff(planes).mean()) if len(planes) > 1 else None
    return write_zstack(
        output_path,
        volume,
        planes,
        pixel,
        z_step_um=step,
        name=f"rmz_acq {model.name} {model.sha256[:12]}",
    )
