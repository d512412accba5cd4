"""How a preset holds on structures and physics it was not trained on.

    python benchmarks/generalisation.py --preset nuclei [--weights FILE] [--volumes 8]
                                        [--rows own,nuclei,...,real-neuron] [--no-orders]
                                        [--normalization all|first] [--json OUT.json]
                                        [--cache DIR]

One row per kind of data, every row held-out data only:
- ``own``: the preset's own simulated sample (the worm band of nuclei, or
  beads; held-out seeds, ideal optics, scalar PSF);
- one row per structure family of ``simulators.structures``, imaged with the
  vectorial PSF and the realistic optics (aberration, focal shift, haze,
  wider flux); the column ``seen`` says whether the model's training could
  draw that family (a model trained before the families existed saw none);
- ``real-neuron`` / ``real-bead``: the real wide-field stacks of the
  ``flowdec`` wheel (``pip install --no-deps flowdec==1.1.0``); inputs are
  planes of the stack, the truth is the stack.  Their z step is not stored:
  the stack is spread over the preset's depth (18 um nuclei, 10 um beads);
- ``thin-FAMILY`` (not in the default rows; ask with ``--rows``): that family
  held in a slab of 15-60 % of the depth, empty above and below, so a frame
  may see only the haze of a specimen out of focus (the real neuron's case:
  in focus over about a third of its stack).

Inputs at the preset's protocol (nuclei 3, 9, 15 um; beads 3, 6, 9 um),
scaled by the intensity statistics of all three frames together, as
``rmz-acq reconstruct`` scales a z-stack (``--normalization first``: by the
first frame pushed, as a stream is and as the tables before were).
Columns: mean over the non-input planes of PSNR / NRMSE / SSIM, with
per-volume normalisation (the paper's) and on the truth's scale, for
Recurrent-MZ and linear interpolation, single-input propagation and the
nearest plane; ``±``, the standard error of the per-volume margin over
interpolation across the row's volumes (``--volumes``, 8 by default, about
37 minutes on a 2-core CPU; the held-out seeds are the same for every model
and run in the same order, so ``--volumes 2`` scores the first two of the
eight: a quick look, on the two volumes candidates were chosen on until
2026-12-04, which flatter most rows; ``volume_scores.py`` prints each
volume and the row's median); ``orders``, the spread of Recurrent-MZ's
PSNR (truth scale, every third non-input plane) over all six orders of
the three input frames (``order_effects.py``: which order costs what);
``z-ord``, the frames pushed lowest z first against the mean over the six; ``input
plane``, the worst PSNR gain of the volume at an input plane over the input
frame itself, against the noise-free truth (simulated rows only).

A preset has seen most of these families in training (``seen``);
`leave_one_out.py` trains stages with each family left out and scores
what seeing it is worth.
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np

from rmz_acq.evaluation.generalisation import (
    Case,
    CaseScore,
    families_seen_in_training,
    flowdec_stack,
    score_case,
    simulated_cases,
    stack_case,
)
from rmz_acq.model.normalization import NORMALIZATIONS
from rmz_acq.model.weights import load_model
from rmz_acq.training.conditions import PRESET_CONDITIONS
from simulators.samples import STRUCTURE_FAMILIES

PROTOCOL = {
    "nuclei": ([3.0, 9.0, 15.0], np.round(np.arange(0, 18.0001, 0.2), 4)),
    "widefield": ([3.0, 9.0, 15.0], np.round(np.arange(0, 18.0001, 0.2), 4)),
    "beads": ([3.0, 6.0, 9.0], np.round(np.arange(0, 10.0001, 0.1), 4)),
}
METHODS = ("recurrent_mz", "linear_interpolation", "single_input", "nearest_plane")
SHORT = {"recurrent_mz": "RMZ", "linear_interpolation": "lin", "single_input": "single",
         "nearest_plane": "near"}  # fmt: skip


def _cases(row: str, preset: str, volumes: int, cache: Path | None = None) -> list[Case]:
    conditions = PRESET_CONDITIONS[preset]
    inputs, planes = PROTOCOL[preset]
    if row == "own":
        return simulated_cases(
            conditions, inputs, planes, variety="standard", n_volumes=volumes, cache=cache
        )
    if row.startswith("real-"):
        stack = flowdec_stack(row.removeprefix("real-"))
        return [stack_case(row, stack, conditions.depth_um, inputs)]
    family = row.removeprefix("thin-")
    if family not in STRUCTURE_FAMILIES:
        raise SystemExit(
            f"unknown row {row!r}: give own, real-neuron, real-bead, a structure family "
            f"({', '.join(STRUCTURE_FAMILIES)}) or thin-FAMILY"
        )
    return simulated_cases(
        conditions,
        inputs,
        planes,
        variety="structures",
        family=family,  # type: ignore[arg-type]
        thin=row.startswith("thin-"),
        psf_model="vectorial",
        optics="realistic",
        n_volumes=volumes,
        cache=cache,
    )


def _mean(values: list[dict[str, Any]], *keys: str) -> float:
    out = []
    for v in values:
        for k in keys:
            v = v[k]
        out.append(v)
    return float(np.mean(out))


def _margin_se(scores: list[CaseScore]) -> float:
    """Standard error of the per-volume margin over interpolation, over a row's volumes.

    The spread of the row's mean if other held-out seeds had been drawn (nan
    for fewer than two volumes): a difference between two models or a target
    smaller than it is not measured by this row.
    """
    margins = [
        s.per_volume["recurrent_mz"]["psnr"] - s.per_volume["linear_interpolation"]["psnr"]
        for s in scores
    ]
    if len(margins) < 2:
        return float("nan")
    return float(np.std(margins, ddof=1) / np.sqrt(len(margins)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PROTOCOL), default="nuclei")
    parser.add_argument("--weights", default=None, help="weights file (default: the preset)")
    parser.add_argument(
        "--volumes",
        type=int,
        default=8,
        help="simulated volumes per row (8; 2 for a quick look on the first two)",
    )
    parser.add_argument(
        "--rows",
        default=None,
        help="rows to score, comma-separated (default: nuclei and widefield, own, every "
        "family and real-neuron; beads, own and real-bead)",
    )
    parser.add_argument("--no-orders", action="store_true", help="skip the frame-order check")
    parser.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        default="all",
        help="intensity statistics of all the frames together (default: as `rmz-acq "
        "reconstruct` and a scan's z-sorted volume have them), or of the frame pushed first "
        "(as a stream, and every table before stage 12's second one)",
    )
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="folder to keep the simulated volumes in (about 25 MB each) and read them back "
        "from: a second model scored on the same rows skips the simulating, a third of the "
        "run (1493 s against 2226 for eight volumes a row); a changed simulator makes new ones",
    )
    args = parser.parse_args()
    model = load_model(args.weights or args.preset)
    seen = families_seen_in_training(model)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "model": {"name": model.name, "sha256": model.sha256, "path": str(model.path)},
        "preset": args.preset,
        "normalization": args.normalization,
        "rows": {},
    }
    names = " ".join(f"{SHORT[m]:>6}" for m in METHODS)
    print(
        f"{model.name} ({model.sha256[:8]}), {args.preset} protocol, intensity statistics of "
        f"{'the first frame' if args.normalization == 'first' else 'all frames'}; PSNR in dB"
    )
    print(
        f"{'':<13}{'':>5} | {'per-volume normalisation':^54} | {'truth scale':^27} |"
        f" {'Recurrent-MZ':^24}"
    )
    print(
        f"{'row':<13}{'seen':>5} | {names} {'-lin':>6} {'±':>5} {'-single':>7} {'NRMSE%':>6}"
        f" {'SSIM':>5}"
        f" | {names} | {'orders':>7} {'z-ord':>6} {'input plane':>12}"
    )
    # Beads are point sources: the structure families are no test of a bead
    # model (ask for them with --rows to see that for yourself).
    default = ["own", *STRUCTURE_FAMILIES, "real-neuron"] if args.preset != "beads" else [
        "own", "real-bead"]  # fmt: skip
    rows = args.rows or ",".join(default)
    for row in [r.strip() for r in rows.split(",") if r.strip()]:
        cases = _cases(row, args.preset, args.volumes, args.cache)
        scores = [
            score_case(model, case, orders=not args.no_orders, normalization=args.normalization)
            for case in cases
        ]
        per_volume = [s.per_volume for s in scores]
        truth = [s.truth_scale for s in scores]
        entry = {
            "seen_in_training": row in seen,
            "per_volume": {
                m: {k: _mean(per_volume, m, k) for k in ("psnr", "nrmse", "ssim")} for m in METHODS
            },
            "truth_scale": {
                m: {k: _mean(truth, m, k) for k in ("psnr", "nrmse", "ssim")} for m in METHODS
            },
            "over_linear_se_db": _margin_se(scores) if len(scores) > 1 else None,
            "order_spread_db": float(np.max([s.order_spread_db for s in scores])),
            "z_order_gain_db": float(np.mean([s.z_order_gain_db for s in scores])),
            "input_plane_gain_db": [g for s in scores for g in (s.input_plane_gain_db or [])],
            # each volume's own scores, in seed order (`compare_scores.py` pairs them)
            "volumes": [{"per_volume": s.per_volume, "truth_scale": s.truth_scale} for s in scores],
            # per volume, each order's frame z (in push order) and its PSNR
            "orders": [
                [
                    {"z_um": [case.frames_z_um[i] for i in order], "psnr_db": value}
                    for order, value in zip(
                        permutations(range(len(case.frames))), score.order_psnr_db, strict=False
                    )
                ]
                for case, score in zip(cases, scores, strict=True)
            ],
        }
        results["rows"][row] = entry
        pv = entry["per_volume"]
        tv = entry["truth_scale"]
        gains = entry["input_plane_gain_db"]
        rmz = pv["recurrent_mz"]
        spread = entry["order_spread_db"]
        z_gain = entry["z_order_gain_db"]
        print(
            f"{row:<13}{'yes' if entry['seen_in_training'] else 'no':>5} | "
            + " ".join(f"{pv[m]['psnr']:>6.2f}" for m in METHODS)
            + f" {rmz['psnr'] - pv['linear_interpolation']['psnr']:>+6.2f}"
            + (f" {se:>5.2f}" if (se := entry["over_linear_se_db"]) is not None else f" {'-':>5}")
            + f" {rmz['psnr'] - pv['single_input']['psnr']:>+7.2f}"
            + f" {rmz['nrmse']:>6.2f} {rmz['ssim']:>5.3f} | "
            + " ".join(f"{tv[m]['psnr']:>6.2f}" for m in METHODS)
            + (f" | {spread:>7.2f}" if np.isfinite(spread) else f" | {'-':>7}")
            + (f" {z_gain:>+6.2f}" if np.isfinite(z_gain) else f" {'-':>6}")
            + (f" {min(gains):>+12.2f}" if gains else f" {'-':>12}"),
            flush=True,
        )
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(f"({results['seconds']:.0f} s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
