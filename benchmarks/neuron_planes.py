"""Where a model loses on the real neuron stack, plane by plane, and how much the sampling matters.

    python benchmarks/neuron_planes.py [--weights PATH] [--upsample 1,2,4]

The neuron of the ``flowdec`` wheel (``pip install --no-deps flowdec==1.1.0``)
as `benchmarks/generalisation.py` uses it: 50 planes spread over the
``nuclei`` preset's 18 um, inputs its planes nearest 3, 9 and 15 um.  Prints,
every third plane, PSNR on the stack's own range of Recurrent-MZ and linear
interpolation, and the 99.9th percentile of volume and stack; then the
generalisation scores with the frames upsampled laterally (the stack's pixel
size is not stored: x2 reads its pixels as 0.2 um, x4 as 0.4 um); then the
same scores over every voxel and over the voxels the stack did not saturate
(its soma is clipped at 255 in 17 planes, `rmz_acq.saturation`: there the
stack is only a lower bound of the truth), volumes scaled as a z-stack, as
`generalisation.py` scores them.  A diagnosis of the real stack, never used
to train or choose anything.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from rmz_acq.evaluation.baselines import linear_interpolation, single_input_propagation
from rmz_acq.evaluation.generalisation import flowdec_stack, score_case, stack_case
from rmz_acq.evaluation.report import truth_normalisation
from rmz_acq.model.normalization import IntensityNormalization
from rmz_acq.model.weights import LoadedModel, load_model
from rmz_acq.reconstruct import stack_normalization
from rmz_acq.saturation import find_saturation
from rmz_acq.session import ReconstructionSession

INPUTS_UM = (3.0, 9.0, 15.0)


def _psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    """PSNR on the truth plane's own range (inf where they agree exactly)."""
    mse = float(np.mean((estimate - truth) ** 2))
    peak = float(truth.max() - truth.min())
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="nuclei")
    parser.add_argument("--upsample", default="1,2,4", help="lateral factors, comma-separated")
    args = parser.parse_args()
    model = load_model(args.weights)
    stack = flowdec_stack("neuron")
    case = stack_case("neuron", stack, 18.0, INPUTS_UM)
    volume = (
        ReconstructionSession(model, case.planes_um).run(list(case.frames), case.frames_z_um).volume
    )
    frames_z = np.asarray(case.frames_z_um)
    print(f"{model.name} ({model.sha256[:8]}) on the flowdec neuron")
    print(
        f"{'z um':>6}{'RMZ dB':>8}{'lin dB':>8}{'p99.9 RMZ':>11}{'p99.9 stack':>13}"
        f"{'saturated':>11}"
    )
    for j in range(0, len(case.planes_um), 3):
        k = float(np.interp(case.planes_um[j], frames_z, np.arange(len(frames_z))))
        i = min(int(k), len(frames_z) - 2)
        linear = (1 - (k - i)) * case.frames[i] + (k - i) * case.frames[i + 1]
        truth = case.truth[j]
        print(
            f"{case.planes_um[j]:>6.2f}{_psnr(volume[j], truth):>8.2f}{_psnr(linear, truth):>8.2f}"
            f"{np.percentile(volume[j], 99.9):>11.1f}{np.percentile(truth, 99.9):>13.1f}"
            f"{find_saturation(truth).fraction:>11.2%}"
        )
    print(
        f"\n{'upsample':>8} | {'per-volume: RMZ  lin  single':>30} | {'truth scale: RMZ  lin':>22}"
    )
    for factor in (int(f) for f in args.upsample.split(",")):
        data = torch.from_numpy(stack)[None]
        if factor > 1:
            data = torch.nn.functional.interpolate(data, scale_factor=factor, mode="bilinear")
        scaled = stack_case("neuron", data[0].numpy(), 18.0, INPUTS_UM)
        score = score_case(model, scaled, orders=False)
        pv, tv = score.per_volume, score.truth_scale
        print(
            f"{f'x{factor}':>8} | {pv['recurrent_mz']['psnr']:>10.2f}"
            f"{pv['linear_interpolation']['psnr']:>7.2f}{pv['single_input']['psnr']:>8.2f}"
            f" | {tv['recurrent_mz']['psnr']:>13.2f}{tv['linear_interpolation']['psnr']:>7.2f}",
            flush=True,
        )
    _saturated_voxels(model, case)


def _saturated_voxels(model: LoadedModel, case: object) -> None:
    """PSNR over the non-input planes, with and without the stack's saturated voxels."""
    frames, z = case.frames, np.asarray(case.frames_z_um)  # type: ignore[attr-defined]
    truth, planes = case.truth, case.planes_um  # type: ignore[attr-defined]
    session = ReconstructionSession(model, planes, normalization=stack_normalization(model, frames))
    order = np.argsort(z)
    estimates = {
        "RMZ": session.run(list(frames[order]), list(z[order])).volume,
        "lin": linear_interpolation(frames, z, planes),
        "single": single_input_propagation(model, frames, z, planes, None, "float32"),
    }
    clipped = np.stack([p == p.max() if find_saturation(p).pixels else p < p.min() for p in truth])
    step = float(np.median(np.diff(planes)))
    keep = [j for j, p in enumerate(planes) if np.all(np.abs(z - p) >= 0.5 * step)]
    print(
        f"\nz-stack scale, mean over {len(keep)} non-input planes; the stack saturated in "
        f"{clipped[keep].mean():.2%} of their voxels"
    )
    print(f"{'scale':>10} {'voxels':>12} | {'RMZ':>6} {'lin':>6} {'single':>6} | RMZ - lin")
    for scale in ("truth", "per-volume"):
        norm = truth_normalisation(truth) if scale == "truth" else None
        reference = (norm or IntensityNormalization.from_frame(truth)).apply(truth)
        for which in ("all", "unsaturated"):
            row = {}
            for name, estimate in estimates.items():
                own = norm or IntensityNormalization.from_frame(estimate)
                error = own.apply(estimate).astype(np.float64) - reference
                values = []
                for j in keep:
                    e = error[j] if which == "all" else error[j][~clipped[j]]
                    peak = float(reference[j].max() - reference[j].min())
                    values.append(10 * np.log10(peak**2 / np.mean(e**2)))
                row[name] = float(np.mean(values))
            print(
                f"{scale:>10} {which:>12} | {row['RMZ']:>6.2f} {row['lin']:>6.2f} "
                f"{row['single']:>6.2f} | {row['RMZ'] - row['lin']:>+8.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
