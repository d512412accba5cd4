"""Where to look next: next-plane policies against fixed, evenly spaced scans.

    python benchmarks/bench_next_plane.py --sample worm|beads|FAMILY [--seeds 200:220] [--size 128]
        [--policies bisection,even,structure,settle] [--model PRESET_OR_FILE] [--json OUT]
        [--candidate-step UM] [--relative-epsilon E] [--epsilons 0.03,0.02]
        [--stop-at any|even] [--min-frames N] [--volume-order as-taken|z] [--fixed-m 3,5,9,17]
    python benchmarks/bench_next_plane.py --read OUT.json [--stop-at ...] [--min-frames N]
        [--epsilons ...]

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

``--stop-at even`` lets the rule stop only where the planes taken are
evenly spaced (`rmz_acq.acquisition.stop_rules.evenly_spaced`); with
``--volume-order z`` the score at a stop is that of the frames taken,
pushed sorted by z (as a scan with that setting builds its final volume;
the fixed scan's own score when the planes are the fixed scan's).
``--min-frames N``: the rule is not heard before N frames (default: the
preset's; `nuclei` 9).  ``--read OUT.json`` prints the tables again from a run's ``--json``
output, with these settings and thresholds, without scanning.
``--fixed-m 3,5,9,17`` scans only those fixed sizes (a third of the
time with 17 candidates); stops at other M then have no fixed scan to
compare with (NaN).

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
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stopping import SAMPLES, _score

from rmz_acq.acquisition import ScanPlan, ScanSettings
from rmz_acq.acquisition.judge import ScanJudge, frame_noise_rms, within_margin
from rmz_acq.acquisition.policies import ScanState, choosable_planes, make_policy
from rmz_acq.acquisition.settings import sorts_by_z
from rmz_acq.acquisition.stop_rules import (
    RELATIVE_TO,
    STOP_AT,
    evenly_spaced,
    relative_change,
    replayed_stop,
)
from rmz_acq.hardware import load_core
from rmz_acq.io import read_zstack
from rmz_acq.model.weights import load_model
from rmz_acq.reconstruct import stack_normalization
from rmz_acq.session import ReconstructionSession
from rmz_acq.zstack import acquire_zstack


def _live_changes(run: dict, epsilon: float, settings: ScanSettings) -> list[float | None]:
    """The change a live scan's rule reads per frame at ``epsilon``.

    The decision planes' estimate, except within the decision margin of
    ``epsilon``, where a live scan waits for the full grid's own change
    (`ScanJudge`); runs saved before the full grid's figures were kept give
    the estimates alone.
    """
    full = _full_changes(run, settings)
    if full is None:
        return run["relative_change"]
    if run.get("relative_to", "volume") != settings.relative_to:
        return full  # the estimates measured another change
    return [
        grid if within_margin(estimate, epsilon, settings.decision_margin) else estimate
        for estimate, grid in zip(run["relative_change"], full, strict=True)
    ]


def _full_changes(run: dict, settings: ScanSettings) -> list[float | None] | None:
    """The full grid's change per frame, relative as ``settings`` say (None: not kept)."""
    full = run.get("full")
    if not full:
        return None
    return [
        relative_change(
            full["change"][m],
            norm=full["norm"][m],
            centred_norm=full["centred_norm"][m],
            voxels=full["voxels"][m],
            noise_rms=float(np.mean(full["frame_noise"][: m + 1])),
            relative_to=settings.relative_to,
        )
        for m in range(len(full["change"]))
    ]


def _stop(run: dict, epsilon: float, settings: ScanSettings) -> int:
    """Frames the rule takes on a policy's run (all of them when it never fires)."""
    planes = run["planes_um"]
    return replayed_stop(
        _live_changes(run, epsilon, settings),
        planes,
        (min(planes), max(planes)),
        epsilon,
        min_frames=settings.min_frames,
        stop_at=settings.stop_at,
    )


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
    """PSNR of the volume from the frames at ``planes_um``, pushed sorted by z.

    Normalised by all the frames' intensity statistics, as a scan's z-sorted
    volume and ``rmz-acq reconstruct --order z`` are (`stack_normalization`).
    """
    picked = [frames[round(z, 9)] for z in sorted(planes_um)]
    images = [f for f, _ in picked]
    session = ReconstructionSession(
        model, plan.output_planes_um, normalization=stack_normalization(model, images)
    )
    result = session.run(images, [z for _, z in picked])
    return _score(result.volume, truth)


