"""The shipped presets on held-out simulated volumes: measured planes and frame order.

Seeds from `EVALUATION_SEED` are never used in training or validation.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

from rmz_acq.evaluation.metrics import psnr
from rmz_acq.model.weights import load_model
from rmz_acq.session import ReconstructionSession
from rmz_acq.training.conditions import PRESET_CONDITIONS
from rmz_acq.training.data import SimulatedVolume, make_simulated_volume
from rmz_acq.training.trainer import EVALUATION_SEED

PROTOCOL_INPUTS_UM = {
    "nuclei": [3.0, 9.0, 15.0],
    "widefield": [3.0, 9.0, 15.0],
    "beads": [3.0, 6.0, 9.0],
}
# what each preset is for: its own sample, or (widefield) fields of the structure families
SPECIMENS = {
    "nuclei": {},
    "beads": {},
    "widefield": {"sample_varieties": ("structures",), "structure_families": ("cells", "tissue")},
}


def _planes_psnr(preset: str, volume: SimulatedVolume, planes: list[float], seed: int) -> float:
    """Mean PSNR over ``planes`` of the preset's volume from the protocol frames."""
    rng = np.random.default_rng(seed)
    inputs = PROTOCOL_INPUTS_UM[preset]
    frames = [volume.frame(z, rng) for z in inputs]
    result = ReconstructionSession(load_model(preset), planes, device="cpu").run(frames, inputs)
    pairs = zip(result.volume, planes, strict=True)
    return float(np.mean([psnr(v, volume.target(z)) for v, z in pairs]))


@pytest.mark.parametrize("preset", ["nuclei", "beads", "widefield"])
@pytest.mark.parametrize("seed", [EVALUATION_SEED, EVALUATION_SEED + 1])
def test_the_volume_at_an_input_plane_is_no_worse_than_the_frame(preset: str, seed: int) -> None:
    volume = make_simulated_volume(PRESET_CONDITIONS[preset], seed, 96, **SPECIMENS[preset])
    rng = np.random.default_rng(seed)
    inputs = PROTOCOL_INPUTS_UM[preset]
    frames = [volume.frame(z, rng) for z in inputs]
    planes = sorted([*inputs, 1.0, 5.0])
    result = ReconstructionSession(load_model(preset), planes, device="cpu").run(frames, inputs)
    for frame, z in zip(frames, inputs, strict=True):
        truth = volume.target(z)
        reconstructed = result.volume[planes.index(z)]
        assert np.mean((reconstructed - truth) ** 2) <= np.mean((frame - truth) ** 2), z


def test_nuclei_volume_hardly_depends_on_the_frame_order() -> None:
    """Every order of the three protocol frames within 0.6 dB (measured: 0.47 dB).

    The goal is 0.3 dB; the benchmark's 256 px volumes meet it (0.29 dB),
    this smaller field does not yet.  The first preset spread 0.66-1.5 dB
    on most held-out structures (README, Models).
    """
    volume = make_simulated_volume(PRESET_CONDITIONS["nuclei"], EVALUATION_SEED, 128)
    rng = np.random.default_rng(EVALUATION_SEED)
    inputs = PROTOCOL_INPUTS_UM["nuclei"]
    frames = [volume.frame(z, rng) for z in inputs]
    planes = [0.6, 2.0, 4.6, 6.0, 7.4, 10.6, 12.0, 13.4, 16.0, 17.4]
    truth = [volume.target(z) for z in planes]
    model = load_model("nuclei")
    scores = []
    for order in permutations(range(3)):
        session = ReconstructionSession(model, planes, device="cpu")
        result = session.run([frames[i] for i in order], [inputs[i] for i in order])
        scores.append(np.mean([psnr(a, b) for a, b in zip(result.volume, truth, strict=True)]))
    assert np.ptp(scores) <= 0.6, scores


@pytest.mark.parametrize("family", ["cells", "tissue"])
def test_widefield_is_closer_than_nuclei_on_dense_structures(family: str) -> None:
    """What `widefield` is for: fields of cells and tissue, held out (measured at
    128 px, seeds +10 and +11: cells +0.00 and +0.19 dB, tissue +0.11 and +0.36)."""
    gains = []
    for seed in (EVALUATION_SEED + 10, EVALUATION_SEED + 11):
        volume = make_simulated_volume(
            PRESET_CONDITIONS["nuclei"],
            seed,
            128,
            sample_varieties=("structures",),
            structure_families=(family,),  # type: ignore[arg-type]
        )
        planes = [0.6, 2.0, 4.6, 6.0, 7.4, 10.6, 12.0, 13.4, 16.0, 17.4]
        scores = {p: _planes_psnr(p, volume, planes, seed) for p in ("nuclei", "widefield")}
        gains.append(scores["widefield"] - scores["nuclei"])
    assert min(gains) > -0.05, gains
    assert np.mean(gains) > 0.05, gains
