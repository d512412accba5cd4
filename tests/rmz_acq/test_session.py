from __future__ import annotations

import numpy as np
import pytest
import torch

from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.normalization import IntensityNormalization
from rmz_acq.session import ReconstructionSession, compute_dtype


def _model(seed: int = 0, depth: int = 3) -> RecurrentMZ:
    torch.manual_seed(seed)
    model = RecurrentMZ(base_channels=4, depth=depth)
    # Random weights make outputs near zero; scale the head so changes show.
    with torch.no_grad():
        model.head.weight.mul_(20)
    return model.eval()


def _frames(n: int, shape: tuple[int, int] = (40, 52), seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [100 + 50 * rng.random(shape) for _ in range(n)]


def test_streaming_equals_running_the_whole_sequence() -> None:
    model = _model()
    frames = _frames(3, (40, 48))
    z_in = [3.1, 8.7, 5.2]
    planes = [0.0, 2.5, 6.0, 9.0, 11.2]
    session = ReconstructionSession(model, planes, state_dtype=torch.float32, plane_batch=2)
    result = session.run(frames, z_in)
    norm = session.normalization
    assert norm is not None
    batch = torch.from_numpy(np.stack([norm.apply(f) for f in frames]))[None].float()
    with torch.inference_mode():
        for i, z in enumerate(planes):
            dpm = torch.tensor([[z - zi for zi in z_in]])
            expected = norm.invert(model(batch, dpm)[0, 0].numpy())
            np.testing.assert_allclose(result.volume[i], expected, rtol=1e-5, atol=1e-4)


def test_half_precision_state_stays_close_and_halves_memory() -> None:
    model = _model()
    frames, z_in, planes = _frames(3), [1.0, 4.0, 7.0], [0.0, 3.0, 6.0]
    full = ReconstructionSession(model, planes, state_dtype=torch.float32)
    half = ReconstructionSession(model, planes, state_dtype=torch.float16)
    a = full.run(frames, z_in).volume.copy()
    b = half.run(frames, z_in).volume
    assert half.state_nbytes * 2 == full.state_nbytes
    assert half.state_nbytes == half.state_nbytes_for(40, 52)
    assert np.abs(a - b).max() < 1e-2 * (np.abs(a).max() + 1e-6) + 1e-3


def test_plane_batching_does_not_change_the_volume() -> None:
    model = _model()
    frames, z_in, planes = _frames(2), [1.0, 4.0], [0.0, 1.0, 2.0, 3.0, 4.5, 6.0, 7.5]
    volumes = [
        ReconstructionSession(model, planes, plane_batch=b, state_dtype=torch.float32)
        .run(frames, z_in)
        .volume.copy()
        for b in (None, 1, 3)
    ]
    for other in volumes[1:]:
        np.testing.assert_allclose(other, volumes[0], rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="plane_batch"):
        ReconstructionSession(model, planes, plane_batch=0)


def test_bfloat16_compute_stays_close_to_float32() -> None:
    model = _model()
    frames, z_in, planes = _frames(3), [1.0, 4.0, 7.0], [0.0, 3.0, 6.0]
    exact = ReconstructionSession(model, planes, state_dtype=torch.float32)
    fast = ReconstructionSession(model, planes, compute_dtype=compute_dtype("bfloat16"))
    a = exact.run(frames, z_in).volume.copy()
    b = fast.run(frames, z_in).volume
    span = float(a.max() - a.min())
    assert b.dtype == np.float32
    assert 0 < np.abs(a - b).max() < 0.05 * span  # rounded, but the same volume
    with pytest.raises(ValueError, match="float32, bfloat16"):
        compute_dtype("float16")
    with pytest.raises(ValueError, match="not supported"):
        ReconstructionSession(model, planes, compute_dtype=torch.float16)


def test_tiles_match_the_untiled_volume() -> None:
    model = _model(depth=3)
    frames, z_in, planes = _frames(3, (150, 170)), [0.5, 2.0, 3.5], [0.0, 1.0, 2.5]
    whole = ReconstructionSession(model, planes, state_dtype=torch.float32, tile_px=0)
    tiled = ReconstructionSession(model, planes, state_dtype=torch.float32, tile_px=48)
    a = whole.run(frames, z_in).volume
    b = tiled.run(frames, z_in).volume
    assert len(tiled._tiles) > 4
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4)