def _sorted_at(row: dict, run: dict, m: int) -> float:
    """PSNR of the first ``m`` frames of ``run`` pushed sorted by z (NaN: not measured).

    The fixed scan's own score when they are its planes; else the one the
    run measured at that stop (`_measure_sorted`).
    """
    planes = run["planes_um"]
    fixed = np.linspace(min(planes), max(planes), m).round(6)  # as `main` places them
    if str(m) in row["fixed"] and np.allclose(sorted(planes[:m]), fixed, atol=1e-6):
        return float(row["fixed"][str(m)])
    return float(run.get("sorted_at", {}).get(str(m), np.nan))


def _at_stops(results, name, epsilon, settings, model):
    """Per seed: the frames the policy stops at, PSNR there and of the fixed scan."""
    runs = [r["policies"][name] for r in results]
    stops = [_stop(p, epsilon, settings) for p in runs]
    at_stop = [
        _sorted_at(r, p, m) if sorts_by_z(settings.volume_order, m, model) else p["psnr"][m - 1]
        for r, p, m in zip(results, runs, stops, strict=True)
    ]
    fixed = [r["fixed"].get(str(m), np.nan) for r, m in zip(results, stops, strict=True)]
    return runs, stops, np.asarray(at_stop), np.asarray(fixed)


def _thresholds(results, names, epsilons, settings, every, model) -> None:
    """Print where each policy stops at each threshold, from the scans already made."""
    print(
        f"\n{'policy':<12}{'epsilon':>8}{'frames':>7}{'range':>7}{'on rule':>8}"
        f"{'stop dB':>9}{'vs fixed':>9}{'>= fixed':>9}{'vs every':>9}{'<= 0.5':>7}{'share':>7}"
    )
    for name in names:
        for epsilon in epsilons:
            runs, stops, at_stop, fixed = _at_stops(results, name, epsilon, settings, model)
            count = len(runs[0]["relative_change"])
            ruled = sum(m < len(p["relative_change"]) for p, m in zip(runs, stops, strict=True))
            close = int(np.sum(at_stop - every >= -0.5))
            print(
                f"{name:<12}{epsilon:>8g}{np.mean(stops):>7.2f}{f'{min(stops)}-{max(stops)}':>7}"
                f"{f'{ruled}/{len(runs)}':>8}{np.mean(at_stop):>9.2f}"
                f"{np.mean(at_stop - fixed):>+9.2f}"
                f"{f'{int(np.sum(at_stop - fixed >= -1e-9))}/{len(runs)}':>9}"
                f"{np.mean(at_stop - every):>+9.2f}{f'{close}/{len(runs)}':>7}"
                f"{np.mean(stops) / count:>7.0%}"
            )


def _every(results, names) -> tuple[NDArray, NDArray]:
    """Per seed: every candidate in the first policy's order, and sorted by z (the fixed scan)."""
    taken = np.asarray([r["policies"][names[0]]["psnr"][-1] for r in results])
    count = len(results[0]["policies"][names[0]]["psnr"])
    ordered = np.asarray([r["fixed"].get(str(count), np.nan) for r in results])
    return taken, ordered


def _measure_sorted(model, plan, frames, truth, row, run, stops) -> None:
    """Score the frames at each stop in ``stops``, pushed sorted by z (for `_sorted_at`)."""
    run["sorted_at"] = {}
    for m in sorted(set(stops)):
        if np.isnan(_sorted_at(row, run, m)):
            planes = run["planes_um"][:m]
            run["sorted_at"][str(m)] = _score_sorted(model, plan, frames, planes, truth)


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
    figures: dict[str, list] = {}
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
        _volume_figures(figures, result, frame)
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
        "full": figures,
        "relative_to": settings.relative_to,
    }


