"""Intensity normalisation: which statistics, and what follows from them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rmz_acq.model.network import NetworkConfig, RecurrentMZ
from rmz_acq.model.normalization import (
    INTENSITY_METHODS,
    IntensityNormalization,
    fixed_normalization,
)
from rmz_acq.model.weights import load_model, save_weights
from rmz_acq.session import ReconstructionSession
from rmz_acq.training.conditions import PRESET_CONDITIONS
from rmz_acq.training.data import make_simulated_volume


def _frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = 100 + rng.normal(0, 3, (48, 56))
    frame[10:20, 12:30] += 400.0
    return frame


@pytest.mark.parametrize("method", INTENSITY_METHODS)
@pytest.mark.parametrize(("gain", "offset"), [(3.0, 0.0), (0.25, 500.0), (1.0, -90.0)])
def test_statistics_follow_gain_and_offset(method: str, gain: float, offset: float) -> None:
    frame = _frame()
    base = IntensityNormalization.from_frame(frame, method=method)  # type: ignore[arg-type]
    moved = IntensityNormalization.from_frame(gain * frame + offset, method=method)  # type: ignore[arg-type]
    assert moved.shift == pytest.approx(gain * base.shift + offset, rel=1e-6, abs=1e-6)
    assert moved.scale == pytest.approx(gain * base.scale, rel=1e-6)


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="energy"):
        IntensityNormalization.from_frame(_frame(), method="median")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("preset", "focus_um"), [("nuclei", (0, 3, 9, 15, 18)), ("beads", (0, 1, 3, 6, 9, 10))]
)
def test_energy_statistics_barely_depend_on_the_focus(
    preset: str, focus_um: tuple[float, ...]
) -> None:
    """Whichever frame of a stack comes first sets nearly the same scale."""
    volume = make_simulated_volume(PRESET_CONDITIONS[preset], 20000, 128)
    rng = np.random.default_rng(0)
    frames = [volume.frame(float(z), rng) for z in focus_um]

    def spread(method: str) -> float:
        scales = [
            IntensityNormalization.from_frame(f, method=method).scale  # type: ignore[arg-type]
            for f in frames
        ]
        return max(scales) / min(scales)

    # measured: nuclei 1.86 against 6.1, beads 1.20 against 98
    assert spread("energy") < 2.0
    assert spread("triangle") > 3 * spread("energy")


def _model(intensity: str) -> RecurrentMZ:
    torch.manual_seed(0)
    model = RecurrentMZ(base_channels=4, depth=2, intensity=intensity)  # type: ignore[arg-type]
    with torch.no_grad():
        model.head.weight.mul_(20)
    return model.eval()


@pytest.mark.parametrize("intensity", INTENSITY_METHODS)
@pytest.mark.parametrize(("gain", "offset"), [(4.0, 0.0), (0.5, 300.0), (2.0, -80.0)])
def test_rescaled_frames_give_the_rescaled_volume(
    intensity: str, gain: float, offset: float
) -> None:
    frames = [_frame(s) for s in range(3)]
    z = [1.0, 4.0, 2.5]
    planes = [0.0, 1.0, 2.0, 3.5, 5.0]
    model = _model(intensity)
    base = ReconstructionSession(model, planes, device="cpu").run(frames, z).volume.copy()
    moved = (
        ReconstructionSession(model, planes, device="cpu")
        .run([gain * f + offset for f in frames], z)
        .volume
    )
    span = float(np.ptp(gain * base + offset))
    assert np.abs(moved - (gain * base + offset)).max() <= 0.01 * span


def test_shipped_preset_is_equivariant_too() -> None:
    model = load_model("nuclei")
    volume = make_simulated_volume(PRESET_CONDITIONS["nuclei"], 20001, 64)
    rng = np.random.default_rng(1)
    z = [3.0, 9.0, 15.0]
    frames = [volume.frame(zi, rng) for zi in z]
    planes = [0.0, 6.0, 12.0]
    base = ReconstructionSession(model, planes, device="cpu").run(frames, z).volume.copy()
    moved = ReconstructionSession(model, planes, device="cpu").run([3 * f + 50 for f in frames], z)
    span = float(np.ptp(3 * base + 50))
    assert np.abs(moved.volume - (3 * base + 50)).max() <= 0.01 * span


def test_the_method_travels_with_the_weights(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for method in INTENSITY_METHODS:
        path = save_weights(_model(method), tmp_path / f"{method}.safetensors", name=method)
        assert load_model(path).model.config.intensity == method
    # Weights written before the choice existed were trained on the triangle method.
    legacy = {"base_channels": "4", "depth": "2", "norm": "none", "dpm_scale_um": "5.0"}
    assert NetworkConfig.from_dict(legacy).intensity == "triangle"
    with pytest.raises(ValueError, match="intensity"):
        NetworkConfig.from_dict({**legacy, "intensity": "median"})


def test_energy_values_are_compressed_above_a_few_and_invert_exactly() -> None:
    frame = np.full((64, 64), 100.0) + np.random.default_rng(2).normal(0, 2, (64, 64))
    frame[30:33, 30:33] += 2000.0  # one bright object in a dark field
    norm = IntensityNormalization.from_frame(frame, method="energy")
    assert norm.compression > 0
    linear = (frame - norm.shift) / norm.scale
    assert linear.max() > 100  # far outside what dense training fields show
    squeezed = norm.apply(frame)
    assert squeezed.max() < 20
    # near the background the map is still linear
    np.testing.assert_allclose(squeezed[:10, :10], linear[:10, :10], rtol=0.02, atol=0.02)
    np.testing.assert_allclose(norm.invert(squeezed), frame, rtol=1e-4)
    # a runaway network output is clipped, not turned into inf
    assert np.isfinite(norm.invert(np.array([1e6], np.float32))).all()


@pytest.mark.parametrize("method", INTENSITY_METHODS)
def test_stack_statistics_do_not_depend_on_the_order_and_follow_gain_and_offset(
    method: str,
) -> None:
    frames = [_frame(s) + 40.0 * s for s in range(3)]  # haze that grows with depth
    stack = IntensityNormalization.from_frames(frames, method=method)  # type: ignore[arg-type]
    for order in ([2, 1, 0], [1, 0, 2]):
        again = IntensityNormalization.from_frames([frames[i] for i in order], method=method)  # type: ignore[arg-type]
        assert again.shift == pytest.approx(stack.shift, rel=1e-12)
        assert again.scale == pytest.approx(stack.scale, rel=1e-12)
    # not the first frame's statistics, whichever that is
    assert all(IntensityNormalization.from_frame(f, method=method) != stack for f in frames)  # type: ignore[arg-type]
    moved = IntensityNormalization.from_frames([3 * f - 40 for f in frames], method=method)  # type: ignore[arg-type]
    assert moved.shift == pytest.approx(3 * stack.shift - 40, rel=1e-6, abs=1e-6)
    assert moved.scale == pytest.approx(3 * stack.scale, rel=1e-6)


def test_stack_statistics_of_large_stacks_use_a_stride_and_bad_stacks_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rmz_acq.model import normalization

    frames = [_frame(s) for s in range(4)]
    full = IntensityNormalization.from_frames(frames, method="energy")
    monkeypatch.setattr(normalization, "POOLED_PIXELS", 2000)  # 4 x 48 x 56 = 10752 pixels
    strided = IntensityNormalization.from_frames(frames, method="energy")
    assert strided != full
    assert strided.scale == pytest.approx(full.scale, rel=0.1)
    with pytest.raises(ValueError, match="no frames"):
        IntensityNormalization.from_frames([], method="energy")
    with pytest.raises(ValueError, match="differ in size"):
        IntensityNormalization.from_frames([frames[0], frames[1][:40]], method="energy")


def test_fixed_normalization_names_whose_statistics() -> None:
    frames = [_frame(s) + 40.0 * s for s in range(3)]
    assert fixed_normalization(frames, "energy", "first") is None  # the session takes the first
    assert fixed_normalization(frames, "energy", "all") == IntensityNormalization.from_frames(
        frames, method="energy"
    )
    with pytest.raises(ValueError, match="normalization 'last' is not one of first, all"):
        fixed_normalization(frames, "energy", "last")
