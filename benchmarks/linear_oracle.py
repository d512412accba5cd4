"""How far could any linear method take the same three frames? An oracle's answer.

    python benchmarks/linear_oracle.py [--preset widefield] [--volumes 8] [--cache runs/cache]
                                       [--json RUN.json] [--rows own,nuclei,...]

Wide-field imaging is linear and, over a field, shift-invariant: each plane
of the specimen reaches each frame through its own blur. So the best any
linear, shift-invariant method (deconvolution, digital refocusing, a Wiener
filter, linear interpolation itself) can make of the frames at one output
plane is, at each spatial frequency, some weighted sum of the frames' Fourier
coefficients. This script fits those weights *on the noise-free truth
itself*, plane by plane, one complex weight per frame in each of ``--bins``
rings of spatial frequency (least squares over the ring's coefficients), and
scores what they give as `generalisation.py` scores Recurrent-MZ: the same
held-out volumes (read from ``--cache`` when `generalisation.py` wrote them
there), the paper's per-volume normalisation and the truth's scale, the mean
over the planes that are not at an input.

No method without the truth can choose better weights of this form, so the
oracle is a ceiling for linear methods (slightly flattering, since its
hundred or so weights a plane are fitted to the plane they score) and a yardstick
for a non-linear one: where Recurrent-MZ is far below it the frames hold
information the network does not use; where it is near or above it the
margin left must come from what the network knows of specimens (a prior),
not from undoing the blur better.

The same weights fitted on the row's *other* volumes (each volume's
equations scaled to weigh the same) are a linear method calibrated on
specimens of the same family and optics variety, never on the one scored:
what a fixed filter, which a user could fit on full stacks of their own,
would give. With ``--json`` (a ``generalisation.py --json`` run on the same
volumes) Recurrent-MZ's margin is printed beside both, and its difference
from that calibrated filter volume by volume, paired.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from generalisation import PROTOCOL, _cases  # beside this script
from numpy.typing import NDArray

from rmz_acq.evaluation.baselines import linear_interpolation
from rmz_acq.evaluation.generalisation import Case, _non_input
from rmz_acq.evaluation.metrics import psnr
from rmz_acq.evaluation.report import truth_normalisation
from rmz_acq.model.normalization import IntensityNormalization
from simulators.samples import STRUCTURE_FAMILIES

SCALES = ("per_volume", "truth")


def _rings(shape: tuple[int, int], n_rings: int) -> NDArray[np.intp]:
    """Ring index of every coefficient of a real FFT of ``shape``; the mean (DC) is ring -1."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    radius = np.hypot(fy, fx)
    rings = np.minimum((radius / radius.max() * n_rings).astype(np.intp), n_rings - 1)
    rings[0, 0] = -1
    return rings


def _sums(flat: NDArray[np.complex128], ring: NDArray[np.intp], n_rings: int) -> NDArray:
    """Per ring, the sum of each row of ``flat`` (DC excluded)."""
    keep = ring >= 0
    return np.stack(
        [
            np.bincount(ring[keep], f[keep].real, n_rings)
            + 1j * np.bincount(ring[keep], f[keep].imag, n_rings)
            for f in flat
        ]
    )


def normal_equations(case: Case, n_rings: int) -> tuple[NDArray, NDArray]:
    """Least-squares normal equations of every output plane, ring by ring.

    Returns ``gram`` (planes, rings, frames, frames) and ``rhs`` (planes,
    rings, frames): the frames' spectra against each other and against the
    truth plane's, summed over the coefficients of each ring.
    """
    frames = np.asarray(case.frames, np.float64)
    n = frames.shape[0]
    ring = _rings(frames.shape[-2:], n_rings).ravel()
    flat = np.fft.rfft2(frames).reshape(n, -1)
    pairs = np.stack([np.conj(flat[i]) * flat[j] for i in range(n) for j in range(n)])
    gram = _sums(pairs, ring, n_rings).T.reshape(n_rings, n, n)
    grams, rhss = [], []
    for plane in np.asarray(case.truth, np.float64):
        target = np.fft.rfft2(plane).ravel()
        rhss.append(_sums(np.conj(flat) * target[None], ring, n_rings).T)
        grams.append(gram)
    return np.stack(grams), np.stack(rhss)


