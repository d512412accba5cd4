"""Leave one structure family out of training: what seeing a family is worth.

    python benchmarks/leave_one_out.py --init STAGE8.safetensors --runs runs/lofo
                                       [--families nuclei,cells,puncta,tissue]
                                       [--minutes 10] [--volumes 2] [--json OUT.json]

`generalisation.py` scores a preset on every family, but the preset was
trained on most of them (its ``seen`` column).  This trains, from one
starting point that saw no structure family (``--init``; `nuclei` stage 8,
trained on the worm alone, is ``git show
4f6e317:rmz_acq/presets/nuclei.safetensors``), one stage on all of
``--families`` (``all``) and one stage per family with that family left
out, every stage the same recipe, seed and time budget (``--minutes`` of
training after simulating, the learning rate annealed over the clock).
Then it scores, on held-out volumes of each family (the protocol and rows
of `generalisation.py`: vectorial PSF, realistic optics, three frames at 3,
9, 15 µm scaled as a z-stack), the stage that saw it and the stage that
did not.  The last columns, left out minus seen, are what a family unlike
any in training costs.

A stage whose run folder already holds ``model.safetensors`` is not trained
again; one that holds only a checkpoint resumes.  Five stages of 10 minutes
take about 75 minutes on a 2-core CPU with the simulation, the scoring
about 12 more.  The stages are short next to a preset's (stage 9 trained
for 36 minutes from the same start), so the table measures the difference
between seeing a family and not, not what a preset scores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from generalisation import _cases, _mean

from rmz_acq.evaluation.generalisation import CaseScore, score_case
from rmz_acq.model import load_model

# The recipe of every stage: stage 9 to 13's (docs/training.md), shortened.
RECIPE = [
    "--preset", "nuclei", "--steps", "100000", "--crop-px", "128", "--max-inputs", "9",
    "--scan-order-fraction", "0.3", "--lr", "3e-4", "--volumes", "14",
    "--sample-variety", "standard,structures,structures", "--optics", "ideal,realistic",
    "--psf-models", "scalar,vectorial", "--intensity", "energy",
    "--input-plane-fraction", "0.15", "--between-fraction", "0.5", "--intensity-jitter", "5",
    "--stack-statistics-fraction", "0.5", "--seed", "301", "--anneal-by-time",
]  # fmt: skip


def train(run: Path, init: Path, families: list[str], minutes: float) -> Path:
    """Train one stage into ``run`` unless its weights are there; the weights' path."""
    weights = run / "model.safetensors"
    if weights.is_file():
        print(f"{run.name}: {weights} exists, not trained again", flush=True)
        return weights
    command = [
        sys.executable, "-m", "rmz_acq", "train", "-o", str(run), "--init", str(init),
        *RECIPE, "--families", ",".join(families), "--time-limit-min", str(minutes),
    ]  # fmt: skip
    print(f"{run.name}: training on {', '.join(families)} ({minutes:g} min)", flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    if not weights.is_file():
        raise SystemExit(f"{run}: training ended without {weights.name}; run again to resume")
    return weights


def summary(scores: list[CaseScore]) -> dict[str, float]:
    """Means over the volumes of one row, as `generalisation.py` prints them."""
    per_volume = [s.per_volume for s in scores]
    truth = [s.truth_scale for s in scores]
    rmz = _mean(per_volume, "recurrent_mz", "psnr")
    return {
        "psnr": rmz,
        "over_linear": rmz - _mean(per_volume, "linear_interpolation", "psnr"),
        "over_single": rmz - _mean(per_volume, "single_input", "psnr"),
        "truth_scale_psnr": _mean(truth, "recurrent_mz", "psnr"),
        "order_spread": float(np.max([s.order_spread_db for s in scores])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, type=Path, help="weights that saw no family")
    parser.add_argument("--runs", required=True, type=Path, help="folder of the stages' runs")
    parser.add_argument("--families", default="nuclei,cells,puncta,tissue")
    parser.add_argument("--minutes", type=float, default=10.0, help="training per stage")
    parser.add_argument("--volumes", type=int, default=2, help="held-out volumes per family")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    if len(families) < 2:
        raise SystemExit(f"--families {args.families!r}: leaving one out needs two or more")
    if not args.init.is_file():
        raise SystemExit(
            f"--init {args.init}: no such weights file (stage 8: git show "
            "4f6e317:rmz_acq/presets/nuclei.safetensors > stage8.safetensors)"
        )
    started = time.perf_counter()
    weights = {"all": train(args.runs / "all", args.init, families, args.minutes)}
    for family in families:
        rest = [f for f in families if f != family]
        weights[family] = train(args.runs / family, args.init, rest, args.minutes)
    models = {name: load_model(path) for name, path in weights.items()}
    print(
        f"stages of {args.minutes:g} min from {args.init.name}; held-out volumes, per-volume "
        "PSNR in dB (truth scale in the last column)"
    )
    print(
        f"{'family':<10} | {'with it in training':^29} | {'left out':^29} | {'left out - with':^15}"
    )
    print(
        f"{'':<10} | {'RMZ':>6} {'-lin':>6} {'-single':>7} {'orders':>6} "
        f"| {'RMZ':>6} {'-lin':>6} {'-single':>7} {'orders':>6} | {'PSNR':>6} {'truth':>6}"
    )
    results: dict[str, Any] = {
        "init": str(args.init),
        "minutes": args.minutes,
        "weights": {name: m.sha256 for name, m in models.items()},
        "families": {},
    }
    for family in families:
        cases = _cases(family, "nuclei", args.volumes)
        seen = summary([score_case(models["all"], c, normalization="all") for c in cases])
        left = summary([score_case(models[family], c, normalization="all") for c in cases])
        results["families"][family] = {"with": seen, "left_out": left}
        print(
            f"{family:<10} | "
            + " | ".join(
                f"{s['psnr']:>6.2f} {s['over_linear']:>+6.2f} {s['over_single']:>+7.2f} "
                f"{s['order_spread']:>6.2f}"
                for s in (seen, left)
            )
            + f" | {left['psnr'] - seen['psnr']:>+6.2f}"
            + f" {left['truth_scale_psnr'] - seen['truth_scale_psnr']:>+6.2f}",
            flush=True,
        )
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(f"({results['seconds']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
