"""Reconstruction on Dask distributed: one task per run, the weights shipped once.

`client_for` connects to a running scheduler (``dask scheduler`` and
``dask worker`` on the lab's machines, or dask-jobqueue on a SLURM/PBS
cluster) or starts a local cluster of worker processes on this machine.
`RemoteCompletion` keeps a scan's full-grid session on a worker (a Dask
actor), so ``rmz-acq acquire --scheduler`` completes its volumes there.
`reconstruct_on_cluster` sends the network's weights to every worker once
(scattered, broadcast), then submits one task per run; each task reads the
run's frames from the shared file system, reconstructs with exactly the code
`rmz-acq reconstruct` runs, and writes the volume beside the frames.  A run
that fails is reported and the others complete; a task whose worker dies is
run again by Dask (``retries``).
"""

from __future__ import annotations

import hashlib
import io
import math
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .acquisition.completion import Completion
from .batch import BatchRun, RunResult, reconstruct_one
from .errors import RmzError

if TYPE_CHECKING:
    from distributed import Client

    from .model.weights import LoadedModel

__all__ = [
    "TASK_RETRIES",
    "RemoteCompletion",
    "client_for",
    "plane_groups_for",
    "reconstruct_on_cluster",
]

# A task whose worker died (killed, out of memory) is run again this many times.
TASK_RETRIES = 2


