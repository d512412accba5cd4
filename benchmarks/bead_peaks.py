"""Are beads the `beads` preset fails to fit missing, or there but blurred?

    python benchmarks/bead_peaks.py [--weights FILE] [--volumes 2] [--inputs 3,6,9]

On the model card's held-out volumes (seeds from 20000) and protocol (output
every 0.1 um over 0-10 um), for every isolated bead of the noise-free ground
truth: the brightest pixel of the reconstruction within 1 px and 0.5 um of
the bead, as a share of the ground truth's peak at the bead (both on the
ground truth's intensity scale, background 0).  Printed per distance from
the bead to the nearest input frame: beads, median share, and how many come
back below 20 % of their brightness (gone, rather than wide).
"""

from __future__ import annotations

import argparse
from itertools import pairwise

import numpy as np

from rmz_acq.evaluation.beads import find_isolated_beads
from rmz_acq.evaluation.report import DISTANCE_BINS_UM
from rmz_acq.model.normalization import IntensityNormalization
from rmz_acq.model.weights import load_model
from rmz_acq.session import ReconstructionSession
from rmz_acq.training.conditions import PRESET_CONDITIONS
from rmz_acq.training.data import make_simulated_volume
from rmz_acq.training.trainer import EVALUATION_SEED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="beads")
    parser.add_argument("--volumes", type=int, default=2)
    parser.add_argument("--inputs", default="3,6,9")
    args = parser.parse_args()
    model = load_model(args.weights)
    conditions = PRESET_CONDITIONS["beads"]
    inputs = [float(z) for z in args.inputs.split(",")]
    planes = np.round(np.arange(0, 10.0001, 0.1), 4)
    distance, share, shift, mirrored = [], [], [], []
    for i in range(args.volumes):
        volume = make_simulated_volume(conditions, EVALUATION_SEED + i, 256)
        rng = np.random.default_rng(EVALUATION_SEED + i)
        frames = [volume.frame(z, rng) for z in inputs]
        truth = np.stack([volume.target(float(z)) for z in planes])
        result = ReconstructionSession(model, planes).run(frames, inputs)
        norm = IntensityNormalization.from_frame(truth.max(axis=0))
        t, r = norm.apply(truth), norm.apply(result.volume)
        for z, y, x in find_isolated_beads(truth, planes, conditions.pixel_size_um):
            yi, xi, k = int(y), int(x), int(np.argmin(np.abs(planes - z)))
            near = np.abs(planes - z) <= 0.5
            share.append(float(r[near, yi - 1 : yi + 2, xi - 1 : xi + 2].max() / t[k, yi, xi]))
            nearest = min(inputs, key=lambda f: abs(z - f))
            distance.append(abs(z - nearest))
            window = np.flatnonzero(np.abs(planes - z) <= 1.5)
            column = r[window, yi - 1 : yi + 2, xi - 1 : xi + 2].max(axis=(1, 2))
            z_peak = float(planes[window[int(np.argmax(column))]])
            shift.append(abs(z_peak - z))
            mirrored.append(
                abs(z - nearest) > 0.15
                and abs(z_peak - nearest) > 0.15
                and np.sign(z_peak - nearest) != np.sign(z - nearest)
            )
    d, s = np.asarray(distance), np.asarray(share)
    dz, wrong_side = np.asarray(shift), np.asarray(mirrored)
    print(f"{model.name} ({model.sha256[:12]}), {args.volumes} volumes, inputs {inputs}")
    print(
        f"{'distance to input':<20}{'beads':>6}{'median peak share':>19}{'below 20 %':>12}"
        f"{'median |dz| um':>16}{'other side':>12}"
    )
    for lo, hi in pairwise(DISTANCE_BINS_UM):
        group = (d >= lo) & (d < hi)
        inside = s[group]
        label = f"{lo:g}-{'' if np.isinf(hi) else f'{hi:g}'} um"
        if inside.size:
            print(
                f"{label:<20}{inside.size:>6}{np.median(inside):>19.2f}"
                f"{int((inside < 0.2).sum()):>12}{np.median(dz[group]):>16.2f}"
                f"{int(wrong_side[group].sum()):>12}"
            )


if __name__ == "__main__":
    main()
