"""Does taking a stack's own noise out of a score give the score against the specimen?

    python benchmarks/noise_ceiling.py [--cases filaments,membranes,nuclei,worm]

`rmz-acq validate` scores a replayed sparse scan against a full z-stack of
the specimen, which is noisy; it also reports the stack's noise ceiling and
the scores with that noise taken out (`rmz_acq.evaluation.noise`).  Here the
specimen is simulated, so its noise-free stack is known: for each case, one
specimen (realistic optics and camera noise, 256 x 256 px, the `nuclei`
preset's 0-18 um at its 0.2 um output step, seed 9100, which no preset
trained on) is validated with the `nuclei` preset, and the estimates are
set beside the truth:

- the noise ceiling estimated from the stack, and the mean PSNR of the
  noise-free stack against the noisy one (the true ceiling);
- per method, the score with the noise taken out, and the true score of the
  same volume against the noise-free stack (same peak: the noisy plane's
  range).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_calibrate import simulated_specimen  # benchmarks/ is on the path

from rmz_acq.evaluation.baselines import linear_interpolation
from rmz_acq.model.weights import load_model
from rmz_acq.validation import validate_stack


def _true_psnr(estimate: np.ndarray, clean: np.ndarray, noisy: np.ndarray) -> list[float]:
    return [
        float(10 * np.log10(np.ptp(n) ** 2 / np.mean((e.astype(np.float64) - c) ** 2)))
        for e, c, n in zip(estimate, clean, noisy, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="filaments,membranes,nuclei,worm")
    args = parser.parse_args()
    preset = load_model("nuclei")
    print(
        f"{'case':<11}{'ceiling est.':>13}{'true':>7}   "
        f"{'RMZ: vs stack':>13}{'noise out':>10}{'true':>7}   "
        f"{'linear: vs stack':>16}{'noise out':>10}{'true':>7}"
    )
    started = time.perf_counter()
    for case in args.cases.split(","):
        stack, clean = simulated_specimen(case)
        result = validate_stack(stack, preset, source=case)
        keep = np.asarray([not i for i in result.evaluation.input_planes])
        noisy = result.truth
        ceiling_true = np.mean(
            [
                10 * np.log10(np.ptp(n) ** 2 / np.mean((c - n.astype(np.float64)) ** 2))
                for c, n in zip(clean[keep], noisy[keep], strict=True)
            ]
        )
        taken = np.asarray(result.planes_taken_um[: result.frames_used])
        index = [int(np.argmin(np.abs(result.planes_um - z))) for z in taken]
        linear = linear_interpolation(noisy[index], taken, result.planes_um)
        scores, clean_scores = result.psnr_db(), result.noise_free_psnr_db()
        ceiling = result.noise_ceiling_db()
        assert ceiling is not None
        rmz_true = np.mean(_true_psnr(result.volume[keep], clean[keep], noisy[keep]))
        lin_true = np.mean(_true_psnr(linear[keep], clean[keep], noisy[keep]))
        print(
            f"{case:<11}{ceiling:>13.2f}{ceiling_true:>7.2f}   "
            f"{scores['recurrent_mz']:>13.2f}{clean_scores['recurrent_mz']:>10.2f}"
            f"{rmz_true:>7.2f}   {scores['linear_interpolation']:>16.2f}"
            f"{clean_scores['linear_interpolation']:>10.2f}{lin_true:>7.2f}",
            flush=True,
        )
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