def filtered_volume(case: Case, gram: NDArray, rhs: NDArray) -> NDArray[np.float32]:
    """Each plane the ring-by-ring weighted sum of the frames that solves ``gram w = rhs``.

    The mean of each plane (DC) is linear interpolation's, so weights fitted
    on other volumes carry no camera offset of theirs.
    """
    frames = np.asarray(case.frames, np.float64)
    n, shape = frames.shape[0], frames.shape[-2:]
    n_rings = gram.shape[1]
    ring = _rings(shape, n_rings).ravel()
    flat = np.fft.rfft2(frames).reshape(n, -1)
    ridge = 1e-9 * np.trace(gram, axis1=-2, axis2=-1).real[..., None, None] + 1e-30
    weights = np.linalg.solve(gram + ridge * np.eye(n), rhs[..., None])[..., 0]
    means = linear_interpolation(frames.mean(axis=(1, 2))[:, None, None], case.frames_z_um,
                                 case.planes_um)[:, 0, 0]  # fmt: skip
    planes = []
    for w, mean in zip(weights, means, strict=True):
        spectrum = np.einsum("nk,kn->k", flat, w[np.maximum(ring, 0)])
        spectrum[0] = mean * shape[0] * shape[1]
        planes.append(np.fft.irfft2(spectrum.reshape(-1, shape[1] // 2 + 1), s=shape))
    return np.stack(planes).astype(np.float32)


def score(case: Case, volume: NDArray[np.float32]) -> dict[str, dict[str, float]]:
    """``volume`` and linear interpolation, PSNR (dB) over non-input planes, on both scales.

    The scales of `evaluate_arrays` (the truth's statistics, or each
    volume's own), PSNR alone: its SSIM would triple the time.
    """
    keep = _non_input(case)
    truth = np.asarray(case.truth, np.float32)
    methods = {
        "filter": volume,
        "linear_interpolation": linear_interpolation(case.frames, case.frames_z_um, case.planes_um),
    }
    out: dict[str, dict[str, float]] = {}
    for scale in SCALES:  # each scale's statistics from every plane, as evaluate_arrays takes them
        norm = truth_normalisation(truth)
        if scale == "per_volume":
            norm = IntensityNormalization.from_frame(truth)
        reference = norm.apply(truth)[keep]
        out[scale] = {}
        for name, estimate in methods.items():
            own = IntensityNormalization.from_frame(estimate) if scale == "per_volume" else norm
            normalised = own.apply(estimate)[keep]
            out[scale][name] = float(
                np.mean([psnr(a, b) for a, b in zip(normalised, reference, strict=True)])
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="widefield", choices=sorted(PROTOCOL))
    parser.add_argument("--volumes", type=int, default=8)
    parser.add_argument("--rows", default="own," + ",".join(STRUCTURE_FAMILIES))
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--bins", type=int, default=16, help="rings of spatial frequency")
    parser.add_argument("--json", type=Path, default=None, help="a generalisation.py --json run")
    args = parser.parse_args()
    run = json.loads(args.json.read_text())["rows"] if args.json else {}
    started = time.perf_counter()
    print(
        f"ring filters ({args.bins} rings) on the {args.preset} protocol, {args.volumes} volumes "
        "a row; PSNR margins over linear interpolation in dB, mean ± SE (median), non-input "
        "planes. oracle: fitted on the volume's own truth; others: fitted on the row's other "
        "volumes"
    )
    header = f"{'row':10s} {'n':>2s} | {'scale':10s} | {'oracle':>20s} | {'others':>20s}"
    if run:
        header += f" | {'Recurrent-MZ':>20s} | {'RMZ - others':>14s}"
    print(header)
    for row in [r.strip() for r in args.rows.split(",") if r.strip()]:
        cases = _cases(row, args.preset, args.volumes, args.cache)
        if len(cases) < 2:
            raise SystemExit(f"{row}: the 'others' filter needs two or more volumes")
        equations = []
        for case in cases:
            gram, rhs = normal_equations(case, args.bins)
            size = np.trace(gram, axis1=-2, axis2=-1).real.sum()  # each volume weighs the same
            equations.append((gram / size, rhs / size))
        total_gram = sum(g for g, _ in equations)
        total_rhs = sum(r for _, r in equations)
        oracle, others = [], []
        for case, (gram, rhs) in zip(cases, equations, strict=True):
            oracle.append(score(case, filtered_volume(case, gram, rhs)))
            others.append(score(case, filtered_volume(case, total_gram - gram, total_rhs - rhs)))
        rmz = run.get(row, {}).get("volumes", [])
        for scale in SCALES:
            key = "per_volume" if scale == "per_volume" else "truth_scale"
            linear = np.array([s[scale]["linear_interpolation"] for s in oracle])
            best = np.array([s[scale]["filter"] for s in oracle])
            fitted = np.array([s[scale]["filter"] for s in others])
            line = (
                f"{row:10s} {len(cases):2d} | {scale:10s} | {_summary(best - linear)} | "
                f"{_summary(fitted - linear)}"
            )
            if rmz:
                n = min(len(rmz), len(cases))
                ours = np.array([v[key]["recurrent_mz"]["psnr"] for v in rmz[:n]])
                theirs = np.array([v[key]["linear_interpolation"]["psnr"] for v in rmz[:n]])
                if not np.allclose(theirs, linear[:n], atol=1e-3):
                    raise SystemExit(f"{args.json} scored other volumes of {row}: baselines differ")
                paired = ours - fitted[:n]
                line += f" | {_summary(ours - theirs)} | {paired.mean():+6.2f} ± {_se(paired):.2f}"
            print(line, flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")


def _se(values: NDArray[np.float64]) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def _summary(values: NDArray[np.float64]) -> str:
    return f"{values.mean():+6.2f} ± {_se(values):.2f} ({np.median(values):+.2f})"


if __name__ == "__main__":
    main()
