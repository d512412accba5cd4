"""Deciding at the microscope's pace: decision planes against the full grid.

    python benchmarks/bench_decision.py latency [--sizes 256,1024] [--planes 91]
    python benchmarks/bench_decision.py scan [--size 256] [--frames 6]
    python benchmarks/bench_decision.py stops [--size 256] [--seeds 200:203]

``latency``: one push of a frame into a session of the whole output grid
(``--planes``, the `nuclei` preset) against one into the scan's decision
session (`DECISION_PLANES` evenly spread planes), median of the 2nd to 4th
pushes, same process: the stop rule waits for the latter only.

``scan``: the shipped worm config (camera exposing in real time, stage
settling 50 ms) scanned three ways over the same candidates, each taking
``--frames`` frames: the mechanical acquisition alone (`acquire_zstack`),
the adaptive scan deciding on the full grid (``decision_planes=None``, as
before), and the adaptive scan deciding on the decision planes with the grid
completed in the background (the default).  Wall times and their ratios,
the mean time from a frame's arrival to the rule's verdict, when the stage
was free (the last verdict, from the start), and how long the volume took
after that.

``stops``: default scans of the shipped worm and bead configs (their
presets' own rule; camera in real time, stage settling 50 ms), per sample
seed with the decision planes always trusted (margin 0) and with the
default margin, where an estimate near epsilon waits for the full grid:
frames taken, verdicts that waited, whether the stop is the one the full
grid's own changes give, the mean and longest verdict, when the stage was
free and when the volume was done (from the scan's start).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from pymmcore_plus import CMMCorePlus

from rmz_acq.acquisition import AdaptiveScan, ScanPlan, ScanSettings
from rmz_acq.acquisition.plan import DECISION_MARGIN, DECISION_PLANES, decision_plane_indices
from rmz_acq.acquisition.report import ScanReport
from rmz_acq.hardware import load_core
from rmz_acq.model.weights import load_model
from rmz_acq.session import ReconstructionSession
from rmz_acq.zstack import acquire_zstack

WORM = Path(__file__).resolve().parents[1] / "device_configs" / "simulated_worm.cfg"
BEADS = WORM.with_name("simulated_beads.cfg")


def _push_time(session: ReconstructionSession, frames: list[np.ndarray]) -> float:
    times = []
    for i, frame in enumerate(frames):
        started = time.perf_counter()
        session.push(frame, 3.0 + 3.0 * i)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def latency(sizes: list[int], n_planes: int, weights: str = "nuclei") -> None:
    model = load_model(weights)
    planes = np.round(np.linspace(0.0, 18.0, n_planes), 6)
    subset = planes[decision_plane_indices(n_planes)]
    rng = np.random.default_rng(0)
    print(
        f"{model.name} ({model.sha256[:8]}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {n_planes} planes"
    )
    print(f"{'frame':>11}{'full push s':>13}{'decision s':>12}{'ratio':>8}")
    for size in sizes:
        frames = [(300 + 200 * rng.random((size, size))).astype(np.float32) for _ in range(4)]
        full = _push_time(ReconstructionSession(model, planes, device="cpu"), frames)
        few = _push_time(ReconstructionSession(model, subset, device="cpu"), frames)
        print(f"{f'{size} x {size}':>11}{full:>13.2f}{few:>12.2f}{few / full:>8.2f}")


def _realtime_core(config: Path, size: int, seed: int | None = None) -> CMMCorePlus:
    """A simulated microscope as the scans here use it: camera in real time, 50 ms settle."""
    core = load_core(config)
    if seed is not None:
        core.setProperty("Microscope", "SampleSeed", str(seed))
    core.setProperty("Camera", "Width", str(size))
    core.setProperty("Camera", "Height", str(size))
    core.setProperty("Camera", "RealTimeExposure", "1")
    core.setProperty("Z", "SettleTimeMs", "50")
    return core


def scan(size: int, frames: int) -> None:
    model = load_model("nuclei")
    rows = []
    for label, decision in (
        ("acquisition alone", "none"),
        ("deciding on the full grid", None),
        (f"deciding on {DECISION_PLANES} planes", DECISION_PLANES),
    ):
        core = _realtime_core(WORM, size)
        plan = ScanPlan.for_model(model)
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            if decision == "none":
                acquire_zstack(core, list(plan.candidates_um[:frames]), Path(tmp) / "z.ome.tif")
                wall = time.perf_counter() - started
                rows.append((label, wall, None, None, wall))
                continue
            settings = ScanSettings.for_model(model, epsilon=0.0, max_frames=frames)
            settings = settings.model_copy(update={"decision_planes": decision})
            report = AdaptiveScan(core, model, plan, settings, Path(tmp) / "run").run()
            wall = time.perf_counter() - started
            decided = float(np.mean([f.decision_s or 0.0 for f in report.frames]))
            last = report.frames[-1]
            free = last.time_s + (last.decision_s or 0.0)  # from the scan's start
            rows.append((label, wall, decided, report.durations_s["after_last_frame"], free))
    alone = rows[0][1]
    print(
        f"worm config, {size} x {size} px, {frames} frames, torch {torch.get_num_threads()} threads"
    )
    print(
        f"{'scan':<28}{'wall s':>8}{'x acquisition':>15}{'decision s':>12}"
        f"{'stage free s':>14}{'after last s':>14}"
    )
    for label, wall, decided, after, free in rows:
        d = "-" if decided is None else f"{decided:.2f}"
        a = "-" if after is None else f"{after:.2f}"
        print(f"{label:<28}{wall:>8.1f}{wall / alone:>15.2f}{d:>12}{free:>14.1f}{a:>14}")


def _full_grid_agrees(report: ScanReport, epsilon: float, min_frames: int) -> bool:
    """Whether the full grid's own changes of the frames taken stop where the scan did."""
    changes = [f.relative_change for f in report.frames]
    fired = [
        m + 1
        for m, c in enumerate(changes)
        if m + 1 >= min_frames and c is not None and c <= epsilon
    ]
    if report.stop_reason.value == "converged":
        return bool(fired) and fired[0] == len(changes)
    return not fired  # ran out of candidates: the full grid must never have fired


