"""Do default scans stop on their rule?  Candidate spacing and epsilon, chosen together.

    python benchmarks/bench_stopping.py --sample worm|beads|FAMILY [--seeds 100:120] [--size 128]
        [--fractions 0.5,0.25] [--epsilons 0.1,0.05,0.03] [--decision-planes 11,21]
        [--decision-margin 0.25]

FAMILY is a structure family (cells, filaments, membranes, nuclei, puncta,
tissue) under the worm config's optics, scanned with `nuclei`.  For each
sample seed: the mechanical stack of every output plane (the
truth), then one frame at every candidate plane of `ScanPlan.for_model`
(candidate spacing = FRACTION x the preset's input spacing, bisection order),
each taken through the simulated microscope's MDA.  The frames are pushed in
scan order through a full session (all output planes) and through a decision
session per count in ``--decision-planes`` (that many evenly spread
planes); the relative change after every frame is kept from each.  Per
(fraction, epsilon) it prints:

- converged: seeds where the rule fired before the last candidate;
- frames: mean frames taken (the stop frame, or all);
- loss: PSNR of V_stop against the truth, minus that of the all-candidates
  volume (mean and worst, dB; 0 when all were taken);
- same stop: seeds where the decision planes stop at the same frame as the
  full grid (one column per count), each frame whose estimate is within the
  decision margin of epsilon judged on the full grid's change, as a scan
  does (`ScanSettings.decision_margin`);
- waits: such frames per scan (each waits for the completion to reach it).
- PSNR, all: mean PSNR (dB) of V_stop and of the all-candidates volume.

Only the held-out seeds (200 and up by default in the README's table) are
used for the final claim; seeds 100-119 served to choose.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from rmz_acq.acquisition import ScanPlan
from rmz_acq.acquisition.judge import within_margin
from rmz_acq.acquisition.plan import DECISION_MARGIN, decision_plane_indices
from rmz_acq.evaluation.metrics import psnr
from rmz_acq.hardware import load_core
from rmz_acq.io import read_zstack
from rmz_acq.model.normalization import IntensityNormalization
from rmz_acq.model.weights import load_model
from rmz_acq.session import ReconstructionSession
from rmz_acq.zstack import acquire_zstack
from simulators.samples import STRUCTURE_FAMILIES

CONFIGS = Path(__file__).resolve().parents[1] / "device_configs"
SAMPLES = {
    "worm": (CONFIGS / "simulated_worm.cfg", "nuclei", {}),
    "beads": (CONFIGS / "simulated_beads.cfg", "beads", {}),
}
# The wider structure families, under the worm config's optics (`nuclei`)
for _family in STRUCTURE_FAMILIES:
    SAMPLES[_family] = (
        CONFIGS / "simulated_worm.cfg",
        "nuclei",
        {"SampleKind": "structures", "SampleFamilies": _family},
    )


def _score(volume: np.ndarray, truth: np.ndarray) -> float:
    """Mean per-plane PSNR on the truth's intensity scale (as bench_adaptive)."""
    norm = IntensityNormalization.from_frame(truth.max(axis=0))
    a, b = norm.apply(volume), norm.apply(truth)
    return float(np.mean([psnr(x, y) for x, y in zip(a, b, strict=True)]))


def _stop(changes: list[float], epsilon: float, min_frames: int = 2) -> int | None:
    """The frame count at which the rule fires (None: it never does)."""
    for m in range(max(min_frames, 2), len(changes) + 1):
        if changes[m - 1] <= epsilon:
            return m
    return None


