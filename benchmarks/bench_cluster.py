"""Scaling: runs per minute against Dask workers, training steps per second against processes.

    python benchmarks/bench_cluster.py runs [--runs 8] [--size 256] [--workers 1,2]
    python benchmarks/bench_cluster.py train [--steps 30] [--processes 1,2]
    python benchmarks/bench_cluster.py scan [--size 256] [--repeats 2]
    python benchmarks/bench_cluster.py groups [--size 1024] [--groups 1,4] [--workers 2]

``runs``: a folder of ``--runs`` simulated worm scans (9 frames each, the
`nuclei` preset's grid), reconstructed with `reconstruct_runs` on a local
Dask cluster of each number of workers in turn (1: in this process), all in
one run; prints runs per minute and the speed-up over one worker.

``train``: ``--steps`` steps of `nuclei`-sized training (128 px crops, batch
4 x 2, M up to 4) in one process, then under ``torchrun --nproc-per-node N``;
prints steps per second per process count (each DDP step sees N batches).

``scan``: the quick start's adaptive scan of the simulated worm (``nuclei``
defaults, ``--size`` px), its full grid completed on a thread here and on a
local Dask cluster of one worker process (`RemoteCompletion`), alternating,
``--repeats`` times each; prints the scan's wall time, the mean decision
time per frame and how long the volume took after the last frame.

``groups``: one worm run of ``--size`` px (9 frames, 91 planes) on a fresh
local cluster of ``--workers`` worker processes per entry of ``--groups``,
split into that many groups of output planes; prints the wall time and
what the largest group holds (its planes' recurrent state and volume, from
the session's own accounting: the figure the split is decided on).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rmz_acq.acquisition import ScanPlan
from rmz_acq.batch import find_runs, reconstruct_runs
from rmz_acq.hardware import load_core
from rmz_acq.model.weights import load_model
from rmz_acq.zstack import acquire_zstack

CONFIG = Path(__file__).resolve().parents[1] / "device_configs" / "simulated_worm.cfg"


def runs(args: argparse.Namespace) -> None:
    model = load_model("nuclei")
    plan = ScanPlan.for_model(model)
    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        core = load_core(CONFIG)
        core.setProperty("Camera", "Width", str(args.size))
        core.setProperty("Camera", "Height", str(args.size))
        for i in range(args.runs):
            core.setXYPosition(40.0 * i, 0.0)
            run = root / f"run{i:02d}"
            run.mkdir()
            acquire_zstack(core, list(plan.candidates_um), run / "frames.ome.tif")
            report = {"output_planes_um": list(plan.output_planes_um)}
            (run / "report.json").write_text(json.dumps(report))
        print(
            f"{args.runs} runs of {len(plan.candidates_um)} frames, {args.size} px, "
            f"{len(plan.output_planes_um)} output planes, {os.cpu_count()} cores"
        )
        base = None
        for workers in counts:
            found = find_runs(root, overwrite=True).runs
            started = time.perf_counter()
            results = reconstruct_runs(found, "nuclei", jobs=workers)
            seconds = time.perf_counter() - started
            assert all(r.ok for r in results), [r.error for r in results if not r.ok]
            per_minute = 60 * len(found) / seconds
            base = base or per_minute
            print(
                f"{workers} worker(s): {seconds:6.1f} s, {per_minute:6.2f} runs/min "
                f"(x{per_minute / base:.2f})",
                flush=True,
            )


def train(args: argparse.Namespace) -> None:
    common = [
        "train", "--preset", "nuclei", "--volumes", "4", "--fov", "192", "--crop", "128",
        "--steps", str(args.steps), "--checkpoint-every", str(10 * args.steps),
    ]  # fmt: skip
    exe = Path(sys.executable)
    for processes in (int(p) for p in args.processes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            if processes == 1:
                command = [str(exe), "-m", "rmz_acq", *common, "-o", str(out)]
            else:
                command = [
                    str(exe.with_name("torchrun")), "--standalone",
                    "--nproc-per-node", str(processes), "-m", "rmz_acq", *common, "-o", str(out),
                ]  # fmt: skip
            subprocess.run(command, check=True, capture_output=True, text=True)
            log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
            first, last = log[0], log[-1]  # time from step 10 on: the warm-up is left out
            rate = (last["step"] - first["step"]) / max(last["time_s"] - first["time_s"], 1e-9)
            print(
                f"{processes} process(es): {rate:.3f} steps/s, {rate * processes:.3f} batches/s",
                flush=True,
            )


def scan(args: argparse.Namespace) -> None:
    from distributed import Client, LocalCluster

    from rmz_acq.acquisition import AdaptiveScan, ScanSettings

    model = load_model("nuclei")
    plan = ScanPlan.for_model(model)
    settings = ScanSettings.for_model(model)
    core = load_core(CONFIG)
    core.setProperty("Camera", "Width", str(args.size))
    core.setProperty("Camera", "Height", str(args.size))
    print(f"worm scan, {args.size} px, {len(plan.output_planes_um)} output planes, "
          f"{os.cpu_count()} cores")  # fmt: skip
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
        tempfile.TemporaryDirectory() as tmp,
    ):
        times: dict[str, list[tuple[float, float, float, int]]] = {"thread": [], "cluster": []}
        for i in range(args.repeats):
            for where in ("thread", "cluster"):
                scan = AdaptiveScan(
                    core, model, plan, settings, Path(tmp) / f"{where}{i}",
                    cluster=client if where == "cluster" else None,
                )  # fmt: skip
                report = scan.run()
                d = report.durations_s
                decision = d["decision"] / len(report.frames)
                times[where].append(
                    (d["total"], decision, d["after_last_frame"], len(report.frames))
                )
        for where, rows in times.items():
            total, decision, after, frames = (sum(r[k] for r in rows) / len(rows) for k in range(4))
            print(
                f"completion on {where:7s}: scan {total:5.1f} s for {frames:.1f} frames, "
                f"decision {decision:.2f} s/frame, volume {after:.1f} s after the last frame"
            )


def groups(args: argparse.Namespace) -> None:
    from distributed import LocalCluster

    from rmz_acq.session import ReconstructionSession

    model = load_model("nuclei")
    plan = ScanPlan.for_model(model)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        core = load_core(CONFIG)
        core.setProperty("Camera", "Width", str(args.size))
        core.setProperty("Camera", "Height", str(args.size))
        acquire_zstack(core, list(plan.candidates_um), run / "frames.ome.tif")
        (run / "report.json").write_text(
            json.dumps({"output_planes_um": list(plan.output_planes_um)})
        )
        workers = int(args.workers.split(",")[-1])
        print(
            f"one run: {args.size} px, {len(plan.candidates_um)} frames, "
            f"{len(plan.output_planes_um)} planes; {workers} worker(s), 1 thread each"
        )
        for count in (int(g) for g in args.groups.split(",")):
            found = find_runs(Path(tmp), overwrite=True).runs
            with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as c:
                started = time.perf_counter()
                results = reconstruct_runs(
                    found, "nuclei", scheduler=c.scheduler_address, plane_groups=count
                )
                seconds = time.perf_counter() - started
                assert all(r.ok for r in results), [r.error for r in results]
            planes = -(-len(plan.output_planes_um) // count)  # the largest group
            session = ReconstructionSession(model, plan.output_planes_um[:planes])
            held = session.state_nbytes_for(args.size, args.size) + planes * args.size**2 * 4
            print(
                f"{count} group(s): {seconds:6.1f} s, a group holds {held / 2**30:.2f} GiB",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["runs", "train", "scan", "groups"])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--groups", default="1,4")
    args = parser.parse_args()
    {"runs": runs, "train": train, "scan": scan, "groups": groups}[args.part](args)


if __name__ == "__main__":
    main()
