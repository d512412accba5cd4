"""The linear blend of `rmz-acq calibrate --minutes 0`, on specimens it never saw.

    python benchmarks/bench_linear_blend.py [--model widefield] [--stacks 1]
        [--cases nuclei,tissue,cells,membranes,filaments,puncta,worm,neuron]

For every simulated case (a structure family of `bench_calibrate.py`'s
specimens, or the worm): ``calibrate`` with ``minutes=0`` on ``--stacks``
recorded stacks of that family (specimens A), which fits the filter on their
training parts and chooses the network's share by cross-fitting there (on
one stack's halves, or stack against stack); then another specimen of the
same family (B, another seed: another field of the same sample, never seen
by the calibration) is scanned sparsely (the default scan's candidates, in
its order) and reconstructed by the network alone and with the blend, both
scored against B's noise-free specimen and against B's recorded stack, mean
PSNR over the planes that were not inputs (the stack's scale), beside linear
interpolation of the same frames.

``neuron``: the real wide-field neuron of the ``flowdec`` wheel (``pip
install --no-deps flowdec==1.1.0``) has no second specimen and no
noise-free truth: its top and bottom halves are calibrated on as two fields
(their training parts) and it is scored on their held-out strips, against
the stack (what `calibrate` itself prints).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_calibrate import SEED, _stack, simulated_specimen  # beside this script
from numpy.typing import NDArray

from rmz_acq.calibration import _scan_order, calibrate
from rmz_acq.evaluation.baselines import linear_interpolation
from rmz_acq.evaluation.metrics import psnr
from rmz_acq.evaluation.report import truth_normalisation
from rmz_acq.model.weights import LoadedModel, load_model
from rmz_acq.session import ReconstructionSession

OTHER_FIELD = 1  # specimen B's seed is SEED + this


def _mean_psnr(estimate: NDArray, truth: NDArray, keep: NDArray[np.bool_]) -> float:
    norm = truth_normalisation(truth[keep])
    pairs = zip(norm.apply(estimate[keep]), norm.apply(truth[keep]), strict=True)
    return float(np.mean([psnr(a, b) for a, b in pairs]))


def score_other_field(
    model: LoadedModel, stack: NDArray, clean: NDArray, z: NDArray
) -> dict[str, dict[str, float]]:
    """Network alone, with the blend, and linear interpolation on one specimen."""
    order = _scan_order(model, z)
    frames, frames_z = stack[order], z[order]
    keep = np.ones(len(z), bool)
    keep[order] = False
    volumes = {
        "network": ReconstructionSession(dataclasses.replace(model, linear_blend=None), z)
        .run(list(frames), list(frames_z))
        .volume.copy(),
        "blend": ReconstructionSession(model, z).run(list(frames), list(frames_z)).volume.copy(),
        "linear": linear_interpolation(frames, frames_z, z),
    }
    return {
        truth_name: {name: _mean_psnr(v, truth, keep) for name, v in volumes.items()}
        for truth_name, truth in (("clean", clean), ("stack", stack))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="widefield")
    parser.add_argument(
        "--cases", default="nuclei,tissue,cells,membranes,filaments,puncta,worm,neuron"
    )
    parser.add_argument("--stacks", type=int, default=1, help="calibration stacks a case")
    args = parser.parse_args()
    preset = load_model(args.model)
    print(
        f"{args.model}: calibrate --minutes 0 on {args.stacks} specimen(s) A; PSNR (dB, mean "
        "over non-input planes) on specimen B of the same family, sparse default scan; network "
        "alone / with the blend / linear interpolation"
    )
    print(
        f"{'case':<10}{'share':>6}{'cross-fit':>10} | {'vs noise-free B: net':>21}{'blend':>7}"
        f"{'linear':>7}{'gain':>7} | {'vs recorded B: net':>19}{'blend':>7}{'linear':>7}"
        f"{'gain':>7}{'s':>5}"
    )
    for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
        started = time.perf_counter()
        if case == "neuron":  # one real stack: its top and bottom halves as two fields
            whole = _stack(case)
            rows = whole.data.shape[1] // 2
            stacks = [
                (f"neuron {half}", dataclasses.replace(whole, data=whole.data[:, part]))
                for half, part in (("top", slice(0, rows)), ("bottom", slice(rows, None)))
            ]
        else:  # seeds SEED, SEED + 2, ...: B is SEED + 1
            stacks = [
                (f"{case} {k}", simulated_specimen(case, SEED + 2 * k)[0])
                for k in range(args.stacks)
            ]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "mine.safetensors"
            result = calibrate(stacks, preset, path, minutes=0, force=True)
            tuned = load_model(path) if result.written else preset
        choice = result.blend
        assert choice is not None
        cross = choice.psnr_db[choice.weight] - choice.psnr_db[1.0]
        head = f"{case:<10}{choice.weight:>6g}{cross:>+10.2f} | "
        if case == "neuron":
            before, after = result.before, result.after
            print(
                f"{head}{'(held-out strip vs the stack)':>42} | {before.recurrent_mz:>19.2f}"
                f"{after.recurrent_mz:>7.2f}{after.linear_interpolation:>7.2f}"
                f"{after.recurrent_mz - before.recurrent_mz:>+7.2f}"
                f"{time.perf_counter() - started:>5.0f}",
                flush=True,
            )
            continue
        other, clean = simulated_specimen(case, SEED + OTHER_FIELD)
        scores = score_other_field(
            tuned, np.asarray(other.data, np.float32), clean, np.asarray(other.z_um)
        )
        c, s = scores["clean"], scores["stack"]
        print(
            f"{head}{c['network']:>21.2f}{c['blend']:>7.2f}{c['linear']:>7.2f}"
            f"{c['blend'] - c['network']:>+7.2f} | {s['network']:>19.2f}{s['blend']:>7.2f}"
            f"{s['linear']:>7.2f}{s['blend'] - s['network']:>+7.2f}"
            f"{time.perf_counter() - started:>5.0f}",
            flush=True,
        )
    print(
        "share: the network's share calibrate chose (1: no blend); cross-fit: what cross-fitting "
        "on A's training part measured for it over the network alone"
    )


if __name__ == "__main__":
    main()
