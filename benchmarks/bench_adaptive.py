"""Adaptive scans on a simulated sample: frames used, quality reached, time spent.

    python benchmarks/bench_adaptive.py [--sample worm|beads] [--samples 3] [--size 128]
                                        [--model PRESET_OR_FILE] [--fixed-m 2,3,4,6]
                                        [--sorted] [--realtime]

For each sample (SampleSeed 100, 101, ...) the script acquires the mechanical
ground-truth stack (every output plane), then runs one scan over all
candidate planes (epsilon 0) recording V_M after every frame.  From that
single run it reads off what every relative epsilon would have done: the
frame count, the PSNR of V_M against the ground truth and against the
all-candidates volume, and for beads the share of the ground truth's
isolated beads fitted and their mean FWHM.  It also prints acquisition and
reconstruction time of the scan, and the most that overlapping the two could
save.  This is how the default epsilons were chosen.

worm:  simulated_worm.cfg, `nuclei` preset, output 0-18 um every 0.2 um,
       candidates every 1.5 um from 3 to 15 um.
beads: simulated_beads.cfg, `beads` preset, output 0-10 um every 0.1 um,
       candidates every 1 um from 1 to 9 um.

With ``--fixed-m``, each sample is also reconstructed from M evenly spaced
frames over the candidate range (acquired like any other scan) for every M
given, and the preset's default adaptive rule is set against them: frames
used and PSNR reached (the paper's fixed-M scans).  With ``--sorted``, every
V_M is also rebuilt from the same first M frames sorted by z, which shows
what the scan's coarse-to-fine order costs the model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from rmz_acq.acquisition import AdaptiveScan, ScanPlan, ScanSettings, VolumeUpdate
from rmz_acq.acquisition.controller import default_relative_epsilon
from rmz_acq.evaluation.beads import find_isolated_beads, measure_bead_widths
from rmz_acq.evaluation.metrics import psnr
from rmz_acq.hardware import load_core
from rmz_acq.io import read_zstack
from rmz_acq.model.normalization import IntensityNormalization
from rmz_acq.model.weights import load_model
from rmz_acq.session import ReconstructionSession
from rmz_acq.zstack import acquire_zstack

CONFIGS = Path(__file__).resolve().parents[1] / "device_configs"
# sample: (config, preset, output planes, candidates)
SAMPLES = {
    "worm": (
        CONFIGS / "simulated_worm.cfg",
        "nuclei",
        np.round(np.arange(0, 18.0001, 0.2), 6),
        [3.0 + 1.5 * i for i in range(9)],
    ),
    "beads": (
        CONFIGS / "simulated_beads.cfg",
        "beads",
        np.round(np.arange(0, 10.0001, 0.1), 6),
        [1.0 + 1.0 * i for i in range(9)],
    ),
}
EPSILONS = (0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005)


def _score(volume: np.ndarray, truth: np.ndarray) -> float:
    """Mean per-plane PSNR, both volumes on the reference's one intensity scale.

    Each volume is in camera units already; normalising each by its own
    projection instead would let the background estimate of every V_M move
    the score by several dB from one frame to the next.
    """
    norm = IntensityNormalization.from_frame(truth.max(axis=0))
    a, b = norm.apply(volume), norm.apply(truth)
    return float(np.mean([psnr(x, y) for x, y in zip(a, b, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", choices=sorted(SAMPLES), default="worm")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--model", default=None, help="preset or weights (default: the sample's)")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="camera sleeps its exposure (10 ms) and the stage settles 50 ms per move",
    )
    parser.add_argument(
        "--sorted",
        action="store_true",
        help="also rebuild each V_M from the same first M frames sorted by z (order's cost)",
    )
    parser.add_argument(
        "--fixed-m", default="", help="comma-separated M of fixed, evenly spaced scans to compare"
    )
    args = parser.parse_args()
    fixed_m = [int(m) for m in args.fixed_m.split(",") if m.strip()]
    fixed_rows: list[tuple[int, float]] = []
    order_rows: list[tuple[int, float, float]] = []  # (M, scan order, sorted by z)
    config, preset, planes, candidates = SAMPLES[args.sample]
    model = load_model(args.model or preset)
    default_epsilon = default_relative_epsilon(model)
    beads = args.sample == "beads"
    pixel_um = float(model.conditions.get("pixel_size_um", 0.1))
    rows = []
    bead_rows: list[tuple[float, np.ndarray]] = []  # (epsilon, FWHM per bead)
    timing = []
    for sample in range(args.samples):
        core = load_core(config)
        core.setProperty("Microscope", "SampleSeed", str(100 + sample))
        core.setProperty("Camera", "Width", str(args.size))
        core.setProperty("Camera", "Height", str(args.size))
        if args.realtime:
            core.setProperty("Camera", "RealTimeExposure", "1")
            core.setProperty("Z", "SettleTimeMs", "50")
        with tempfile.TemporaryDirectory() as tmp:
            acquire_zstack(core, planes.tolist(), Path(tmp) / "gt.ome.tif")
            truth = read_zstack(Path(tmp) / "gt.ome.tif").data.astype(np.float32)
            for m in fixed_m:  # a fixed scan: its own frames, like any other acquisition
                path = Path(tmp) / f"fixed_{m}.ome.tif"
                even = np.linspace(candidates[0], candidates[-1], m).round(3).tolist()
                acquire_zstack(core, even, path)
                frames = read_zstack(path)
                assert frames.z_um is not None
                fixed = ReconstructionSession(model, planes).run(
                    list(frames.data.astype(np.float32)), list(frames.z_um)
                )
                fixed_rows.append((m, _score(fixed.volume, truth)))
            plan = ScanPlan.build(planes, candidates_um=candidates)
            scan = AdaptiveScan(core, model, plan, ScanSettings(epsilon=0.0), Path(tmp) / "run")
            volumes: list[np.ndarray] = []
            changes: list[float] = []

            def keep(update: VolumeUpdate, vols: list = volumes, ch: list = changes) -> None:
                vols.append(update.volume.copy())
                ch.append(update.record.relative_change or np.inf)

            scan.events.volumeUpdated.connect(keep)
            report = scan.run()
            if args.sorted:  # the same frames, in z order instead of the scan's
                taken = read_zstack(Path(tmp) / "run" / "frames.ome.tif")
                assert taken.z_um is not None
                for m in range(2, len(taken.z_um) + 1):
                    by_z = np.argsort(taken.z_um[:m])
                    rebuilt = ReconstructionSession(model, planes).run(
                        list(taken.data[:m][by_z].astype(np.float32)),
                        [float(taken.z_um[j]) for j in by_z],
                    )
                    order_rows.append(
                        (m, _score(volumes[m - 1], truth), _score(rebuilt.volume, truth))
                    )
        timing.append(report.durations_s)
        final = volumes[-1]
        found = find_isolated_beads(truth, planes, pixel_um) if beads else None
        for eps in EPSILONS:
            m = next((i + 1 for i in range(1, len(changes)) if changes[i] <= eps), len(changes))
            rows.append(
                (sample, eps, m, _score(volumes[m - 1], truth), _score(volumes[m - 1], final))
            )
            if found is not None:
                widths = measure_bead_widths(volumes[m - 1], planes, found, pixel_um)
                bead_rows.append((eps, widths.fwhm_um))
        print(
            f"sample {sample}: relative change per frame "
            + ", ".join(f"{c:.3f}" for c in changes[1:])
            + "; PSNR vs truth per frame "
            + ", ".join(f"{_score(v, truth):.2f}" for v in volumes)
        )
    print(
        f"\n{len(candidates)} candidates; mean over {args.samples} samples ({args.size} px frames)"
    )
    bead_header = f"{'beads fitted':>14}{'FWHM um':>9}" if beads else ""
    print(
        f"{'rel. epsilon':>12}{'frames':>8}{'PSNR vs truth':>15}{'PSNR vs all-candidates':>24}"
        + bead_header
    )
    for eps in EPSILONS:
        sel = [r for r in rows if r[1] == eps]
        same = [r[4] for r in sel if np.isfinite(r[4])]
        vs_all = f"{np.mean(same):.2f}" if same else "identical"
        if same and len(same) < len(sel):
            vs_all += f" ({len(sel) - len(same)} identical)"
        bead_cells = ""
        if beads:
            fwhm = np.concatenate([w for e, w in bead_rows if e == eps])
            fitted = fwhm[np.isfinite(fwhm)]
            mean = f"{fitted.mean():.3f}" if fitted.size else "-"
            bead_cells = f"{f'{fitted.size}/{fwhm.size}':>14}{mean:>9}"
        print(
            f"{eps:>12g}{np.mean([r[2] for r in sel]):>8.1f}{np.mean([r[3] for r in sel]):>15.2f}"
            f"{vs_all:>24}{bead_cells}"
        )
    if fixed_m:
        chosen = [r for r in rows if np.isclose(r[1], default_epsilon)]
        print(f"\nadaptive (relative epsilon {default_epsilon}) against fixed scans")
        print(f"{'scan':<24}{'frames':>8}{'PSNR vs truth':>15}{'+- std':>8}")
        adaptive = [r[3] for r in chosen]
        print(
            f"{'adaptive':<24}{np.mean([r[2] for r in chosen]):>8.2f}"
            f"{np.mean(adaptive):>15.2f}{np.std(adaptive):>8.2f}"
        )
        for m in fixed_m:
            scores = [r[1] for r in fixed_rows if r[0] == m]
            print(
                f"{f'fixed, {m} evenly spaced':<24}{m:>8}{np.mean(scores):>15.2f}"
                f"{np.std(scores):>8.2f}"
            )
    if order_rows:
        print("\nthe first M frames of the scan, in its order against sorted by z (PSNR vs truth)")
        print(f"{'M':>3}{'scan order':>12}{'sorted':>9}{'difference':>12}")
        for m in sorted({r[0] for r in order_rows}):
            scan_psnr = np.mean([r[1] for r in order_rows if r[0] == m])
            sorted_psnr = np.mean([r[2] for r in order_rows if r[0] == m])
            print(f"{m:>3}{scan_psnr:>12.2f}{sorted_psnr:>9.2f}{sorted_psnr - scan_psnr:>+12.2f}")
    acq = np.mean([t["acquisition"] for t in timing])
    rec = np.mean([t["reconstruction"] for t in timing])
    tot = np.mean([t["total"] for t in timing])
    print(
        f"\nscan of {len(candidates)} frames: total {tot:.1f} s = acquisition {acq:.1f} s + "
        f"reconstruction {rec:.1f} s; overlapping them could save at most "
        f"{100 * min(acq, rec) / tot:.1f} % of the wall time"
    )


if __name__ == "__main__":
    main()