def stops(size: int, seeds: range) -> None:
    print(f"{size} x {size} px, torch {torch.get_num_threads()} threads")
    print(
        f"{'sample':<7}{'seed':>5}{'margin':>7}{'frames':>7}{'waits':>6}{'as full grid':>13}"
        f"{'verdict s':>10}{'longest s':>10}{'stage free s':>13}{'volume s':>9}"
    )
    for sample, config, preset in (("worm", WORM, "nuclei"), ("beads", BEADS, "beads")):
        model = load_model(preset)
        for seed in seeds:
            for margin in (0.0, DECISION_MARGIN):
                core = _realtime_core(config, size, seed)
                settings = ScanSettings.for_model(model)
                settings = settings.model_copy(update={"decision_margin": margin})
                with tempfile.TemporaryDirectory() as tmp:
                    report = AdaptiveScan(
                        core, model, ScanPlan.for_model(model), settings, Path(tmp) / "run"
                    ).run()
                assert settings.relative_epsilon is not None
                agrees = _full_grid_agrees(report, settings.relative_epsilon, settings.min_frames)
                waits = sum(f.decided_on == "full grid" for f in report.frames)
                verdicts = [f.decision_s or 0.0 for f in report.frames]
                last = report.frames[-1]
                free = last.time_s + (last.decision_s or 0.0)
                print(
                    f"{sample:<7}{seed:>5}{margin:>7g}{len(report.frames):>7}{waits:>6}"
                    f"{'yes' if agrees else 'no':>13}{np.mean(verdicts):>10.2f}"
                    f"{max(verdicts):>10.2f}{free:>13.1f}{report.durations_s['total']:>9.1f}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["latency", "scan", "stops"])
    parser.add_argument("--sizes", default="256,1024")
    parser.add_argument("--planes", type=int, default=91)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--seeds", default="200:203", help="FIRST:STOP (STOP excluded)")
    parser.add_argument(
        "--model", default="nuclei", help="latency: a preset or weights file (default nuclei)"
    )
    args = parser.parse_args()
    if args.what == "latency":
        latency([int(s) for s in args.sizes.split(",")], args.planes, args.model)
    elif args.what == "stops":
        first, stop = (int(v) for v in args.seeds.split(":"))
        stops(args.size, range(first, stop))
    else:
        scan(args.size, args.frames)


if __name__ == "__main__":
    main()
