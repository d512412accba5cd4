"""Where to look next: next-plane policies against fixed, evenly spaced scans.

    python benchmarks/bench_next_plane.py --sample worm|beads|FAMILY [--seeds 200:220] [--size 128]
        [--policies bisection,even,structure,settle] [--model PRESET_OR_FILE] [--json OUT]
        [--candidate-step UM] [--relative-epsilon E] [--epsilons 0.03,0.02]

For each sample seed the simulated microscope takes the mechanical stack of
every output plane (the truth), then one frame at every plane a policy may
choose (the candidates of `ScanPlan.for_model` and the output planes between
them) and one at each plane of fixed scans of M = 2 .. N evenly spaced
planes over the candidates' span (N = the number of candidates).  Then,
offline and exactly as `AdaptiveScan` does it, every policy chooses plane
after plane from the same frames, each frame judged on the decision planes
(`ScanJudge`), until N frames are taken; the full volume after every frame
is scored against the truth (mean per-plane PSNR on the truth's intensity
scale).  Fixed scans are pushed sorted by z.

Printed: PSNR at every M for each policy and for the fixed scans; then per
policy, with the preset's default stop rule, the frames used, PSNR at the
stop, the fixed scan with the same M (per seed), the every-candidate volume
(the bisection scan through all N), how many seeds stopped at least as well
as the fixed scan, and the decision cost per frame (policy + decision push)
against a full push.  Column `z-sorted`: the frames each policy took up to
its stop, pushed once more sorted by z, to tell what the order costs from
what the spacing costs.  ``--epsilons``: the same scans stopped at other
thresholds (frames, seeds that stopped on the rule before the last
candidate, PSNR against the fixed scan with the same M and against every
candidate), to choose candidates and threshold together.

Seeds 100-103 served to design the policies; 200-219 are held out (README).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stopping import SAMPLES, _score

from rmz_acq.acquisition import ScanPlan, ScanSettings
from rmz_acq.acquisition.judge import ScanJudge
from rmz_acq.acquisition.policies import ScanState, choosable_planes, make_policy
from rmz_acq.hardware import load_core
from rmz_acq.io import read_zstack
from rmz_acq.model.weights import load_model
from rmz_acq.session import ReconstructionSession
from rmz_acq.zstack import acquire_zstack


def _stop(changes: list[float | None], epsilon: float, min_frames: int) -> int:
    """Frames the rule takes (all of them when it never fires)."""
    for m in range(max(min_frames, 2), len(changes) + 1):
        change = changes[m - 1]
        if change is not None and change <= epsilon:
            return m
    return len(changes)


def _acquire(core, planes: list[float], path: Path) -> dict[float, tuple[np.ndarray, float]]:
    """Frame and measured z per commanded plane."""
    acquire_zstack(core, planes, path)
    stack = read_zstack(path)
    assert stack.z_um is not None
    return {
        round(z, 9): (frame, float(measured))
        for z, frame, measured in zip(
            planes, stack.data.astype(np.float32), stack.z_um, strict=True
        )
    }


def _score_sorted(model, plan, frames, planes_um, truth) -> float:
    """PSNR of the volume from the frames at ``planes_um``, pushed sorted by z."""
    picked = [frames[round(z, 9)] for z in sorted(planes_um)]
    session = ReconstructionSession(model, plan.output_planes_um)
    result = session.run([f for f, _ in picked], [z for _, z in picked])
    return _score(result.volume, truth)


def _at_stops(results, name, epsilon, min_frames):
    """Per seed: the policy's runs, the frames it stops at, PSNR there and of the fixed scan."""
    runs = [r["policies"][name] for r in results]
    stops = [_stop(p["relative_change"], epsilon, min_frames) for p in runs]
    at_stop = [p["psnr"][m - 1] for p, m in zip(runs, stops, strict=True)]
    fixed = [r["fixed"][m] if m >= 2 else np.nan for r, m in zip(results, stops, strict=True)]
    return runs, stops, np.asarray(at_stop), np.asarray(fixed)


