"""Reconstructing a folder of finished runs: one at a time against one per core.

    python benchmarks/bench_batch.py [--runs 8] [--size 256] [--planes 46]

Writes ``--runs`` simulated worm runs (3 frames at 3, 9, 15 um each, with a
report.json giving the output grid) into a temporary folder, then times
``rmz_acq.batch.reconstruct_runs`` (what ``rmz-acq reconstruct-runs`` calls)
with every split of the cores into processes x threads, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from rmz_acq.batch import find_runs, reconstruct_runs
from rmz_acq.io import write_zstack
from rmz_acq.training.conditions import PRESET_CONDITIONS
from rmz_acq.training.data import make_simulated_volume


def _make_runs(root: Path, n: int, size: int, planes: int) -> None:
    volume = make_simulated_volume(PRESET_CONDITIONS["nuclei"], 30_000, size)
    grid = np.linspace(0, 18, planes).round(4).tolist()
    for i in range(n):
        rng = np.random.default_rng(i)
        z = [3.0, 9.0, 15.0]
        frames = np.stack([volume.frame(v, rng) for v in z]).astype(np.uint16)
        run = root / f"run_{i:03d}"
        run.mkdir()
        write_zstack(run / "frames.ome.tif", frames, z, 0.1)
        (run / "report.json").write_text(json.dumps({"output_planes_um": grid}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--planes", type=int, default=46)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    splits = sorted({1, *(j for j in (2, 4, 8, 16) if j <= cores), cores})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _make_runs(root, args.runs, args.size, args.planes)
        print(
            f"{args.runs} runs of 3 frames, {args.size}x{args.size}, {args.planes} output "
            f"planes; {cores} cores"
        )
        print(f"{'processes x threads':>20}{'wall s':>9}{'runs/min':>10}{'speed-up':>10}")
        first = None
        for jobs in splits:
            runs = find_runs(root, output_name=f"volume_{jobs}.ome.tif").runs
            started = time.perf_counter()
            results = reconstruct_runs(runs, "nuclei", jobs=jobs)
            seconds = time.perf_counter() - started
            assert all(r.ok for r in results), [r.error for r in results if not r.ok]
            first = first or seconds
            label = f"{jobs} x {max(1, cores // jobs)}"
            print(
                f"{label:>20}{seconds:>9.1f}{60 * len(runs) / seconds:>10.1f}"
                f"{first / seconds:>9.2f}x"
            )


if __name__ == "__main__":
    main()