def _volume_figures(figures: dict[str, list], result, frame) -> None:
    """The full grid's change and the norms it can be measured against, per frame."""
    volume = result.volume.astype(np.float64)
    planes = volume.reshape(len(volume), -1)
    for key, value in (
        ("change", result.frobenius_change),
        ("norm", float(np.sqrt(np.sum(planes**2)))),
        ("centred_norm", float(np.sqrt(np.sum((planes - planes.mean()) ** 2)))),
        ("plane_centred_norm", float(np.sqrt(np.sum(planes.var(axis=1)) * planes.shape[1]))),
        ("frame_rms", float(np.sqrt(np.mean(np.asarray(frame, np.float64) ** 2)))),
        ("voxels", result.voxels),
        ("frame_noise", frame_noise_rms(frame)),
    ):
        figures.setdefault(key, []).append(value)


def _report(results, names, settings, epsilon, epsilons, model, *, title: str) -> dict:
    """Print the tables; the summary at ``epsilon`` (for ``--json``)."""
    count = len(results[0]["policies"][names[0]]["psnr"])
    print(f"\n{title}")
    print("\nPSNR (dB) after M frames, mean over seeds")
    print(f"{'M':<12}" + "".join(f"{m:>7}" for m in range(1, count + 1)))
    print(
        f"{'fixed':<12}{'':>7}"
        + "".join(
            f"{np.mean([r['fixed'].get(str(m), np.nan) for r in results]):>7.2f}"
            for m in range(2, count + 1)
        )
    )
    for name in names:
        curve = np.mean([r["policies"][name]["psnr"] for r in results], axis=0)
        print(f"{name:<12}" + "".join(f"{v:>7.2f}" for v in curve))
    taken, ordered = _every(results, names)
    every = np.maximum(taken, ordered)  # the better of the two, seed by seed
    n = len(results)
    print(
        f"\nat the stop (relative epsilon {epsilon:g}, stop at {settings.stop_at}, volume "
        f"{settings.volume_order}); every candidate ({count} frames): {np.mean(taken):.2f} dB "
        f"in {names[0]} order, {np.mean(ordered):.2f} dB sorted by z; 'vs every' against "
        f"the better of the two on each seed ({np.mean(every):.2f} dB)"
    )
    print(
        f"{'policy':<12}{'frames':>7}{'stop dB':>9}{'fixed dB':>9}{'vs fixed':>9}"
        f"{'>= fixed':>9}{'vs every':>9}{'z-sorted':>9}{'decide s':>9}{'push s':>8}"
    )
    summary = {}
    for name in names:
        runs, stops, at_stop, fixed = _at_stops(results, name, epsilon, settings, model)
        gain = at_stop - fixed
        loss = at_stop - every
        resorted = np.mean(
            [_sorted_at(r, p, m) for r, p, m in zip(results, runs, stops, strict=True)]
        )
        decide = np.mean([np.mean(p["decision_s"]) for p in runs])
        push = np.mean([np.mean(p["push_s"]) for p in runs])
        summary[name] = {
            "frames": float(np.mean(stops)),
            "psnr_at_stop": float(np.mean(at_stop)),
            "fixed_same_m": float(np.mean(fixed)),
            "vs_fixed": float(np.mean(gain)),
            "at_least_fixed": int(np.sum(gain >= -1e-9)),
            "vs_every": float(np.mean(loss)),
            "z_sorted_at_stop": float(resorted),
            "decision_s": float(decide),
            "push_s": float(push),
        }
        print(
            f"{name:<12}{np.mean(stops):>7.2f}{np.mean(at_stop):>9.2f}{np.mean(fixed):>9.2f}"
            f"{np.mean(gain):>+9.2f}{f'{int(np.sum(gain >= -1e-9))}/{n}':>9}"
            f"{np.mean(loss):>+9.2f}{resorted:>9.2f}{decide:>9.3f}{push:>8.3f}"
        )
    if settings.stop_at == "even":
        _changes_where_even(results, names, settings)
    _oracle(results, names, settings, every, model)
    if epsilons:
        _thresholds(results, names, epsilons, settings, every, model)
    return summary


