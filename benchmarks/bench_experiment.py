"""Experiments: wall time against acquisition alone, and whether time points can reuse stops.

    python benchmarks/bench_experiment.py wall [--positions 2] [--time-points 5] [--size 128]
    python benchmarks/bench_experiment.py reuse [--positions 4] [--time-points 5] [--size 128]
        [--drift-um 0.5]

``wall``: an experiment of P positions x T time points (interval 0: as fast
as the microscope goes) on the simulated worm with the `nuclei` preset and
its default scan, then the same frames taken as one plain MDA (the same XY
moves and focus planes, no network).  The simulated microscope keeps a real
microscope's pace: the camera sleeps its exposure (``--exposure-ms``), the
focus settles 50 ms and the XY stage 300 ms per move.  Prints the
experiment's wall time, the plain MDA's, and their ratio.

``reuse``: does a later time point need fewer frames if its scan reuses the
previous time point's stop count?  Offline, for each position and time
point (the sample moved ``--drift-um`` laterally per time point), the
mechanical stack (truth) and a frame at every candidate are taken; each
volume is then scanned as `AdaptiveScan` would (bisection or
``--next-plane``, the preset's rule) three ways: fresh (today); capped at
the previous time point's stop count (``max_frames``); and not judged
before that count (``min_frames``).  Prints frames used and PSNR against the
truth for each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import useq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_next_plane import _acquire, _score

from rmz_acq.acquisition import ScanPlan, ScanSettings
from rmz_acq.acquisition.judge import ScanJudge
from rmz_acq.acquisition.policies import ScanState, choosable_planes, make_policy
from rmz_acq.experiment import Experiment
from rmz_acq.hardware import load_core
from rmz_acq.io import read_zstack
from rmz_acq.model.weights import load_model
from rmz_acq.session import ReconstructionSession
from rmz_acq.zstack import acquire_zstack

CONFIG = Path(__file__).resolve().parents[1] / "device_configs" / "simulated_worm.cfg"


def _core(size: int, tmp: Path):
    snapshot = tmp / CONFIG.name  # the config as it is now, whatever happens to the file
    snapshot.write_text(CONFIG.read_text())
    core = load_core(snapshot)
    core.setProperty("Camera", "Width", str(size))
    core.setProperty("Camera", "Height", str(size))
    return core


def _realtime(core, exposure_ms: float) -> None:
    core.setProperty("Camera", "RealTimeExposure", "1")
    core.setExposure(exposure_ms)
    core.setProperty("Z", "SettleTimeMs", "50")
    core.setProperty("XY", "SettleTimeMs", "300")


def wall(args: argparse.Namespace) -> None:
    model = load_model("nuclei")
    positions = [
        {"x": 40.0 * i, "y": 0.0, "z": 9.0, "name": f"p{i}"} for i in range(args.positions)
    ]
    sequence = useq.MDASequence(
        stage_positions=positions, time_plan={"interval": 0, "loops": args.time_points}
    )
    with tempfile.TemporaryDirectory() as tmp:
        core = _core(args.size, Path(tmp))
        core.setShutterOpen(True)
        core.snap()  # the simulator computes its focal stack once, not inside the timing
        core.setShutterOpen(False)
        _realtime(core, args.exposure_ms)
        experiment = Experiment(core, model, sequence, Path(tmp) / "exp")
        started = time.perf_counter()
        report = experiment.run()
        total = time.perf_counter() - started
        events = []
        for volume in report.volumes:
            frames = read_zstack(Path(tmp) / "exp" / volume.run / "frames.ome.tif")
            assert frames.z_um is not None
            x, y = volume.position_um["x"], volume.position_um["y"]
            events += [  # one XY move per volume, as the experiment makes
                useq.MDAEvent(x_pos=x if i == 0 else None, y_pos=y if i == 0 else None, z_pos=z)
                for i, z in enumerate(map(float, frames.z_um))
            ]
        started = time.perf_counter()
        core.mda.run(events)
        plain = time.perf_counter() - started
    frames = [v.frames for v in report.volumes]
    print(
        f"{args.positions} positions x {args.time_points} time points, {args.size} px, nuclei: "
        f"{len(events)} frames ({np.mean(frames):.1f} per volume, {min(frames)}-{max(frames)}), "
        f"exposure {args.exposure_ms:g} ms"
    )
    print(f"experiment wall time        {total:8.1f} s")
    print(f"the same frames, plain MDA  {plain:8.1f} s")
    print(f"ratio                       {total / plain:8.2f}")
    print(f"latest time point start     {report.lateness['max_late_s']:8.1f} s behind schedule")


def _scan(model, plan, settings, policy_name, frames, truth, *, cap=None, floor=None):
    """Frames used and PSNR of one offline scan with the preset's rule."""
    judge = ScanJudge(model, plan, settings)
    full = ReconstructionSession(model, plan.output_planes_um)
    policy = make_policy(policy_name)
    state = ScanState(
        candidates_um=plan.candidates_um,
        choosable_um=choosable_planes(plan.candidates_um, plan.output_planes_um),
    )
    epsilon = settings.relative_epsilon
    for index in range(len(plan.candidates_um)):
        choice = policy.choose(state)
        if choice is None:
            break
        frame, measured = frames[round(choice.z_um, 9)]
        verdict = judge.judge(index, frame, measured)
        result = full.push(frame, measured)
        m = index + 1
        state = state.after(
            choice.z_um, judge.judged_planes_um, verdict.plane_changes, verdict.plane_signal
        )
        change = verdict.relative_change
        rule = (
            m >= max(settings.min_frames, floor or 0) and change is not None and change <= epsilon
        )
        if rule or (cap is not None and m >= cap):
            break
    return m, _score(result.volume, truth)


