"""Score the shipped presets on held-out simulated volumes (the model cards' numbers).

    python benchmarks/evaluate_presets.py --preset nuclei [--weights FILE] [--volumes 4]
                                          [--inputs 3,9,15] [--psf vectorial]
                                          [--samples wide] [--normalization all]

nuclei: inputs at 3, 9, 15 um, output every 0.2 um over 0-18 um.
beads:  inputs at 3, 6, 9 um, output every 0.1 um over 0-10 um (plus bead FWHM).
--psf vectorial renders the held-out volumes with the Richards-Wolf vectorial
PSF instead of the scalar one (a spot about 14 % wider at NA 1.4).
--samples wide draws the held-out samples from the wide variety (nuclei
1.5-7 um, packed denser or filling the field, chromatin texture; see
rmz_acq.training.data.SampleVariety) instead of the preset's standard one.
Prints the mean over non-input planes for Recurrent-MZ and the baselines, and
writes the whole summary as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import get_args

import numpy as np

from rmz_acq.evaluation.report import distance_cell, distance_label
from rmz_acq.evaluation.simulated import score_on_simulated
from rmz_acq.model.normalization import NORMALIZATIONS
from rmz_acq.model.weights import load_model
from rmz_acq.training.conditions import PRESET_CONDITIONS
from rmz_acq.training.data import SampleVariety
from simulators.optics import PsfModel

PROTOCOL = {
    "nuclei": ([3.0, 9.0, 15.0], np.round(np.arange(0, 18.0001, 0.2), 4)),
    "widefield": ([3.0, 9.0, 15.0], np.round(np.arange(0, 18.0001, 0.2), 4)),
    "beads": ([3.0, 6.0, 9.0], np.round(np.arange(0, 10.0001, 0.1), 4)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PROTOCOL), required=True)
    parser.add_argument("--weights", default=None, help="weights file (default: the preset)")
    parser.add_argument("--volumes", type=int, default=4)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--inputs", default=None, help="input planes in um, e.g. 1,2,3 (default: the protocol's)"
    )
    parser.add_argument(
        "--psf", choices=get_args(PsfModel), default="scalar", help="PSF model of the volumes"
    )
    parser.add_argument(
        "--samples",
        choices=get_args(SampleVariety),
        default="standard",
        help="sample variety of the volumes",
    )
    parser.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        default="first",
        help="frames scaled by the first frame's intensity statistics (the cards' tables) or "
        "by all of theirs together (as `rmz-acq reconstruct` scales a z-stack)",
    )
    args = parser.parse_args()
    model = load_model(args.weights or args.preset)
    inputs, planes = PROTOCOL[args.preset]
    if args.inputs:
        inputs = [float(z) for z in args.inputs.split(",")]
    started = time.perf_counter()
    score = score_on_simulated(
        model,
        PRESET_CONDITIONS[args.preset],
        inputs,
        planes,
        n_volumes=args.volumes,
        beads=args.preset == "beads",
        psf_model=args.psf,
        sample_variety=args.samples,
        normalization=args.normalization,
    )
    summary = score.summary()
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["model"] = {"name": model.name, "sha256": model.sha256}
    summary["psf_model"] = args.psf
    summary["sample_variety"] = args.samples
    summary["normalization"] = args.normalization
    for truth in ("vs_noisy_scan", "vs_noise_free"):
        about = f"{args.psf} PSF, {args.samples} samples"
        print(f"\n{args.preset}, {summary['volumes']} held-out volumes ({about}), {truth}")
        print(f"{'method':<22}{'PSNR dB':>9}{'NRMSE %':>9}{'SSIM':>7}")
        for method, s in summary[truth].items():
            print(f"{method:<22}{s['psnr']:>9.2f}{s['nrmse']:>9.2f}{s['ssim']:>7.3f}")
    if "beads_vs_noise_free" in summary:
        print(f"\n{'volume':<22}{'beads':>7}{'fitted':>8}{'FWHM um':>9}{'KL':>7}")
        for name, s in summary["beads_vs_noise_free"].items():
            print(
                f"{name:<22}{s['beads']:>7}{100 * s['fitted_fraction']:>7.0f}%"
                f"{s['mean_fwhm_um']:>9.3f}{s['mean_kl']:>7.3f}"
            )
        bins = summary["beads_vs_noise_free"]["ground_truth"]["by_input_distance"]
        print("\nfitted % / mean FWHM um, by distance to the nearest input:")
        print(f"{'volume':<22}" + "".join(f"{distance_label(b):>16}" for b in bins))
        for name, s in summary["beads_vs_noise_free"].items():
            cells = "".join(f"{distance_cell(b):>16}" for b in s["by_input_distance"])
            print(f"{name:<22}{cells}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