def _oracle_stops(scores: list[NDArray], every: NDArray, within_db: float) -> NDArray:
    """Per seed: the fewest frames whose volume is within ``within_db`` of ``every`` (NaN: none)."""
    stops = []
    for curve, best in zip(scores, every, strict=True):
        close = np.flatnonzero(np.nan_to_num(curve, nan=-np.inf) >= best - within_db)
        stops.append(float(close[0] + 1) if close.size else np.nan)
    return np.asarray(stops)


def _oracle(results, names, settings, every, model, within_db: float = 0.5) -> None:
    """The fewest frames any stop rule could take and be within ``within_db`` of every candidate.

    Knowing the truth, per seed: the first frame count whose volume (the one
    a scan stopping there ends with, where the rule may stop at all) is
    within ``within_db`` dB of the every-candidate volume; the same for the
    fixed scans.  A rule that reads only the volume cannot do better on a
    seed, so the mean over seeds bounds the frames of any rule within
    ``within_db`` on all of them; the 90 % column excuses the hardest tenth.
    """
    count = len(results[0]["policies"][names[0]]["psnr"])
    n = len(results)
    excused = n - int(np.ceil(0.9 * n))
    print(
        f"\nknowing the truth: the fewest frames within {within_db:g} dB of every candidate, "
        f"per seed (stop at {settings.stop_at}; a z-sorted volume where measured, else as taken)"
    )
    print(f"{'scan':<12}{'frames':>7}{'range':>7}{'share':>7}{'all':>6}{'90 %':>7}  per seed")
    rows = {}
    for name in names:
        curves = []
        for row in results:
            run = row["policies"][name]
            curve = []
            for m in range(1, count + 1):
                planes = run["planes_um"][:m]
                if settings.stop_at == "even" and not evenly_spaced(
                    planes, min(run["planes_um"]), max(run["planes_um"])
                ):
                    curve.append(np.nan)
                    continue
                resorted = (
                    _sorted_at(row, run, m)
                    if sorts_by_z(settings.volume_order, m, model)
                    else np.nan
                )
                curve.append(run["psnr"][m - 1] if np.isnan(resorted) else resorted)
            curves.append(np.asarray(curve))
        rows[name] = _oracle_stops(curves, every, within_db)
    fixed = [
        np.asarray([row["fixed"].get(str(m), np.nan) for m in range(1, count + 1)])
        for row in results
    ]
    rows["fixed"] = _oracle_stops(fixed, every, within_db)
    for name, stops in rows.items():
        needed = np.where(np.isnan(stops), count, stops)
        # the hardest tenth of the seeds excused: counted as stopped after one frame
        bound = (np.sum(np.sort(needed)[: n - excused]) + excused) / n
        print(
            f"{name:<12}{np.mean(needed):>7.2f}{f'{needed.min():.0f}-{needed.max():.0f}':>7}"
            f"{np.mean(needed) / count:>7.0%}{f'{int(np.sum(~np.isnan(stops)))}/{n}':>6}"
            f"{bound:>7.2f}  " + " ".join("-" if np.isnan(s) else f"{s:.0f}" for s in stops)
        )


