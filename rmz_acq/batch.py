"""Reconstruct many finished runs at once, over the CPU cores or a Dask cluster.

A folder of runs (each ``RUN_DIR/frames.ome.tif``, as ``rmz-acq acquire``
writes them, experiments' volume folders included) is reconstructed run by
run into ``RUN_DIR/<output name>``.  Runs are independent: with one job they
are done here, one after another; with more, or with a Dask scheduler, each
run is a task on a Dask cluster (`rmz_acq.cluster`; a local one of ``jobs``
worker processes splitting the cores, ``threads`` each: on a small CPU one
run per core beats one run using every core, because a single push of a
small frame does not keep several cores busy).  A run that fails (a damaged
file, no z) is reported and the others carry on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from numpy.typing import NDArray

from .errors import RmzError
from .io.run_folder import FRAMES, REPORT, UNUSED_FRAMES, VOLUME, RunReport

__all__ = [
    "BatchRun",
    "RunResult",
    "RunSearch",
    "find_runs",
    "reconstruct_one",
    "reconstruct_runs",
    "worker_split",
]

FRAMES_NAME = FRAMES
# The files of a run that hold frames: never an output.
INPUT_NAMES = (FRAMES, UNUSED_FRAMES)


@dataclass(frozen=True)
class BatchRun:
    """One run to reconstruct: its frames, where the volume goes, on which grid."""

    frames: Path
    output: Path
    planes_um: tuple[float, ...]
    pixel_size_um: float | None = None
    order: str = "as-taken"  # the order the frames are pushed in, as the scan built its volume


class RunSearch(NamedTuple):
    """What `find_runs` found: runs to do, outputs already there, runs it cannot do."""

    runs: list[BatchRun]
    existing: list[Path]
    unusable: list[tuple[Path, str]]


@dataclass(frozen=True)
class RunResult:
    run: BatchRun
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _planes_from_report(frames: Path) -> tuple[float, ...]:
    try:
        planes = RunReport.read(frames.parent).output_planes_um
    except RmzError:
        raise RmzError(
            f"{frames.parent} has no {REPORT} with output_planes_um to take the output "
            "grid from; give --z-range to reconstruct it"
        ) from None
    return tuple(planes)


def find_runs(
    folder: str | Path,
    planes_um: Sequence[float] | NDArray[np.floating] | None = None,
    *,
    output_name: str = VOLUME,
    overwrite: bool = False,
    pixel_size_um: float | None = None,
) -> RunSearch:
    """Runs under ``folder`` (any depth), outputs already there, and runs without a grid.

    The output grid is ``planes_um``, or else each run's own
    ``report.json`` ``output_planes_um``; a run with neither is listed in
    ``unusable`` (with the reason) and the others go ahead.  The frames are
    pushed in the order the run's scan built its volume in
    (``report.json``'s ``volume_order``; as taken without one).  The output is
    never one of a run's frame files.

    Raises
    ------
    RmzError
        ``folder`` is missing or holds no ``frames.ome.tif``; a bad ``output_name``.
    """
    from .reconstruct import scan_volume_order

    root = Path(folder)
    if not root.is_dir():
        raise RmzError(f"{root} is not a folder of runs")
    if not output_name.endswith((".ome.tif", ".ome.tiff")) or "/" in output_name:
        raise RmzError(f"--output-name {output_name!r} must be a file name ending in .ome.tif")
    if output_name in INPUT_NAMES:
        raise RmzError(
            f"--output-name {output_name!r} is where a run keeps its frames; writing it would "
            "destroy them. Choose another name, e.g. volume.ome.tif"
        )
    found = sorted(root.rglob(FRAMES_NAME))
    if not found:
        raise RmzError(
            f"no {FRAMES_NAME} under {root}; expected one folder per run as "
            "rmz-acq acquire writes them (RUN_DIR/frames.ome.tif)"
        )
    runs: list[BatchRun] = []
    skipped: list[Path] = []
    unusable: list[tuple[Path, str]] = []
    for frames in found:
        output = frames.parent / output_name
        if output.exists() and not overwrite:
            skipped.append(output)
            continue
        try:
            grid = (
                tuple(float(p) for p in planes_um)
                if planes_um is not None
                else _planes_from_report(frames)
            )
            if not grid:
                raise RmzError(f"the output grid for {frames} has no planes")
        except RmzError as exc:
            unusable.append((frames.parent, str(exc)))
            continue
        runs.append(BatchRun(frames, output, grid, pixel_size_um, scan_volume_order(frames)))
    return RunSearch(runs, skipped, unusable)


def worker_split(n_runs: int, jobs: int | None = None, cores: int | None = None) -> tuple[int, int]:
    """``(processes, threads each)``: by default one process per core."""
    cores = cores or os.cpu_count() or 1
    if jobs is not None and jobs < 1:
        raise RmzError(f"--jobs {jobs} must be at least 1")
    processes = max(1, min(jobs or cores, n_runs))
    return processes, max(1, cores // processes)


def model_of_runs(runs: Sequence[BatchRun]) -> str:
    """The model every run's ``report.json`` names, when it is here and the same for all.

    A preset is taken by name, any other model by the path the report
    gives; either only when its SHA-256 is the one recorded, so a run is
    never reconstructed with other weights than it was taken with.

    Raises
    ------
    RmzError
        A run without a report naming its model, runs made with different
        models, or a model that is not on this machine (or has changed).
    """
    from .model.weights import PRESETS, load_model

    used: dict[tuple[str, str], dict[str, str]] = {}
    for run in runs:
        try:
            named = RunReport.read(run.frames.parent).model
        except RmzError:
            named = {}
        if not named.get("sha256"):
            raise RmzError(
                f"{run.frames.parent} has no {REPORT} naming the model it was taken with; "
                "give --model (a preset, weights file or zoo package)"
            )
        used[(str(named.get("name")), str(named["sha256"]))] = named
    if len(used) > 1:
        shown = ", ".join(f"{name} ({sha[:12]})" for name, sha in sorted(used))
        raise RmzError(f"the runs were taken with different models ({shown}); give --model")
    (name, sha256), named = next(iter(used.items()))
    candidates = [name] if name in PRESETS else []
    if named.get("path"):
        candidates.append(str(named["path"]))
    for candidate in candidates:
        try:
            if load_model(candidate).sha256 == sha256:
                return candidate
        except RmzError:
            continue
    raise RmzError(
        f"the runs were taken with model {name} ({sha256[:12]}), which is not here (or has "
        "changed since); give --model"
    )


def reconstruct_one(run: BatchRun, model: str, device: str | None, precision: str) -> RunResult:
    """One run, here; a failure is returned in the result, not raised."""
    from .reconstruct import reconstruct_file

    started = time.perf_counter()
    try:
        reconstruct_file(
            run.frames,
            run.output,
            np.asarray(run.planes_um),
            model,
            pixel_size_um=run.pixel_size_um,
            device=device,
            precision=precision,
            overwrite=True,  # find_runs kept an existing output only when asked to
            order=run.order,
        )
    except (RmzError, ValueError, OSError) as exc:
        return RunResult(run, time.perf_counter() - started, f"{exc}")
    return RunResult(run, time.perf_counter() - started)


def reconstruct_runs(
    runs: Sequence[BatchRun],
    model: str | Path,
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    device: str | None = None,
    precision: str = "float32",
    plane_groups: int | None = None,
    on_done: Callable[[RunResult, int, int], None] | None = None,
) -> list[RunResult]:
    """Reconstruct every run; ``on_done(result, done, total)`` after each.

    With one job and no ``scheduler`` the runs are done here, one after
    another, with every core; otherwise on a Dask cluster (the one at
    ``scheduler``, or a local one of ``jobs`` workers), where a run too
    large for one worker (or every run, with ``plane_groups``) is split into
    groups of output planes (`rmz_acq.cluster.reconstruct_on_cluster`).
    Results come back in the order of ``runs``.

    Raises
    ------
    RmzError
        The model cannot be loaded, or the scheduler cannot be reached.
    """
    from .model.weights import load_model

    notify = on_done or (lambda *args: None)
    weights = load_model(model).path  # refuses a bad model before any work is sent
    processes, threads = worker_split(len(runs), jobs)
    if scheduler is None and processes == 1 and plane_groups is None:
        results: list[RunResult] = []
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for run in runs:
                results.append(reconstruct_one(run, str(weights), device, precision))
                notify(results[-1], len(results), len(runs))
        finally:
            torch.set_num_threads(previous)
        return results
    from .cluster import client_for, reconstruct_on_cluster

    with client_for(scheduler, processes, threads) as client:
        return reconstruct_on_cluster(
            client,
            runs,
            weights,
            threads=threads if scheduler is None else None,
            device=device,
            precision=precision,
            plane_groups=plane_groups,
            on_done=notify,
        )
