"""A linear blend fitted on the preset's own training distribution, shipped with the weights.

    python benchmarks/preset_blend.py [--preset widefield] [--weights FILE] [--fit 16]
                                      [--choose 8] [--bank 16] [--cache runs/pb]
                                      [-o CANDIDATE.safetensors]

`rmz-acq calibrate` fits a linear ring filter (`rmz_acq.linear_blend`) on a
user's own stacks. This script asks whether one fitted on the simulator's
*training* mixture of the preset (its training families, scalar and
vectorial PSFs, ideal and realistic optics, every brightness and camera the
training draws) carries to specimens it never saw, as the network is meant
to: ``--fit`` recorded stacks (noisy, 0.2 um apart over the preset's depth,
seeds from `FIT_SEED`) give the cross-spectra; ``--choose`` other training
specimens (seeds from `CHOOSE_SEED`) scanned at the protocol's three frames
(sorted by z, scaled as a z-stack, as `generalisation.py` does) choose the
network's share: per-volume PSNR over the non-input planes against the
noise-free truth, each share in `BLEND_SHARES`. With ``--bank N`` the fit
stacks and ``N`` more (seeds from `BANK_SEED`) are also kept apart as a
bank (`rmz_acq.linear_blend.SpectraBank`), weighed per scan by its frames,
and the share is chosen with it. ``--weights`` puts another network of the
preset's conditions (a candidate) in place of the preset's. The held-out rows of
`generalisation.py` (seeds from 20000) are never touched here; score the
written candidate there (``--weights``) and pair it with the preset's run
(`compare_scores.py`).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
from generalisation import PROTOCOL  # beside this script

from rmz_acq.calibration import BLEND_SHARES
from rmz_acq.evaluation.baselines import linear_interpolation
from rmz_acq.evaluation.metrics import psnr
from rmz_acq.evaluation.report import truth_normalisation
from rmz_acq.linear_blend import LinearBlend, LinearFilter, SpectraBank
from rmz_acq.model.normalization import IntensityNormalization, fixed_normalization
from rmz_acq.model.weights import load_model, save_weights
from rmz_acq.session import ReconstructionSession
from rmz_acq.training.conditions import PRESET_CONDITIONS
from rmz_acq.training.data import make_simulated_volume

FIT_SEED = 70000
CHOOSE_SEED = 71000
BANK_SEED = 72000
FAMILIES = ("nuclei", "cells", "puncta", "tissue")  # widefield's training families beside the worm


def specimen(
    preset: str, seed: int, planes: np.ndarray, cache: Path
) -> tuple[np.ndarray, np.ndarray]:
    """A training-mixture specimen: the recorded (noisy) stack and the noise-free one.

    Kept in ``cache`` under the conditions' sample name: presets of the
    same conditions draw the same specimens.
    """
    path = cache / f"{PRESET_CONDITIONS[preset].sample}-{seed}.npz"
    if path.is_file():
        with np.load(path) as kept:
            return kept["stack"], kept["clean"]
    volume = make_simulated_volume(
        PRESET_CONDITIONS[preset],
        seed,
        256,
        ("scalar", "vectorial"),
        ("standard", "structures"),
        structure_families=FAMILIES,  # type: ignore[arg-type]
        optics_varieties=("ideal", "realistic"),
    )
    rng = np.random.default_rng(seed)
    stack = np.stack([volume.frame(float(z), rng) for z in planes]).astype(np.float32)
    clean = np.stack([volume.target(float(z)) for z in planes]).astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, stack=stack, clean=clean)
    return stack, clean


def _per_volume_psnr(estimate: np.ndarray, truth: np.ndarray, keep: np.ndarray) -> float:
    ref = IntensityNormalization.from_frame(truth).apply(truth)[keep]
    own = IntensityNormalization.from_frame(estimate).apply(estimate)[keep]
    return float(np.mean([psnr(a, b) for a, b in zip(own, ref, strict=True)]))


def _truth_psnr(estimate: np.ndarray, truth: np.ndarray, keep: np.ndarray) -> float:
    norm = truth_normalisation(truth)
    pairs = zip(norm.apply(estimate)[keep], norm.apply(truth)[keep], strict=True)
    return float(np.mean([psnr(a, b) for a, b in pairs]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="widefield")
    parser.add_argument("--weights", default=None, help="weights file (default: the preset)")
    parser.add_argument("--fit", type=int, default=16)
    parser.add_argument("--choose", type=int, default=8)
    parser.add_argument("--bank", type=int, default=0, help="stacks beside --fit in a bank")
    parser.add_argument("--cache", type=Path, default=Path("runs/pb"))
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    inputs, planes = PROTOCOL[args.preset]
    # the network alone: a preset that carries a blend already is fitted afresh
    model = dataclasses.replace(load_model(args.weights or args.preset, "cpu"), linear_blend=None)
    stacks = []
    for i in range(args.fit):
        stack, _ = specimen(args.preset, FIT_SEED + i, planes, args.cache)
        stacks.append((stack, planes))
        print(
            f"fit specimen {i + 1}/{args.fit} ({time.perf_counter() - started:.0f} s)", flush=True
        )
    blend = LinearBlend.fit(stacks)
    if args.bank:
        members = list(stacks)
        for i in range(args.bank):
            stack, _ = specimen(args.preset, BANK_SEED + i, planes, args.cache)
            members.append((stack, planes))
            print(f"bank specimen {i + 1}/{args.bank} ({time.perf_counter() - started:.0f} s)")
        blend = blend.with_bank(SpectraBank.fit(members))
    centre = 0.5 * (planes[0] + planes[-1])
    frame_index = [int(np.argmin(np.abs(planes - z))) for z in inputs]
    keep = np.ones(len(planes), bool)
    keep[frame_index] = False
    rows: dict[float, list[tuple[float, float]]] = {s: [] for s in BLEND_SHARES}
    linear_rows = []
    for i in range(args.choose):
        stack, clean = specimen(args.preset, CHOOSE_SEED + i, planes, args.cache)
        frames = stack[frame_index]
        fixed = fixed_normalization(frames, model.model.config.intensity, "all")
        network = (
            ReconstructionSession(model, planes, normalization=fixed)
            .run(list(frames), list(inputs))
            .volume.copy()
        )
        linear = LinearFilter(blend, centre)
        for frame, z in zip(frames, inputs, strict=True):
            linear.add(frame, z)
        covered = linear.covers(planes)
        filtered = linear.planes(planes)
        interp = linear_interpolation(frames, list(inputs), planes)
        linear_rows.append(
            (_per_volume_psnr(interp, clean, keep), _truth_psnr(interp, clean, keep))
        )
        for share in BLEND_SHARES:
            volume = network.copy()
            volume[covered] = share * network[covered] + (1 - share) * filtered[covered]
            rows[share].append(
                (_per_volume_psnr(volume, clean, keep), _truth_psnr(volume, clean, keep))
            )
        print(
            f"choose specimen {i + 1}/{args.choose}: network - interp "
            f"{rows[1.0][-1][0] - linear_rows[-1][0]:+.2f} dB per volume; "
            + ", ".join(
                f"{s:.2f}: {rows[s][-1][0] - rows[1.0][-1][0]:+.2f}" for s in BLEND_SHARES[1:]
            )
            + f" ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    base = np.array(linear_rows)
    print(
        f"\n{args.preset}: filter fitted on {args.fit} training-mixture stacks"
        + (f" (and a bank of {args.fit + args.bank})" if args.bank else "")
        + "; "
        f"{args.choose} others scanned at {inputs} um; margin over linear interpolation, dB, "
        "mean ± SE (per volume | truth's scale)"
    )
    means = {}
    for share in BLEND_SHARES:
        margin = np.array(rows[share]) - base
        se = margin.std(axis=0, ddof=1) / np.sqrt(len(margin))
        means[share] = float(margin[:, 0].mean())
        print(
            f"  share {share:.2f}: {margin[:, 0].mean():+.2f} ± {se[0]:.2f} | "
            f"{margin[:, 1].mean():+.2f} ± {se[1]:.2f}"
        )
    best = max(BLEND_SHARES, key=lambda s: (round(means[s], 6), s))
    print(f"chosen share of the network: {best:.2f} ({time.perf_counter() - started:.0f} s)")
    if args.output is not None and best < 1.0:
        source = f"{args.fit} simulated stacks of the {args.preset} preset's training mixture"
        save_weights(
            model.model,
            args.output,
            name=model.name,
            conditions=model.conditions,
            extra={
                k: v for k, v in model.metadata.items() if k not in {"format", "name", "conditions"}
            },
            linear_blend=blend.with_weight(best).with_source(source),
        )
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