def test_change_is_the_frobenius_norm_of_the_update() -> None:
    model = _model()
    session = ReconstructionSession(model, [0.0, 2.0, 4.0], state_dtype=torch.float32)
    frames = _frames(3)
    first = session.push(frames[0], 1.0)
    assert first.frobenius_change is None and first.relative_change is None
    v1 = first.volume.copy()
    second = session.push(frames[1], 3.0)
    expected = float(np.linalg.norm((second.volume - v1).ravel()))
    assert second.frobenius_change == pytest.approx(expected, rel=1e-5)
    assert second.relative_change == pytest.approx(
        expected / np.linalg.norm(second.volume.ravel()), rel=1e-5
    )
    assert second.frame_index == 1 and session.n_frames == 2
    session.reset()
    assert session.n_frames == 0 and session.volume is None


def test_fixed_normalisation_round_trips_units() -> None:
    norm = IntensityNormalization(shift=100.0, scale=50.0)
    raw = np.array([[100.0, 150.0], [125.0, 90.0]])
    np.testing.assert_allclose(norm.invert(norm.apply(raw)), raw, rtol=1e-6)
    frame = np.full((64, 64), 100.0)
    frame[20:30, 20:30] = 1000.0
    auto = IntensityNormalization.from_frame(
        frame + np.random.default_rng(0).normal(0, 1, frame.shape)
    )
    assert auto.shift == pytest.approx(100.0, abs=1.0)
    assert auto.scale == pytest.approx(900.0, rel=0.05)


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (np.zeros((5, 40, 52)), "2D"),
        (np.zeros((41, 52)), "shape"),
        (np.full((40, 52), np.nan), "NaN"),
    ],
)
def test_bad_frames_are_refused(bad: np.ndarray, fragment: str) -> None:
    session = ReconstructionSession(_model(), [0.0, 1.0])
    session.push(_frames(1)[0], 0.5)
    with pytest.raises(ValueError, match=fragment):
        session.push(bad, 1.0)
    assert session.n_frames == 1  # the refused frame left no trace


def test_bad_grids_and_sequences_are_refused() -> None:
    with pytest.raises(ValueError, match="no planes"):
        ReconstructionSession(_model(), [])
    session = ReconstructionSession(_model(), [0.0])
    with pytest.raises(ValueError, match="at least one"):
        session.run([], [])
    with pytest.raises(ValueError, match="finite"):
        session.push(_frames(1)[0], float("nan"))


def test_measured_planes_are_pulled_back_to_their_frames_only_where_needed() -> None:
    from rmz_acq.fidelity import blend_measured, noise_variance

    rng = np.random.default_rng(4)
    clean = np.full((64, 64), 100.0)
    clean[20:40, 20:40] = 400.0
    frame = clean + rng.normal(0, 5, clean.shape)
    assert noise_variance(frame) == pytest.approx(25.0, rel=0.15)
    error = lambda image: float(np.mean((image - clean) ** 2))  # noqa: E731
    # an estimate that agrees with the frame to within its noise is (nearly) kept
    good = clean + rng.normal(0, 1, clean.shape)
    assert error(blend_measured(good, frame, 25.0)) < 2 * error(good) < 0.1 * error(frame)
    # one that has gone astray (a missing object) is pulled back to the measurement
    wrong = np.full_like(clean, 100.0)
    pulled = blend_measured(wrong, frame, 25.0)
    assert error(pulled) <= error(frame) * 1.05 < error(wrong)

    # in a session: only the planes at a frame's z change, and a network
    # far from the truth is no worse than the frame there
    model = _model()
    planes = [0.0, 1.0, 2.0, 3.0]
    z_in = [1.0, 2.96]  # the second within stage error of the plane at 3 um
    frames = [frame, frame + 30]
    kept = ReconstructionSession(model, planes, keep_measured=True).run(frames, z_in).volume
    raw = ReconstructionSession(model, planes, keep_measured=False).run(frames, z_in).volume
    np.testing.assert_array_equal(kept[[0, 2]], raw[[0, 2]])
    for plane, measured in ((1, frames[0]), (3, frames[1])):
        truth = clean + (30 if plane == 3 else 0)
        assert float(np.mean((kept[plane] - truth) ** 2)) <= 1.05 * float(
            np.mean((measured - truth) ** 2)
        )