def _thresholds(results, names, epsilons, min_frames, every) -> None:
    """Print where each policy stops at each threshold, from the scans already made."""
    print(
        f"\n{'policy':<12}{'epsilon':>8}{'frames':>7}{'range':>7}{'on rule':>8}"
        f"{'stop dB':>9}{'vs fixed':>9}{'vs every':>9}{'share':>7}"
    )
    for name in names:
        for epsilon in epsilons:
            runs, stops, at_stop, fixed = _at_stops(results, name, epsilon, min_frames)
            count = len(runs[0]["relative_change"])
            ruled = sum(m < len(p["relative_change"]) for p, m in zip(runs, stops, strict=True))
            print(
                f"{name:<12}{epsilon:>8g}{np.mean(stops):>7.2f}{f'{min(stops)}-{max(stops)}':>7}"
                f"{f'{ruled}/{len(runs)}':>8}{np.mean(at_stop):>9.2f}"
                f"{np.mean(at_stop - fixed):>+9.2f}"
                f"{np.mean(at_stop - every):>+9.2f}{np.mean(stops) / count:>7.0%}"
            )


def run_policy(model, plan, settings, name, frames, truth) -> dict:
    """One scan through every candidate, offline; PSNR and decision change per M."""
    policy = make_policy(name)
    judge = ScanJudge(model, plan, settings)
    full = ReconstructionSession(model, plan.output_planes_um)
    state = ScanState(
        candidates_um=plan.candidates_um,
        choosable_um=choosable_planes(plan.candidates_um, plan.output_planes_um),
    )
    scores, changes, planes, deciding, pushing = [], [], [], [], []
    for index in range(len(plan.candidates_um)):
        started = time.perf_counter()
        choice = policy.choose(state)
        chosen = time.perf_counter() - started
        if choice is None:
            break
        frame, measured = frames[round(choice.z_um, 9)]
        started = time.perf_counter()
        verdict = judge.judge(index, frame, measured)
        deciding.append(chosen + time.perf_counter() - started)
        started = time.perf_counter()
        result = full.push(frame, measured)
        pushing.append(time.perf_counter() - started)
        scores.append(_score(result.volume, truth))
        changes.append(verdict.relative_change)
        planes.append(choice.z_um)
        state = state.after(
            choice.z_um, judge.judged_planes_um, verdict.plane_changes, verdict.plane_signal
        )
    return {
        "psnr": scores,
        "relative_change": changes,
        "planes_um": planes,
        "decision_s": deciding,
        "push_s": pushing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", choices=sorted(SAMPLES), default="worm")
    parser.add_argument("--seeds", default="200:220", help="FIRST:STOP (STOP excluded)")
    parser.add_argument("--size", type=int, default=128, help="camera width and height, px")
    parser.add_argument("--policies", default="bisection,even,structure,settle")
    parser.add_argument("--model", default=None, help="weights (default: the sample's preset)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument(
        "--candidate-step",
        type=float,
        default=None,
        help="candidate spacing, um (default: the preset's)",
    )
    parser.add_argument(
        "--relative-epsilon", type=float, default=None, help="stop rule (default: the preset's)"
    )
    parser.add_argument(
        "--epsilons", default="", help="other thresholds to stop at, comma-separated"
    )
    args = parser.parse_args()
    first, stop = (int(v) for v in args.seeds.split(":"))
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    config, preset, sample = SAMPLES[args.sample]
    model = load_model(args.model or preset)
    settings = ScanSettings.for_model(preset)
    epsilon = settings.relative_epsilon if args.relative_epsilon is None else args.relative_epsilon
    assert epsilon is not None
    plan = ScanPlan.for_model(model, candidate_step_um=args.candidate_step)
    count = len(plan.candidates_um)
    lo, hi = min(plan.candidates_um), max(plan.candidates_um)
    fixed_planes = {m: np.linspace(lo, hi, m).round(6).tolist() for m in range(2, count + 1)}
    choosable = list(choosable_planes(plan.candidates_um, plan.output_planes_um))
    results: list[dict] = []
    started = time.perf_counter()
    # The config as it is now: an edit during a long run must not change its samples.
    snapshot = Path(tempfile.mkdtemp()) / config.name
    snapshot.write_text(config.read_text())
    for seed in range(first, stop):
        core = load_core(snapshot)
        for key, value in sample.items():
            core.setProperty("Microscope", key, value)
        core.setProperty("Microscope", "SampleSeed", str(seed))
        core.setProperty("Camera", "Width", str(args.size))
        core.setProperty("Camera", "Height", str(args.size))
        with tempfile.TemporaryDirectory() as tmp:
            acquire_zstack(core, list(plan.output_planes_um), Path(tmp) / "truth.ome.tif")
            truth = read_zstack(Path(tmp) / "truth.ome.tif").data.astype(np.float32)
            frames = _acquire(core, choosable, Path(tmp) / "choosable.ome.tif")
            extra = sorted({z for zs in fixed_planes.values() for z in zs} - set(frames))
            if extra:
                frames.update(_acquire(core, extra, Path(tmp) / "fixed.ome.tif"))
        row: dict = {"seed": seed, "policies": {}, "fixed": {}}
        for m, zs in fixed_planes.items():
            row["fixed"][m] = _score_sorted(model, plan, frames, zs, truth)
        for name in names:
            run = run_policy(model, plan, settings, name, frames, truth)
            m = _stop(run["relative_change"], epsilon, settings.min_frames)
            run["sorted_at_stop"] = _score_sorted(model, plan, frames, run["planes_um"][:m], truth)
            row["policies"][name] = run
        results.append(row)
        print(
            f"seed {seed}: fixed "
            + " ".join(f"{row['fixed'][m]:.2f}" for m in fixed_planes)
            + " | "
            + " | ".join(
                f"{n} " + " ".join(f"{s:.2f}" for s in row["policies"][n]["psnr"]) for n in names
            ),
            flush=True,
        )
        if args.json:  # after every seed: a long run that stops keeps what it measured
            args.json.write_text(json.dumps({"sample": args.sample, "seeds": results}))
    n = len(results)
    print(
        f"\n{args.sample}, {model.name} {model.sha256[:8]}, seeds {first}-{stop - 1}, "
        f"{args.size} px, {count} candidates {lo:g}-{hi:g} um, relative epsilon {epsilon:g} "
        f"({time.perf_counter() - started:.0f} s)"
    )
    print("\nPSNR (dB) after M frames, mean over seeds")
    print(f"{'M':<12}" + "".join(f"{m:>7}" for m in range(1, count + 1)))
    print(
        f"{'fixed':<12}{'':>7}"
        + "".join(f"{np.mean([r['fixed'][m] for r in results]):>7.2f}" for m in fixed_planes)
    )
    for name in names:
        curve = np.mean([r["policies"][name]["psnr"] for r in results], axis=0)
        print(f"{name:<12}" + "".join(f"{v:>7.2f}" for v in curve))
    every = [r["policies"][names[0]]["psnr"][-1] for r in results]
    print(
        f"\nat the stop (relative epsilon {epsilon:g}); every candidate ({names[0]}, "
        f"{count} frames): {np.mean(every):.2f} dB"
    )
    print(
        f"{'policy':<12}{'frames':>7}{'stop dB':>9}{'fixed dB':>9}{'vs fixed':>9}"
        f"{'>= fixed':>9}{'vs every':>9}{'z-sorted':>9}{'decide s':>9}{'push s':>8}"
    )
    summary = {}
    for name in names:
        runs, stops, at_stop, fixed = _at_stops(results, name, epsilon, settings.min_frames)
        gain = at_stop - fixed
        loss = at_stop - np.asarray(every)
        resorted = np.mean([p["sorted_at_stop"] for p in runs])
        decide = np.mean([np.mean(p["decision_s"]) for p in runs])
        push = np.mean([np.mean(p["push_s"]) for p in runs])
        summary[name] = {
            "frames": float(np.mean(stops)),
            "psnr_at_stop": float(np.mean(at_stop)),
            "fixed_same_m": float(np.mean(fixed)),
            "vs_fixed": float(np.mean(gain)),
            "at_least_fixed": int(np.sum(gain >= 0)),
            "vs_every": float(np.mean(loss)),
            "z_sorted_at_stop": float(resorted),
            "decision_s": float(decide),
            "push_s": float(push),
        }
        print(
            f"{name:<12}{np.mean(stops):>7.2f}{np.mean(at_stop):>9.2f}{np.mean(fixed):>9.2f}"
            f"{np.mean(gain):>+9.2f}{f'{int(np.sum(gain >= 0))}/{n}':>9}{np.mean(loss):>+9.2f}"
            f"{resorted:>9.2f}{decide:>9.3f}{push:>8.3f}"
        )
    epsilons = [float(e) for e in args.epsilons.split(",") if e.strip()]
    if epsilons:
        _thresholds(results, names, epsilons, settings.min_frames, np.asarray(every))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "sample": args.sample,
                    "model": model.sha256,
                    "seeds": results,
                    "summary": summary,
                },
                default=float,
            )
        )


if __name__ == "__main__":
    main()
