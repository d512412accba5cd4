"""Where the per-volume normalisation puts a reconstruction's background and top.

    python benchmarks/per_volume_scale.py --row tissue WEIGHTS [WEIGHTS ...]

The paper's per-volume normalisation (background mean to 0, the
foreground's 99th percentile to 1) finds the background of each volume by
the triangle threshold of its histogram.  On a field with no empty
background (packed tissue) that threshold rests on the histogram's shape,
and two reconstructions equally close to the truth on its own scale can be
given backgrounds far apart.  For each held-out volume of ``--row`` (the
protocol of `generalisation.py`, three frames scaled as a z-stack) this
prints the truth's threshold, background mean and scale, each
reconstruction's, and the background's error as a share of the truth's
scale; the last column, the same error with the statistics taken, as the
paper takes them, from an extended-depth-of-field image of the volume (here
its maximum over z) instead of from all its voxels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from generalisation import _cases

from rmz_acq.evaluation.generalisation import _reconstruct
from rmz_acq.model import load_model
from rmz_acq.model.normalization import IntensityNormalization, triangle_threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+")
    parser.add_argument("--row", default="tissue")
    parser.add_argument("--preset", default="widefield")
    parser.add_argument("--volumes", type=int, default=2)
    args = parser.parse_args()
    models = [load_model(w) for w in args.weights]
    print(
        f"{'volume':<8}{'what':<40}{'threshold':>10}{'background':>11}{'scale':>8}{'error':>8}"
        f"{'EDF error':>10}"
    )
    for i, case in enumerate(_cases(args.row, args.preset, args.volumes)):
        truth = case.truth.astype(np.float64)
        reference = IntensityNormalization.from_frame(truth)
        edf_reference = IntensityNormalization.from_frame(truth.max(axis=0))
        rows = [("truth", truth)]
        for path, model in zip(args.weights, models, strict=True):
            volume = _reconstruct(model, case, range(len(case.frames)), None, None, "all")
            rows.append((f"{Path(path).name} ({model.sha256[:8]})", volume.astype(np.float64)))
        for name, values in rows:
            norm = IntensityNormalization.from_frame(values)
            error = 100 * (norm.shift - reference.shift) / reference.scale
            edf = IntensityNormalization.from_frame(values.max(axis=0))
            edf_error = 100 * (edf.shift - edf_reference.shift) / edf_reference.scale
            print(
                f"{i:<8}{name:<40}{triangle_threshold(values):>10.0f}{norm.shift:>11.0f}"
                f"{norm.scale:>8.0f}{error:>+7.1f}%{edf_error:>+9.1f}%"
            )


if __name__ == "__main__":
    main()