def reuse(args: argparse.Namespace) -> None:
    model = load_model("nuclei")
    settings = ScanSettings.for_model(model)
    plan = ScanPlan.for_model(model)
    choosable = list(choosable_planes(plan.candidates_um, plan.output_planes_um))
    rows = {"fresh": [], "capped at previous": [], "floor at previous": []}
    with tempfile.TemporaryDirectory() as tmp:
        core = _core(args.size, Path(tmp))
        for p in range(args.positions):
            previous = None
            for t in range(args.time_points):
                core.setXYPosition(40.0 * p + args.drift_um * t, 0.0)
                acquire_zstack(core, list(plan.output_planes_um), Path(tmp) / "truth.ome.tif")
                truth = read_zstack(Path(tmp) / "truth.ome.tif").data.astype(np.float32)
                frames = _acquire(core, choosable, Path(tmp) / "frames.ome.tif")
                fresh = _scan(model, plan, settings, args.next_plane, frames, truth)
                rows["fresh"].append(fresh)
                if previous is not None:
                    rows["capped at previous"].append(
                        _scan(model, plan, settings, args.next_plane, frames, truth, cap=previous)
                    )
                    rows["floor at previous"].append(
                        _scan(model, plan, settings, args.next_plane, frames, truth, floor=previous)
                    )
                else:  # the first time point has nothing to reuse
                    rows["capped at previous"].append(fresh)
                    rows["floor at previous"].append(fresh)
                previous = fresh[0]
                print(f"p{p} t{t}: fresh {fresh[0]} frames {fresh[1]:.2f} dB", flush=True)
    print(
        f"\n{args.positions} positions x {args.time_points} time points, drift "
        f"{args.drift_um:g} um per time point, {args.next_plane}, relative epsilon "
        f"{settings.relative_epsilon:g}"
    )
    print(f"{'scan':<22}{'frames':>8}{'PSNR dB':>9}")
    for name, values in rows.items():
        frames, scores = zip(*values, strict=True)
        print(f"{name:<22}{np.mean(frames):>8.2f}{np.mean(scores):>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["wall", "reuse"])
    parser.add_argument("--positions", type=int, default=2)
    parser.add_argument("--time-points", type=int, default=5)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--drift-um", type=float, default=0.5)
    parser.add_argument("--exposure-ms", type=float, default=50.0)
    parser.add_argument("--next-plane", default="bisection")
    args = parser.parse_args()
    (wall if args.part == "wall" else reuse)(args)


if __name__ == "__main__":
    main()