def client_for(scheduler: str | None, workers: int, threads: int) -> Client:
    """A client of the cluster at ``scheduler``, or of a new local one.

    The local cluster has ``workers`` processes (spawned: forking a process
    that ran torch can hang) and each task uses ``threads`` torch threads.

    Raises
    ------
    RmzError
        The scheduler cannot be reached.
    """
    from distributed import Client

    if scheduler is None:  # the client owns this cluster: closing it stops the workers
        return Client(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    try:
        return Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise RmzError(
            f"cannot reach the Dask scheduler at {scheduler} ({exc}); start one with "
            "`dask scheduler` (and workers with `dask worker ADDRESS`), or leave out "
            "--scheduler to use this machine's cores"
        ) from None


def _weights_blob(weights: Path) -> tuple[bytes, str]:
    """The bytes of a weights file or zoo package, and the suffix to write them under.

    A zoo package folder travels as a zip archive of its files.
    """
    if not weights.is_dir():
        return weights.read_bytes(), weights.suffix
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(weights.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(weights).as_posix())
    return buffer.getvalue(), ".zip"


def _weights_on_worker(blob: bytes, sha256: str, suffix: str) -> Path:
    """The weights as a file on this worker, written once per worker and model."""
    folder = Path(tempfile.gettempdir()) / "rmz_acq_weights"
    folder.mkdir(exist_ok=True)
    path = folder / f"{sha256}{suffix}"
    if not path.is_file():
        partial = path.with_suffix(f".{time.time_ns()}.partial")
        partial.write_bytes(blob)
        partial.replace(path)  # atomic: a concurrent task never reads half a file
    return path


def _allocate_like_a_plain_process() -> None:
    """Let glibc keep freed memory for reuse again, as in a process Dask did not start.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_`` set, which
    turns off glibc's adaptive mmap threshold: every tensor above 128 KiB is
    then mapped and unmapped afresh, and a reconstruction ran 2x slower in a
    worker than in a plain process (measured: 9.3 s against 4.5 s for one
    256 px run).  Raising both thresholds restores it (3.7 s).  Elsewhere
    (not glibc) nothing is done.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameters
    mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # glibc's largest
    mallopt(m_trim_threshold, 256 * 1024 * 1024)


def _worker_ready(blob: bytes, sha256: str, suffix: str, threads: int | None) -> Path:
    """Set a worker up for a task: its allocator, its threads; the weights' file there."""
    import torch

    _allocate_like_a_plain_process()
    if threads is not None:
        torch.set_num_threads(threads)
    return _weights_on_worker(blob, sha256, suffix)


def _task(
    run: BatchRun,
    blob: bytes,
    sha256: str,
    suffix: str,
    device: str | None,
    precision: str,
    threads: int | None,
) -> RunResult:
    weights = _worker_ready(blob, sha256, suffix, threads)
    return reconstruct_one(run, str(weights), device, precision)


def plane_groups_for(state_bytes: int, volume_bytes: int, worker_memory_bytes: int | None) -> int:
    """How many groups of output planes a run needs so that one group fits a worker.

    A group holds its planes' recurrent state and volume; half a worker's
    memory is the budget (the rest is the worker, torch and the frames).
    Unknown worker memory: one group.
    """
    if not worker_memory_bytes:
        return 1
    budget = 0.5 * worker_memory_bytes
    return max(1, math.ceil((state_bytes + volume_bytes) / budget))


def _plane_group_task(
    run: BatchRun,
    planes_um: list[float],
    tolerance_um: float,
    blob: bytes,
    sha256: str,
    suffix: str,
    device: str | None,
    precision: str,
    threads: int | None,
) -> Any:
    """Some of a run's output planes through all of its frames, on a worker."""
    from .model.weights import load_model
    from .reconstruct import read_frames, stack_normalization
    from .session import ReconstructionSession, compute_dtype

    model = load_model(_worker_ready(blob, sha256, suffix, threads), device or "cpu")
    frames = read_frames(run.frames).in_order(run.order)
    session = ReconstructionSession(
        model,
        planes_um,
        device=device,
        compute_dtype=compute_dtype(precision),
        plane_tolerance_um=tolerance_um,  # the whole grid's: a measured plane is the same plane
        blend_centre_um=0.5 * (min(run.planes_um) + max(run.planes_um)),  # the whole grid's
        # every group the same statistics, as one reconstruction of the whole grid has
        normalization=stack_normalization(model, frames.frames)
        if frames.stack_statistics
        else None,
    )
    return session.run(list(frames.frames), list(frames.z_um)).volume.copy()


def _groups_of(run: BatchRun, model: LoadedModel, groups: int | None, memory: int | None) -> int:
    if groups is not None:
        return max(1, min(groups, len(run.planes_um)))
    import tifffile

    from .session import ReconstructionSession

    with tifffile.TiffFile(run.frames) as tif:
        height, width = tif.series[0].shape[-2:]
    planes = len(run.planes_um)
    state = ReconstructionSession(model, run.planes_um, device="cpu").state_nbytes_for(
        height, width
    )
    return min(planes, plane_groups_for(state, planes * height * width * 4, memory))


def _write_groups(run: BatchRun, model: LoadedModel, parts: list[Any]) -> None:
    import numpy as np

    from .io import write_zstack
    from .reconstruct import read_frames

    planes = np.asarray(run.planes_um, np.float64)
    pixel = run.pixel_size_um or read_frames(run.frames).pixel_size_um
    if pixel is None:
        raise RmzError(f"{run.frames} does not state its pixel size; give --pixel-size-um")
    step = float(np.diff(planes).mean()) if len(planes) > 1 else None
    write_zstack(
        run.output,
        np.concatenate(parts),
        planes,
        pixel,
        z_step_um=step,
        name=f"rmz_acq {model.name} {model.sha256[:12]}",
    )


def reconstruct_on_cluster(
    client: Client,
    runs: Sequence[BatchRun],
    weights: Path,
    *,
    threads: int | None = None,
    device: str | None = None,
    precision: str = "float32",
    plane_groups: int | None = None,
    on_done: Callable[[RunResult, int, int], None] | None = None,
) -> list[RunResult]:
    """Reconstruct every run on ``client``'s cluster; results in the order of ``runs``.

    ``threads``: torch threads per task (``None``: the worker's default).
    A run is one task, unless its recurrent state and volume would not fit
    half a worker's memory (or ``plane_groups`` asks for it): then it is
    split into groups of output planes, each group a task through every
    frame (planes are independent, so the volume is the same), and the
    volume is put together and written here.
    """
    import numpy as np
    from distributed import as_completed

    from .model.weights import load_model
    from .session import measured_plane_tolerance_um

    notify = on_done or (lambda *args: None)
    blob, suffix = _weights_blob(weights)
    sha256 = hashlib.sha256(blob).hexdigest()
    shipped = client.scatter(blob, broadcast=True)  # once per worker, not once per task
    model = load_model(weights, "cpu")
    limits = [w.get("memory_limit") for w in client.scheduler_info()["workers"].values()]
    memory = min((m for m in limits if m), default=None)
    futures: dict[Any, tuple[BatchRun, int]] = {}
    results: dict[Path, RunResult] = {}
    split: dict[Path, list[Any]] = {}  # run -> its groups' volumes, in plane order
    started: dict[Path, float] = {}
    for run in runs:
        started[run.frames] = time.perf_counter()
        try:
            groups = _groups_of(run, model, plane_groups, memory)
        except Exception as exc:  # an unreadable run: reported, the others go ahead
            results[run.frames] = RunResult(run, 0.0, f"{type(exc).__name__}: {exc}")
            notify(results[run.frames], len(results), len(runs))
            continue
        if groups == 1:
            future = client.submit(
                _task, run, shipped, sha256, suffix, device, precision, threads,
                pure=False, retries=TASK_RETRIES, key=f"rmz_acq-{run.output}",
            )  # fmt: skip
            futures[future] = (run, -1)
            continue
        planes = list(run.planes_um)
        tolerance = measured_plane_tolerance_um(np.asarray(planes, np.float64))
        bounds = [round(i * len(planes) / groups) for i in range(groups + 1)]
        split[run.frames] = [None] * groups
        for g in range(groups):
            future = client.submit(
                _plane_group_task, run, planes[bounds[g] : bounds[g + 1]], tolerance,
                shipped, sha256, suffix, device, precision, threads,
                pure=False, retries=TASK_RETRIES, key=f"rmz_acq-{run.output}-planes{g}",
            )  # fmt: skip
            futures[future] = (run, g)
    failed: dict[Path, str] = {}
    for future in as_completed(list(futures)):
        run, group = futures[future]
        if run.frames in results:
            continue  # a group of this run failed already
        try:
            value = future.result()
        except Exception as exc:  # the task itself failed (e.g. its workers kept dying)
            value = None
            failed[run.frames] = f"{type(exc).__name__}: {exc}"
        if group < 0 and value is not None:
            result = value
        elif run.frames in failed:
            result = RunResult(run, time.perf_counter() - started[run.frames], failed[run.frames])
        else:
            parts = split[run.frames]
            parts[group] = value
            if any(part is None for part in parts):
                continue
            try:
                _write_groups(run, model, parts)
                result = RunResult(run, time.perf_counter() - started[run.frames])
            except (RmzError, ValueError, OSError) as exc:
                result = RunResult(run, time.perf_counter() - started[run.frames], f"{exc}")
        results[run.frames] = result
        notify(result, len(results), len(runs))
    return [results[run.frames] for run in runs]


class _SessionOnWorker:
    """A Dask actor: one scan's full-grid session, kept on one worker between frames."""

    def __init__(
        self,
        blob: bytes,
        sha256: str,
        suffix: str,
        planes_um: list[float],
        device: str | None,
        precision: str,
    ) -> None:
        from .model.weights import load_model
        from .session import ReconstructionSession, compute_dtype

        model = load_model(_worker_ready(blob, sha256, suffix, None), device or "cpu")
        self.session = ReconstructionSession(
            model, planes_um, device=device, compute_dtype=compute_dtype(precision)
        )

    def push(self, frame: Any, z_um: float) -> Any:
        import dataclasses

        result = self.session.push(frame, z_um)
        # the session keeps updating its volume in place: send this frame's
        return dataclasses.replace(result, volume=result.volume.copy())

    def volume(self) -> Any:
        return self.session.volume


class RemoteCompletion(Completion):
    """`Completion` with the session on a Dask worker.

    The scan decides on its few planes here, as always; the full grid is
    pushed on a worker of ``client``'s cluster (a Dask actor holding the
    session, the weights shipped once), frame by frame in the order taken,
    so the volume is the one a local completion (and ``rmz-acq
    reconstruct``) gives.  ``on_pushed(index, result)`` runs on a thread of
    this process after each push; a failure is kept in ``error`` and raised
    by `finish`.
    """

    def __init__(
        self,
        client: Client,
        weights: Path,
        planes_um: Sequence[float],
        *,
        device: str | None,
        precision: str,
        on_pushed: Callable[[int, Any], None],
    ) -> None:
        blob, suffix = _weights_blob(weights)
        sha256 = hashlib.sha256(blob).hexdigest()
        try:
            self._actor = client.submit(
                _SessionOnWorker,
                blob,
                sha256,
                suffix,
                [float(z) for z in planes_um],
                device,
                precision,
                actor=True,
                pure=False,
            ).result()
        except (OSError, TimeoutError) as exc:
            raise RmzError(f"the Dask cluster could not start the completion: {exc}") from exc
        super().__init__(None, on_pushed)

    def _push(self, frame: Any, z_um: float) -> Any:
        return self._actor.push(frame, z_um).result()

    def volume(self) -> Any:
        """The full grid's volume, fetched from the worker."""
        return self._actor.volume().result()
