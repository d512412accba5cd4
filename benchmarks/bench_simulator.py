"""How fast the simulated microscope delivers frames.

    python benchmarks/bench_simulator.py [--size 512] [--frames 40]

For each shipped simulated config, with the camera set to SIZE x SIZE:
the one-time cost of the first frame (sample generation and the focal
stack for the stage's whole travel), then the steady per-frame cost of a
move + snap + readout through the core, at random z.  The issue's target is
about 50 ms per 512 x 512 frame.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from rmz_acq.hardware import load_core

CONFIGS = Path(__file__).resolve().parents[1] / "device_configs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()

    print(f"{'config':<22}{'frame':>10}{'first frame s':>15}{'per frame ms':>14}{'p95 ms':>9}")
    for config in sorted(CONFIGS.glob("simulated_*.cfg")):
        core = load_core(config)
        core.setProperty("Camera", "Width", str(args.size))
        core.setProperty("Camera", "Height", str(args.size))
        core.setShutterOpen(True)
        lo = float(core.getProperty("Z", "LowerLimitUm"))
        hi = float(core.getProperty("Z", "UpperLimitUm"))
        start = time.perf_counter()
        core.snapImage()
        core.getImage()
        first = time.perf_counter() - start
        rng = np.random.default_rng(0)
        times = []
        for z in rng.uniform(lo, hi, args.frames):
            start = time.perf_counter()
            core.setPosition(float(z))
            core.snapImage()
            core.getImage()
            times.append(time.perf_counter() - start)
        ms = np.asarray(times) * 1000
        print(
            f"{config.stem:<22}{f'{args.size}x{args.size}':>10}{first:>15.2f}"
            f"{np.median(ms):>14.1f}{np.percentile(ms, 95):>9.1f}"
        )


if __name__ == "__main__":
    main()