def _changes_where_even(results, names, settings) -> None:
    """The full grid's relative change at each frame count where the planes are evenly spaced."""
    print(
        f"\nrelative change (to the {settings.relative_to}, full grid where kept) where the "
        "planes are evenly spaced: min / median / max over seeds"
    )
    for name in names:
        runs = [r["policies"][name] for r in results]
        count = len(runs[0]["relative_change"])
        changes = [_full_changes(p, settings) or p["relative_change"] for p in runs]
        cells = []
        for m in range(2, count + 1):
            values = [
                c[m - 1]
                for p, c in zip(runs, changes, strict=True)
                if evenly_spaced(p["planes_um"][:m], min(p["planes_um"]), max(p["planes_um"]))
            ]
            if len(values) == len(runs):
                cells.append(
                    f"M = {m}: {min(values):.3f} / {np.median(values):.3f} / {max(values):.3f}"
                )
        print(f"{name:<12}" + "; ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", choices=sorted(SAMPLES), default="worm")
    parser.add_argument("--seeds", default="200:220", help="FIRST:STOP (STOP excluded)")
    parser.add_argument("--size", type=int, default=128, help="camera width and height, px")
    parser.add_argument("--policies", default="bisection,even,structure,settle")
    parser.add_argument("--model", default=None, help="weights (default: the sample's preset)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument(
        "--read", type=Path, default=None, help="a run's --json output: print its tables again"
    )
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
    parser.add_argument("--stop-at", choices=STOP_AT, default=None, help="default: the preset's")
    parser.add_argument(
        "--min-frames", type=int, default=None, help="the rule's earliest stop (default: preset's)"
    )
    parser.add_argument(
        "--fixed-m",
        default="",
        help="fixed scans of these sizes only, e.g. 3,5,9,17 (default: every M from 2)",
    )
    parser.add_argument(
        "--volume-order", choices=("as-taken", "z"), default=None, help="default: the preset's"
    )
    parser.add_argument(
        "--relative-to", choices=RELATIVE_TO, default=None, help="default: the preset's"
    )
    args = parser.parse_args()
    epsilons = [float(e) for e in args.epsilons.split(",") if e.strip()]
    if args.read is not None:
        saved = json.loads(args.read.read_text())
        args.sample = saved["sample"]
    config, preset, sample = SAMPLES[args.sample]
    settings = ScanSettings.for_model(
        preset,
        relative_epsilon=args.relative_epsilon,
        stop_at=args.stop_at,
        volume_order=args.volume_order,
        relative_to=args.relative_to,
        min_frames=args.min_frames,
    )
    epsilon = settings.relative_epsilon
    assert epsilon is not None
    if args.read is not None:
        results = saved["seeds"]
        names = list(results[0]["policies"])
        _report(
            results,
            names,
            settings,
            epsilon,
            epsilons,
            load_model(args.model or preset),
            title=f"{args.read}: {saved['sample']}, model {saved.get('model', '?')[:8]}, "
            f"seeds {results[0]['seed']}-{results[-1]['seed']}",
        )
        return
    first, stop = (int(v) for v in args.seeds.split(":"))
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    model = load_model(args.model or preset)
    plan = ScanPlan.for_model(model, candidate_step_um=args.candidate_step)
    count = len(plan.candidates_um)
    lo, hi = min(plan.candidates_um), max(plan.candidates_um)
    sizes = [int(m) for m in args.fixed_m.split(",")] if args.fixed_m else range(2, count + 1)
    fixed_planes = {m: np.linspace(lo, hi, m).round(6).tolist() for m in sizes if 2 <= m <= count}
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
            row["fixed"][str(m)] = _score_sorted(model, plan, frames, zs, truth)
        for name in names:
            run = run_policy(model, plan, settings, name, frames, truth)
            stops = [_stop(run, e, settings) for e in [epsilon, *epsilons]]
            _measure_sorted(model, plan, frames, truth, row, run, stops)
            row["policies"][name] = run
        results.append(row)
        print(
            f"seed {seed}: fixed "
            + " ".join(f"{row['fixed'][str(m)]:.2f}" for m in fixed_planes)
            + " | "
            + " | ".join(
                f"{n} " + " ".join(f"{s:.2f}" for s in row["policies"][n]["psnr"]) for n in names
            ),
            flush=True,
        )
        if args.json:  # after every seed: a long run that stops keeps what it measured
            args.json.write_text(
                json.dumps({"sample": args.sample, "model": model.sha256, "seeds": results})
            )
    summary = _report(
        results,
        names,
        settings,
        epsilon,
        epsilons,
        model,
        title=f"{args.sample}, {model.name} {model.sha256[:8]}, seeds {first}-{stop - 1}, "
        f"{args.size} px, {count} candidates {lo:g}-{hi:g} um "
        f"({time.perf_counter() - started:.0f} s)",
    )
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
