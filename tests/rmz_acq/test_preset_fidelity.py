"""The shipped presets on held-out simulated volumes: measured planes and frame order.

Seeds from `EVALUATION_SEED` are never used in training or validation.
"""

from __future__ import annotations

from itertools import permutations
from typing import Any

import numpy as np
import pytest

from rmz_acq.evaluation.metrics import psnr
from rmz_acq.model.weights import load_model
from rmz_acq.session import ReconstructionSession
from rmz_acq.training.conditions import PRESET_CONDITIONS
from rmz_acq.training.data import make_simulated_volume
from rmz_acq.training.trainer import EVALUATION_SEED

PROTOCOL_INPUTS_UM = {"nuclei": [3.0, 9.0, 15.0], "beads": [3.0, 6.0, 9.0]}


@pytest.mark.parametrize("preset", ["nuclei", "beads"])
@pytest.mark.parametrize("seed", [EVALUATION_SEED, EVALUATION_SEED + 1])
def test_the_volume_at_an_input_plane_is_no_worse_than_the_frame(preset: str, seed: int) -> None:
    volume = make_simulated_volume(PRESET_CONDITIONS[preset], seed, 96)
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
    """Every order of the three protocol frames within 0.45 dB (measured: 0.27 dB).

    The goal is 0.3 dB.  Stage 13 missed it here by a little (the network
    alone: 0.46 dB; with its linear blend and the blend's bank: 0.32 dB);
    stage 14, trained through the blend and blended at half, is within it.
    The first preset spread 0.66-1.5 dB on most held-out structures (the
    README's Models table at commit d100542).
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
    assert np.ptp(scores) <= 0.45, scores


# The structures `widefield` was made for: held-out fields of cells and of tissue (128 px), each
# reconstructed by both presets sharing its optics from the protocol frames.
DENSE = [(family, EVALUATION_SEED + k) for family in ("cells", "tissue") for k in (10, 11)]
SCORED_UM = [0.6, 2.0, 4.6, 6.0, 7.4, 10.6, 12.0, 13.4, 16.0, 17.4]


@pytest.fixture(scope="module")
def dense_volumes() -> list[dict[str, Any]]:
    inputs = PROTOCOL_INPUTS_UM["nuclei"]
    planes = sorted([*SCORED_UM, *inputs])
    models = {name: load_model(name) for name in ("nuclei", "widefield")}
    cases = []
    for family, seed in DENSE:
        volume = make_simulated_volume(
            PRESET_CONDITIONS["widefield"],
            seed,
            128,
            sample_varieties=("structures",),
            structure_families=(family,),  # type: ignore[arg-type]
        )
        rng = np.random.default_rng(seed)
        frames = [volume.frame(z, rng) for z in inputs]
        truth = {z: volume.target(z) for z in planes}
        built = {
            name: ReconstructionSession(model, planes, device="cpu").run(frames, inputs).volume
            for name, model in models.items()
        }
        cases.append({"family": family, "frames": frames, "truth": truth, "built": built})
    return cases


def test_widefield_at_an_input_plane_is_no_worse_than_the_frame(
    dense_volumes: list[dict[str, Any]],
) -> None:
    inputs = PROTOCOL_INPUTS_UM["nuclei"]
    planes = sorted([*SCORED_UM, *inputs])
    for case in dense_volumes:
        for frame, z in zip(case["frames"], inputs, strict=True):
            truth = case["truth"][z]
            reconstructed = case["built"]["widefield"][planes.index(z)]
            error = np.mean((reconstructed - truth) ** 2)
            assert error <= np.mean((frame - truth) ** 2), (case["family"], z)


@pytest.mark.parametrize("family", ["cells", "tissue"])
def test_neither_gfp_preset_dominates_on_dense_structures(
    family: str, dense_volumes: list[dict[str, Any]]
) -> None:
    """What the README's "Which preset" says of cells and tissue: validate both.

    Measured over the non-input planes, seeds +10 and +11, `widefield` minus
    `nuclei` stage 14: cells -0.31 and +0.42 dB, tissue -0.42 and +0.04.
    Until stage 14 `widefield` was ahead or level on all four (stage 13 with the
    blend's bank: cells -0.01 and +0.15, tissue +0.03 and +0.22); on the
    eight held-out volumes a row of the README's table it is ahead on the
    truth's scale by 0.20 ± 0.12 (cells) and 0.39 ± 0.23 dB (tissue), level
    per volume on cells.  Should one preset come out ahead on every field,
    or either fall behind by half a decibel, that advice is out of date.
    """
    planes = sorted([*SCORED_UM, *PROTOCOL_INPUTS_UM["nuclei"]])
    gains = []
    for case in (c for c in dense_volumes if c["family"] == family):
        score = {
            name: np.mean([psnr(built[planes.index(z)], case["truth"][z]) for z in SCORED_UM])
            for name, built in case["built"].items()
        }
        gains.append(score["widefield"] - score["nuclei"])
    assert max(abs(g) for g in gains) < 0.5, gains
    assert min(gains) < 0 < max(gains), gains
