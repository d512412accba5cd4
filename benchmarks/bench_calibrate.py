"""Validate, calibrate, validate again: specimens the preset never trained on.

    python benchmarks/bench_calibrate.py [--minutes 10]
        [--cases neuron,filaments,membranes,mixture] [--learning-rate 2e-4]
    python benchmarks/bench_calibrate.py --structure-only

Cases (the `nuclei` preset, trained without filaments and membranes):

- ``neuron``: the real wide-field neuron stack in the ``flowdec`` wheel
  (``pip install --no-deps flowdec==1.1.0``), 50 planes spread over the
  preset's 0-18 um (its z step is not stored), pixel taken as 0.1 um;
- ``filaments``, ``membranes``: one simulated specimen of that family
  (realistic optics, 256 x 256 px), imaged at every output plane with
  camera noise, as a microscope would record the stack;
- ``mixture``: filaments and membranes in one field, their brightness a
  decade apart at most (the same way).

For each: `validate_stack` on the held-out strip (the right quarter, which
calibration never trains on) with the preset, `calibrate` for ``--minutes``,
and `validate_stack` on the same strip with the calibrated weights (their
own stop threshold, chosen by `calibrate` on the training part).  Every
score is against a noisy stack, so the table also gives the strip's noise
ceiling and the scores with that noise taken out.  ``--structure-only``
prints how much specimen the training part and the held-out strip hold
(a nearly empty strip is scored mostly on background), and stops.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from rmz_acq.acquisition import ScanSettings
from rmz_acq.calibration import FINE_TUNE_LEARNING_RATE, HELD_OUT_FRACTION, calibrate
from rmz_acq.evaluation.generalisation import flowdec_stack
from rmz_acq.io import ZStack
from rmz_acq.model.weights import load_model
from rmz_acq.training.conditions import PRESET_CONDITIONS
from rmz_acq.training.data import make_simulated_volume
from rmz_acq.validation import validate_stack

SEED = 9_100  # not a training or evaluation seed of the presets
MIXTURE = ("filaments", "membranes")  # both left out of the nuclei preset's training


def simulated_specimen(case: str, seed: int = SEED) -> tuple[ZStack, np.ndarray]:
    """One specimen of ``case`` (a structure family, or ``worm``) over the
    `nuclei` preset's range at its output step: the recorded stack, with
    camera noise, and the noise-free one."""
    conditions = PRESET_CONDITIONS["nuclei"]
    families = MIXTURE if case == "mixture" else (case,)
    volume = make_simulated_volume(
        conditions,
        seed,
        256,
        ("vectorial",),
        ("standard",) if case == "worm" else ("structures",),
        sample_settings={"families": families} if case == "mixture" else None,
        structure_families=("nuclei",) if case == "worm" else families,  # type: ignore[arg-type]
        optics_varieties=("realistic",),
    )
    rng = np.random.default_rng(seed)
    z = np.round(np.arange(0.0, conditions.depth_um + 1e-6, conditions.output_step_um), 6)
    frames = np.stack([volume.frame(float(zi), rng) for zi in z]).astype(np.float32)
    clean = np.stack([volume.target(float(zi)) for zi in z]).astype(np.float32)
    return ZStack(data=frames, z_um=z, pixel_size_um=conditions.pixel_size_um), clean


def _stack(case: str) -> ZStack:
    if case == "neuron":
        data = flowdec_stack("neuron")
        z = np.linspace(0.0, PRESET_CONDITIONS["nuclei"].depth_um, data.shape[0])
        return ZStack(data=data, z_um=z, pixel_size_um=0.1)
    return simulated_specimen(case)[0]


def _strip(stack: ZStack) -> ZStack:
    cut = round(stack.data.shape[2] * (1 - HELD_OUT_FRACTION))
    return ZStack(data=stack.data[:, :, cut:], z_um=stack.z_um, pixel_size_um=stack.pixel_size_um)


def structure(planes: np.ndarray) -> str:
    """How much there is to see in some planes: mean, 99th percentile over
    the median (near 1: background only) and the share of pixels brighter
    than twice the median."""
    data = np.asarray(planes, np.float64)
    median = float(np.median(data))
    return (
        f"mean {data.mean():.1f}, 99th percentile {np.percentile(data, 99):.1f} "
        f"({np.percentile(data, 99) / median:.2f} x the median), "
        f"{np.mean(data > 2 * median):.1%} of pixels above twice the median"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--cases", default="neuron,filaments,membranes,mixture")
    parser.add_argument("--learning-rate", type=float, default=FINE_TUNE_LEARNING_RATE)
    parser.add_argument(
        "--structure-only",
        action="store_true",
        help="print what the training part and the held-out strip hold, and stop",
    )
    args = parser.parse_args()
    if args.structure_only:
        for case in args.cases.split(","):
            stack = _stack(case)
            strip = _strip(stack).data
            print(f"{case}: training part: {structure(stack.data[:, :, : -strip.shape[2]])}")
            print(f"{case}: held-out strip: {structure(strip)}")
        return
    preset = load_model("nuclei")
    rows = []
    for case in args.cases.split(","):
        stack = _stack(case)
        held_out = _strip(stack)
        before = validate_stack(held_out, preset, source=case)
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            result = calibrate(
                [(case, stack)],
                preset,
                Path(tmp) / "mine.safetensors",
                minutes=args.minutes,
                force=True,
                learning_rate=args.learning_rate,
            )
            seconds = time.perf_counter() - started
            tuned = load_model(Path(tmp) / "mine.safetensors")
            after = validate_stack(held_out, tuned, source=case)
        rows.append((case, before, after, result, seconds))
        print(f"{case}: before: {before.verdict()}", flush=True)
        print(f"{case}: after {args.minutes:g} min ({result.steps} steps): {after.verdict()}")
        print(result.table(), flush=True)
    print(
        f"\nheld-out strips, validate before and after calibrating for {args.minutes:g} min "
        f"at learning rate {args.learning_rate:g}"
    )
    print(
        f"{'case':<11}{'RMZ before':>11}{'frames':>7}{'lin.':>7}{'RMZ after':>10}{'frames':>7}"
        f"{'lin.':>7}{'steps':>7}{'ceiling':>9}{'noise-free RMZ before':>23}{'after':>7}"
        f"{'lin.':>7}{'RMZ after at M before':>23}{'threshold':>11}"
    )
    for case, before, after, result, _ in rows:
        b, a = before.psnr_db(), after.psnr_db()
        ceiling = before.noise_ceiling_db()
        clean_b, clean_a = before.noise_free_psnr_db(), after.noise_free_psnr_db()
        noise = (
            f"{ceiling:>9.2f}{clean_b['recurrent_mz']:>23.2f}{clean_a['recurrent_mz']:>7.2f}"
            f"{clean_b['linear_interpolation']:>7.2f}"
            if ceiling is not None
            else f"{'-':>9}"
        )
        print(
            f"{case:<11}{b['recurrent_mz']:>11.2f}{before.frames_used:>7}"
            f"{b['linear_interpolation']:>7.2f}{a['recurrent_mz']:>10.2f}{after.frames_used:>7}"
            f"{a['linear_interpolation']:>7.2f}{result.steps:>7}{noise}"
            f"{after.recurrent_mz_psnr_at_m[before.frames_used - 1]:>23.2f}"
            f"{result.stop.relative_epsilon if result.stop else float('nan'):>11g}"
        )
    print(
        "ceiling: what the noise-free specimen itself scores against the noisy strip; "
        "noise-free: the scores with the strip's noise taken out (rmz_acq.evaluation.noise); "
        "RMZ after at M before: the calibrated replay's volume after as many frames as the "
        "first replay used (its policy may have chosen other planes); threshold: the relative "
        "change the calibrated weights stop at (calibrate's choice; the preset's is "
        f"{ScanSettings.for_model(preset).relative_epsilon:g})"
    )


if __name__ == "__main__":
    main()