def _decided_stop(
    estimates: list[float], full: list[float], epsilon: float, margin: float, min_frames: int = 2
) -> tuple[int | None, int]:
    """The frame at which a scan on the decision planes stops, and how many
    frames it judged on the full grid's change (estimate near epsilon)."""
    waits = 0
    for m in range(max(min_frames, 2), len(estimates) + 1):
        change = estimates[m - 1]
        if within_margin(change, epsilon, margin):
            change, waits = full[m - 1], waits + 1
        if change <= epsilon:
            return m, waits
    return None, waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", choices=sorted(SAMPLES), default="worm")
    parser.add_argument("--seeds", default="100:120", help="FIRST:STOP (STOP excluded)")
    parser.add_argument("--size", type=int, default=128, help="camera width and height, px")
    parser.add_argument("--fractions", default="0.5,0.25", help="candidate step / input spacing")
    parser.add_argument("--epsilons", default="0.1,0.07,0.05,0.04,0.03,0.02")
    parser.add_argument(
        "--decision-planes", default="11", help="counts of decision planes, comma-separated"
    )
    parser.add_argument(
        "--decision-margin",
        type=float,
        default=DECISION_MARGIN,
        help="estimates within this fraction of epsilon are judged on the full grid; 0: never",
    )
    args = parser.parse_args()
    first, stop = (int(v) for v in args.seeds.split(":"))
    fractions = [float(f) for f in args.fractions.split(",")]
    epsilons = [float(e) for e in args.epsilons.split(",")]
    counts = [int(c) for c in args.decision_planes.split(",")]
    config, preset, sample = SAMPLES[args.sample]
    model = load_model(preset)
    spacing = float(model.conditions["input_spacing_um"])
    # per (fraction): per seed, (full changes, decision changes per count, PSNR per frame)
    runs: dict[float, list[tuple[list[float], list[list[float]], list[float]]]] = {
        f: [] for f in fractions
    }
    started = time.perf_counter()
    for seed in range(first, stop):
        core = load_core(config)
        for name, value in sample.items():
            core.setProperty("Microscope", name, value)
        core.setProperty("Microscope", "SampleSeed", str(seed))
        core.setProperty("Camera", "Width", str(args.size))
        core.setProperty("Camera", "Height", str(args.size))
        with tempfile.TemporaryDirectory() as tmp:
            grid = ScanPlan.for_model(model).output_planes_um
            acquire_zstack(core, list(grid), Path(tmp) / "truth.ome.tif")
            truth = read_zstack(Path(tmp) / "truth.ome.tif").data.astype(np.float32)
            for fraction in fractions:
                plan = ScanPlan.for_model(model, candidate_step_um=fraction * spacing)
                path = Path(tmp) / f"frames_{fraction}.ome.tif"
                acquire_zstack(core, list(plan.candidates_um), path)
                frames = read_zstack(path)
                assert frames.z_um is not None
                full = ReconstructionSession(model, plan.output_planes_um)
                planes = np.asarray(plan.output_planes_um)
                decisions = [
                    ReconstructionSession(model, planes[decision_plane_indices(len(planes), count)])
                    for count in counts
                ]
                changes, scores = [], []
                decided: list[list[float]] = [[] for _ in counts]
                for frame, z in zip(frames.data.astype(np.float32), frames.z_um, strict=True):
                    result = full.push(frame, float(z))
                    changes.append(result.relative_change or np.inf)
                    for session, kept in zip(decisions, decided, strict=True):
                        kept.append(session.push(frame, float(z)).relative_change or np.inf)
                    scores.append(_score(result.volume, truth))
                runs[fraction].append((changes, decided, scores))
                print(
                    f"seed {seed} fraction {fraction:g} ({len(plan.candidates_um)} candidates): "
                    "full "
                    + ", ".join(f"{c:.3f}" for c in changes[1:])
                    + " | decision "
                    + ", ".join(f"{c:.3f}" for c in decided[0][1:]),
                    flush=True,
                )
    n = stop - first
    print(
        f"\n{args.sample}, seeds {first}-{stop - 1}, {args.size} px, "
        f"decision planes {args.decision_planes}, margin {args.decision_margin:g} "
        f"({time.perf_counter() - started:.0f} s)"
    )
    print(
        f"{'step um':>8}{'cands':>6}{'epsilon':>8}{'converged':>10}{'frames':>7}"
        f"{'loss dB':>8}{'worst':>7}{'PSNR':>8}{'all':>8}"
        + "".join(f"{f'same@{c}':>9}{'waits':>6}" for c in counts)
    )
    for fraction in fractions:
        seeds = runs[fraction]
        count = len(seeds[0][0])
        for epsilon in epsilons:
            fired = [_stop(c, epsilon) for c, _, _ in seeds]
            used = [m or count for m in fired]
            converged = sum(m < count for m in used)  # stopped before running out
            loss = [s[m - 1] - s[-1] for m, (_, _, s) in zip(used, seeds, strict=True)]
            decided = [
                [_decided_stop(d[i], c, epsilon, args.decision_margin) for c, d, _ in seeds]
                for i in range(len(counts))
            ]
            same = [
                (
                    sum(a == b for a, (b, _) in zip(fired, per_seed, strict=True)),
                    np.mean([w for _, w in per_seed]),
                )
                for per_seed in decided
            ]
            at_stop = np.mean([s[m - 1] for m, (_, _, s) in zip(used, seeds, strict=True)])
            print(
                f"{fraction * spacing:>8g}{count:>6}{epsilon:>8g}"
                f"{f'{converged}/{n}':>10}{np.mean(used):>7.1f}"
                f"{np.mean(loss):>+8.2f}{min(loss):>+7.2f}{at_stop:>8.2f}"
                f"{np.mean([s[-1] for _, _, s in seeds]):>8.2f}"
                + "".join(f"{f'{k}/{n}':>9}{w:>6.2f}" for k, w in same)
            )


if __name__ == "__main__":
    main()
