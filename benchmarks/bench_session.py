"""Cost and memory of the streaming reconstruction session.

    python benchmarks/bench_session.py cost    [--size 256] [--planes 16] [--max-m 6]
    python benchmarks/bench_session.py memory  [--size 1024] [--planes 101]
    python benchmarks/bench_session.py seams   [--size 1024] [--planes 4] [--tile 512]
    python benchmarks/bench_session.py throughput [--size 256] [--planes 16]

cost:   time of the M-th push of a streaming session against recomputing the
        volume from all M frames from scratch (a new session fed M frames),
        M = 1..max-m, measured in the same run; prints their ratio.
memory: peak resident memory (and the state's share) of one push of a frame
        into a session with the given number of output planes.
seams:  largest difference between tiled and untiled reconstruction after
        three frames, relative to the volume's range.
throughput: floating-point operations of one plane-step (counted), the rate
        achieved in the default and in channels-last layout, and the rate of
        one large plain convolution on the same machine (what is attainable).
Uses the nuclei preset when installed, else a randomly initialised network
of the same architecture (timings and memory do not depend on the weights).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.weights import load_model
from rmz_acq.session import ReconstructionSession


def _model() -> RecurrentMZ:
    try:
        return load_model("nuclei").model
    except Exception:
        torch.manual_seed(0)
        return RecurrentMZ(base_channels=8, depth=4).eval()


def _frames(n: int, size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.random((size, size)).astype(np.float32)
    return [100 + 400 * np.roll(base, 7 * i, axis=0) for i in range(n)]


def cost(size: int, planes: int, max_m: int) -> None:
    model = _model()
    grid = np.linspace(0, 18, planes)
    frames = _frames(max_m, size)
    z = np.linspace(3, 15, max_m)
    stream = ReconstructionSession(model, grid, plane_batch=8)
    print(f"{size}x{size}, {planes} output planes")
    print(f"{'M':>3}{'push s':>9}{'scratch s':>11}{'scratch/push':>14}")
    for m in range(1, max_m + 1):
        started = time.perf_counter()
        stream.push(frames[m - 1], float(z[m - 1]))
        push = time.perf_counter() - started
        started = time.perf_counter()
        ReconstructionSession(model, grid, plane_batch=8).run(frames[:m], list(z[:m]))
        scratch = time.perf_counter() - started
        print(f"{m:>3}{push:>9.2f}{scratch:>11.2f}{scratch / push:>14.2f}")


def memory(size: int, planes: int) -> None:
    model = _model()
    session = ReconstructionSession(model, np.linspace(0, 18, planes), plane_batch=4)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    started = time.perf_counter()
    session.push(_frames(1, size)[0], 3.0)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    volume = session.volume.nbytes / 2**30 if session.volume is not None else 0.0
    print(
        f"{size}x{size}, {planes} planes: peak RSS {peak:.2f} GiB (before {before:.2f}), "
        f"state {session.state_nbytes / 2**30:.2f} GiB ({session.state_dtype}), "
        f"volume {volume:.2f} GiB, push {seconds:.1f} s"
    )


def seams(size: int, planes: int, tile: int) -> None:
    model = _model()
    grid = np.linspace(0, 18, planes)
    frames, z = _frames(3, size), [3.0, 15.0, 9.0]
    whole = ReconstructionSession(model, grid, tile_px=0, state_dtype=torch.float32).run(frames, z)
    tiled = ReconstructionSession(model, grid, tile_px=tile, state_dtype=torch.float32).run(
        frames, z
    )
    span = float(whole.volume.max() - whole.volume.min())
    error = float(np.abs(whole.volume - tiled.volume).max())
    print(
        f"{size}x{size}, {planes} planes, {tile} px tiles: largest seam error {error:.3g} "
        f"({error / span:.2e} of the volume's range)"
    )


def _timed(fn: object, repeats: int = 3) -> float:
    fn()  # type: ignore[operator]
    started = time.perf_counter()
    for _ in range(repeats):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - started) / repeats


def throughput(size: int, planes: int) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    model = _model().eval()
    x = torch.randn(planes, 1, size, size)
    dpm = torch.zeros(planes)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.decode(model.step(x[:1], dpm[:1], model.init_state(1, size, size)))
    flops = counter.get_total_flops()
    rows = []
    for name, layout in (
        ("default", torch.contiguous_format),
        ("channels-last", torch.channels_last),
    ):
        model.to(memory_format=layout)  # type: ignore[call-overload]
        frame = x.contiguous(memory_format=layout)
        state = model.init_state(planes, size, size)
        state = type(state)(tuple(h.contiguous(memory_format=layout) for h in state.hidden))
        with torch.inference_mode():
            seconds = _timed(lambda f=frame, s=state: model.decode(model.step(f, dpm, s)))
        rows.append((name, seconds, flops * planes / seconds / 1e9))
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    big = torch.randn(8, 64, 256, 256).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        seconds = _timed(lambda: conv(big))
    peak = 2 * 64 * 64 * 9 * 8 * 256 * 256 / seconds / 1e9
    print(f"one plane-step at {size}x{size}: {flops / 1e9:.2f} GFLOP; {planes} planes batched")
    print(f"{'layout':<15}{'s':>8}{'GFLOP/s':>10}{'of attainable':>15}")
    for name, seconds, rate in rows:
        print(f"{name:<15}{seconds:>8.3f}{rate:>10.1f}{rate / peak:>15.0%}")
    print(f"plain 64->64 3x3 convolution (attainable): {peak:.1f} GFLOP/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("cost", "memory", "seams", "throughput"))
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--planes", type=int, default=None)
    parser.add_argument("--max-m", type=int, default=6)
    parser.add_argument("--tile", type=int, default=512)
    args = parser.parse_args()
    if args.what == "cost":
        cost(args.size or 256, args.planes or 16, args.max_m)
    elif args.what == "memory":
        memory(args.size or 1024, args.planes or 101)
    elif args.what == "seams":
        seams(args.size or 1024, args.planes or 4, args.tile)
    else:
        throughput(args.size or 256, args.planes or 16)


if __name__ == "__main__":
    main()
