"""Cost and memory of the streaming reconstruction session.

    python benchmarks/bench_session.py cost    [--size 256] [--planes 16] [--max-m 6]
    python benchmarks/bench_session.py memory  [--size 1024] [--planes 101] [--tile 0]
    python benchmarks/bench_session.py memory-table
    python benchmarks/bench_session.py batched [--size 2048] [--planes 101] [--budget-gib 4]
                                               [--max-m 6] [--model nuclei]
    python benchmarks/bench_session.py keepup [--planes 91] [--frame-ms 60] [--device cuda]
                                              [--sizes 256,1024,2048]
    python benchmarks/bench_session.py seams   [--size 1024] [--planes 4] [--tile 512]
    python benchmarks/bench_session.py throughput [--size 256] [--planes 16]
    python benchmarks/bench_session.py architectures [--size 256] [--planes 91]
    python benchmarks/bench_session.py host [--sizes 256,1024] [--planes 91]
    python benchmarks/bench_session.py blend [--sizes 256,1024] [--planes 91] [--max-m 9]
                                             [--model widefield]

cost:   time of the M-th push of a streaming session against recomputing the
        volume from all M frames from scratch (a new session fed M frames),
        M = 1..max-m, measured in the same run; prints their ratio.
memory: peak resident memory (and the state's share) of one push of a frame
        into a session with the given number of output planes.
seams:  largest difference between tiled and untiled reconstruction after
        three frames, relative to the volume's range.
memory-table: ``memory`` for 256-1024 px frames and 31-101 planes, tiled
        and untiled, each in a fresh process.
batched: the volume from ``--max-m`` frames built a batch of output planes at a
        time (`rmz_acq.plane_batches`), the batch sized for ``--budget-gib``;
        peak resident memory (run it in a fresh process).
throughput: floating-point operations of one plane-step (counted), the rate
        of one large plain convolution on the same machine (what is
        attainable), and the rate achieved by each variant of the step:
        default layout (before), channels-last (shipped), bfloat16 autocast
        and torch.compile, with each one's largest deviation from float32.
architectures: one push into a session of ``--planes`` output planes for
        the shipped architecture (8 base channels, 4 scales) and for grown
        ones (deeper, wider, both), each the median of three pushes, and
        each one's cost as a multiple of the shipped one's, in one run.
host:   the per-plane numpy work of one push without the network (the
        host's share of a push on a GPU).
blend:  the M-th push of weights that carry a linear blend (`widefield`)
        against the same network without it, over 0-18 um, frames spread
        over 1-17 um, M = 1..max-m: the blend's share of a push as it grows
        with the frames pushed.
keepup: per-frame update time at 256 x 256 and 1024 x 1024 against the time
        the microscope needs per frame, and the paper's 101 x 256 x 256
        three-frame volume.
Uses the nuclei preset when installed, else a randomly initialised network
of the same architecture (timings and memory do not depend on the weights);
``batched --model FILE`` measures other weights (a wider candidate).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

import numpy as np
import torch

from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.weights import load_model
from rmz_acq.session import ReconstructionSession


def _model(name: str = "nuclei") -> RecurrentMZ:
    if name != "nuclei":  # weights the user named must load
        return load_model(name).model
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
    stream = ReconstructionSession(model, grid)
    print(f"{size}x{size}, {planes} output planes")
    print(f"{'M':>3}{'push s':>9}{'scratch s':>11}{'scratch/push':>14}")
    for m in range(1, max_m + 1):
        started = time.perf_counter()
        stream.push(frames[m - 1], float(z[m - 1]))
        push = time.perf_counter() - started
        started = time.perf_counter()
        ReconstructionSession(model, grid).run(frames[:m], list(z[:m]))
        scratch = time.perf_counter() - started
        print(f"{m:>3}{push:>9.2f}{scratch:>11.2f}{scratch / push:>14.2f}")


def blend(sizes: list[int], planes: int, max_m: int, name: str) -> None:
    """Seconds per push: the network alone, with the blend, and (for weights that carry a
    bank) with the mean filter instead of the bank weighed per push."""
    loaded = load_model(name)
    if loaded.linear_blend is None:
        raise SystemExit(f"{name} carries no linear blend")
    models = {"network s": dataclasses.replace(loaded, linear_blend=None), "with blend s": loaded}
    if loaded.linear_blend.bank is not None:
        mean = loaded.linear_blend.with_bank(None)
        models = {**models, "mean only s": dataclasses.replace(loaded, linear_blend=mean)}
    grid = np.linspace(0, 18, planes)
    z = np.linspace(1, 17, max_m)
    print(f"{loaded.name} ({loaded.sha256[:8]}), {planes} output planes over 0-18 um")
    print(f"{'size':>6}{'M':>3}" + "".join(f"{k:>14}" for k in models) + f"{'ratio':>8}")
    for size in sizes:
        frames = _frames(max_m, size)
        sessions = [ReconstructionSession(m, grid) for m in models.values()]
        for m in range(1, max_m + 1):
            seconds = []
            for session in sessions:
                started = time.perf_counter()
                session.push(frames[m - 1], float(z[m - 1]))
                seconds.append(time.perf_counter() - started)
            print(f"{size:>6}{m:>3}" + "".join(f"{t:>14.2f}" for t in seconds)
                  + f"{seconds[1] / seconds[0]:>8.2f}", flush=True)  # fmt: skip


def memory(size: int, planes: int, tile: int | None = None) -> None:
    model = _model()
    session = ReconstructionSession(model, np.linspace(0, 18, planes), tile_px=tile)
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


def batched(
    size: int, planes: int, budget_gib: float, frames: int, model_name: str = "nuclei"
) -> None:
    """The volume a batch of planes at a time, sized for ``budget_gib`` of memory."""
    from rmz_acq.plane_batches import reconstruct_by_plane_batches

    model = _model(model_name)
    grid = np.linspace(0, 18, planes)
    session = ReconstructionSession(model, grid)
    per_plane = session.state_nbytes_for(size, size) // planes
    # the volume, the frames, and about 1.25 GiB of libraries, activations and the
    # batch's own volume and measured-plane maps (measured: 4.33 GiB peak at 0.75)
    fixed = planes * size * size * 4 + frames * size * size * 4 + int(1.25 * 2**30)
    batch = max(1, int((budget_gib * 2**30 - fixed) // per_plane))
    started = time.perf_counter()
    reconstruct_by_plane_batches(
        model, _frames(frames, size), list(np.linspace(3, 15, frames)), grid, batch_planes=batch
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"{size}x{size}, {planes} planes, {frames} frames, {batch} planes per batch: peak RSS "
        f"{peak:.2f} GiB (budget {budget_gib:g}; whole-grid state would be "
        f"{per_plane * planes / 2**30:.2f} GiB), {seconds:.0f} s"
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


def _variant_rows(
    model: RecurrentMZ, size: int, planes: int
) -> list[tuple[str, float, float, str]]:
    """(name, seconds per batched step, largest error vs float32, note) per variant."""
    x = 4 * torch.rand(planes, 1, size, size)
    dpm = torch.linspace(-6, 6, planes)
    cl = torch.channels_last

    def prepared(layout: torch.memory_format) -> tuple[torch.Tensor, object]:
        model.to(memory_format=layout)  # type: ignore[call-overload]
        state = model.init_state(planes, size, size)
        state = type(state)(tuple(h.contiguous(memory_format=layout) for h in state.hidden))
        return x.contiguous(memory_format=layout), state

    def one(step: object, frame: torch.Tensor, state: object) -> torch.Tensor:
        return model.decode(step(frame, dpm, state))  # type: ignore[operator]

    rows: list[tuple[str, float, float, str]] = []
    with torch.inference_mode():
        frame, state = prepared(torch.contiguous_format)
        reference = one(model.step, frame, state).float()
        span = float(reference.max() - reference.min()) or 1.0
        seconds = _timed(lambda: one(model.step, frame, state))
        rows.append(("float32, default layout", seconds, 0.0, "before"))
        frame, state = prepared(cl)
        error = float((one(model.step, frame, state) - reference).abs().max()) / span
        seconds = _timed(lambda: one(model.step, frame, state))
        rows.append(("float32, channels-last", seconds, error, "shipped"))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            error = float((one(model.step, frame, state).float() - reference).abs().max()) / span
            seconds = _timed(lambda: one(model.step, frame, state))
        rows.append(("bfloat16 autocast, c-last", seconds, error, ""))
        try:
            started = time.perf_counter()
            compiled = torch.compile(model.step, dynamic=False)
            error = float((one(compiled, frame, state) - reference).abs().max()) / span
            note = f"compiling took {time.perf_counter() - started:.0f} s"
            seconds = _timed(lambda: one(compiled, frame, state))
            rows.append(("torch.compile, c-last", seconds, error, note))
        except Exception as exc:  # inductor needs a C++ toolchain
            rows.append(("torch.compile, c-last", float("nan"), float("nan"), f"failed: {exc}"))
    model.to(memory_format=cl)  # type: ignore[call-overload]
    return rows


def throughput(size: int, planes: int) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    model = _model().eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        x = torch.randn(1, 1, size, size)
        model.decode(model.step(x, torch.zeros(1), model.init_state(1, size, size)))
    flops = counter.get_total_flops()
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    big = torch.randn(8, 64, 256, 256).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        seconds = _timed(lambda: conv(big))
    peak = 2 * 64 * 64 * 9 * 8 * 256 * 256 / seconds / 1e9
    rows = _variant_rows(model, size, planes)
    print(
        f"one plane-step at {size}x{size}: {flops / 1e9:.2f} GFLOP; {planes} planes batched; "
        f"{torch.get_num_threads()} threads"
    )
    print(f"plain 64->64 3x3 convolution, float32 (attainable): {peak:.1f} GFLOP/s")
    print(
        f"{'variant':<28}{'s/step':>8}{'GFLOP/s':>9}{'of attainable':>15}{'speed-up':>10}"
        f"{'max error':>11}  note"
    )
    base = rows[0][1]
    for name, seconds, error, note in rows:
        rate = flops * planes / seconds / 1e9
        print(
            f"{name:<28}{seconds:>8.3f}{rate:>9.1f}{rate / peak:>15.0%}{base / seconds:>9.2f}x"
            f"{error:>11.1e}  {note}"
        )
    print("(max error: largest difference from float32/default, relative to the output's range)")
    print(f"\nplanes per batched step (float32, channels-last), {size}x{size}")
    print(f"{'planes':>7}{'s/plane-step':>14}{'GFLOP/s':>9}")
    for batch in (1, 4, 8, 16, 32):
        frame = torch.rand(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
        state = model.init_state(batch, size, size)
        state = type(state)(
            tuple(h.contiguous(memory_format=torch.channels_last) for h in state.hidden)
        )
        dpm = torch.linspace(-6, 6, batch)
        with torch.inference_mode():
            seconds = _timed(lambda f=frame, s=state, d=dpm: model.decode(model.step(f, d, s)))
        print(f"{batch:>7}{seconds / batch:>14.4f}{flops * batch / seconds / 1e9:>9.1f}")
    session_table(model, size, 91)


def session_table(model: RecurrentMZ, size: int, planes: int) -> None:
    """Whole pushes, before and after: plane batch of 8 against the default, each precision."""
    grid = np.linspace(0, 18, planes)
    frames = _frames(2, size)
    print(f"\nsession push, {size}x{size}, {planes} planes (second frame), same run")
    print(f"{'plane batch':<14}{'precision':<11}{'push s':>8}{'speed-up':>10}")
    first = None
    for batch, dtype in ((8, torch.float32), (None, torch.float32), (None, torch.bfloat16)):
        session = ReconstructionSession(model, grid, plane_batch=batch, compute_dtype=dtype)
        session.push(frames[0], 3.0)
        seconds = session.push(frames[1], 9.0).reconstruction_s
        first = first or seconds
        label = "8 (before)" if batch else f"auto ({session.planes_per_step})"
        name = str(dtype).removeprefix("torch.")
        print(f"{label:<14}{name:<11}{seconds:>8.2f}{first / seconds:>9.2f}x")


def _memory_line(size: int, planes: int, tile: int | None) -> str:
    """Run ``memory`` in a fresh process (peak RSS only ever grows)."""
    import subprocess
    import sys

    command = [sys.executable, __file__, "memory", "--size", str(size), "--planes", str(planes)]
    if tile is not None:
        command += ["--tile", str(tile)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def memory_table() -> None:
    print("peak resident memory of one push, each in a fresh process")
    for size, planes, tile in (
        (256, 31, None),
        (256, 91, None),
        (512, 31, None),
        (512, 91, None),
        (1024, 31, None),
        (1024, 91, None),
        (1024, 91, 0),
        (1024, 101, None),
    ):
        label = "untiled" if tile == 0 else "tiled 512" if size > 768 else "one tile"
        print(f"[{label}] {_memory_line(size, planes, tile)}", flush=True)


def keepup(planes: int, frame_ms: float, device: str, sizes: list[int]) -> None:
    """Per-frame update time against the time the microscope needs per frame."""
    model = _model()
    grid = np.linspace(0, 18, planes)
    where = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    print(f"on {device} ({where}), torch {torch.__version__}")
    print(f"{planes} output planes; a frame takes {frame_ms:g} ms (stage settle + exposure)")
    print(f"{'frame':>10}{'precision':>11}{'update s':>10}{'update/frame time':>19}")
    for size in sizes:
        frames = _frames(2, size)
        for dtype in (torch.float32, torch.bfloat16):
            session = ReconstructionSession(model, grid, compute_dtype=dtype, device=device)
            session.push(frames[0], 3.0)  # the first push also warms up (kernels, autotuning)
            seconds = session.push(frames[1], 9.0).reconstruction_s
            name = str(dtype).removeprefix("torch.")
            print(
                f"{f'{size}x{size}':>10}{name:>11}{seconds:>10.2f}"
                f"{1000 * seconds / frame_ms:>19.1f}",
                flush=True,
            )
    frames = _frames(3, 256)
    for dtype in (torch.float32, torch.bfloat16):
        for _ in range(2 if device != "cpu" else 1):  # on a GPU the second run, warmed up
            started = time.perf_counter()
            ReconstructionSession(
                model, np.linspace(0, 10, 101), compute_dtype=dtype, device=device
            ).run(frames, [3.0, 6.0, 9.0])
            whole = time.perf_counter() - started
        print(
            f"101 x 256 x 256 volume from 3 frames, {str(dtype).removeprefix('torch.')}: "
            f"{whole:.2f} s on {where} (paper: 2.2 s on an RTX 2080 Ti GPU)"
        )


def host(sizes: list[int], planes: int) -> None:
    """The host-side share of a push: its per-plane numpy work, without the network."""
    rng = np.random.default_rng(0)
    print(f"{planes} output planes; per-plane numpy work of one push (no network)")
    for size in sizes:
        volume = rng.random((planes, size, size), dtype=np.float32)
        decoded = rng.random((planes, size, size), dtype=np.float32)
        started = time.perf_counter()
        squared_changes = np.zeros(planes)
        squared_norm = value_sum = 0.0
        for j in range(planes):  # as `ReconstructionSession.push` does, one plane at a time
            new = decoded[j : j + 1] * 2.0 + 1.0  # the intensity map back to camera units
            old = volume[j : j + 1]
            squared_changes[j] = np.sum((new.astype(np.float64) - old) ** 2)
            squared_norm += float(np.sum(new.astype(np.float64) ** 2))
            value_sum += float(np.sum(new, dtype=np.float64))
            old[...] = new
        print(f"{size:>6} x {size:<6}{time.perf_counter() - started:>8.2f} s")


def architectures(size: int, planes: int) -> None:
    grid = np.linspace(0, 18, planes)
    frames = _frames(4, size)
    print(f"{size}x{size}, {planes} output planes, one push (median of 3 after one warm-up)")
    print(f"{'base channels':>14}{'depth':>6}{'parameters':>12}{'push s':>9}{'x shipped':>11}")
    reference = None
    for base, depth in ((8, 4), (8, 5), (11, 4), (12, 4), (11, 5)):
        torch.manual_seed(0)
        model = RecurrentMZ(base_channels=base, depth=depth).eval()
        session = ReconstructionSession(model, grid)
        session.push(frames[0], 3.0)
        times = []
        for i, z in enumerate((6.0, 9.0, 12.0), start=1):
            started = time.perf_counter()
            session.push(frames[i], z)
            times.append(time.perf_counter() - started)
        push = float(np.median(times))
        reference = reference or push
        count = sum(p.numel() for p in model.parameters())
        print(f"{base:>14}{depth:>6}{count:>12,}{push:>9.2f}{push / reference:>11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what",
        choices=(
            "cost",
            "memory",
            "memory-table",
            "batched",
            "seams",
            "throughput",
            "keepup",
            "architectures",
            "host",
            "blend",
        ),
    )
    parser.add_argument("--budget-gib", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--planes", type=int, default=None)
    parser.add_argument("--max-m", type=int, default=None, help="default 6 (blend: 9)")
    parser.add_argument("--tile", type=int, default=None)
    parser.add_argument("--frame-ms", type=float, default=60.0)
    parser.add_argument("--device", default="cpu", help="keepup: cpu, cuda or cuda:N")
    parser.add_argument(
        "--sizes", default="256,1024", help="keepup, host: frame sizes in px, comma-separated"
    )
    parser.add_argument(
        "--model",
        default=None,
        help="batched, blend: a preset or a weights file (default nuclei; blend: widefield)",
    )
    args = parser.parse_args()
    if args.what == "cost":
        cost(args.size or 256, args.planes or 16, args.max_m or 6)
    elif args.what == "memory":
        memory(args.size or 1024, args.planes or 101, args.tile)
    elif args.what == "memory-table":
        memory_table()
    elif args.what == "batched":
        batched(
            args.size or 2048,
            args.planes or 101,
            args.budget_gib,
            args.max_m or 6,
            args.model or "nuclei",
        )
    elif args.what == "keepup":
        sizes = [int(v) for v in args.sizes.split(",")]
        keepup(args.planes or 91, args.frame_ms, args.device, sizes)
    elif args.what == "blend":
        sizes = [int(v) for v in args.sizes.split(",")]
        blend(sizes, args.planes or 91, args.max_m or 9, args.model or "widefield")
    elif args.what == "host":
        host([int(v) for v in args.sizes.split(",")], args.planes or 91)
    elif args.what == "architectures":
        architectures(args.size or 256, args.planes or 91)
    elif args.what == "seams":
        seams(args.size or 1024, args.planes or 4, args.tile or 512)
    else:
        throughput(args.size or 256, args.planes or 16)


if __name__ == "__main__":
    main()
