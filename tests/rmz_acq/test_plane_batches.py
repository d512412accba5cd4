"""A batch of output planes at a time: the same volume in a fraction of the memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pymmcore_plus import CMMCorePlus

from rmz_acq.acquisition import AdaptiveScan, ScanPlan, ScanSettings
from rmz_acq.io import read_zstack
from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.normalization import IntensityNormalization
from rmz_acq.model.weights import LoadedModel, load_model, save_weights
from rmz_acq.plane_batches import reconstruct_by_plane_batches
from rmz_acq.reconstruct import FrameSet, read_frames, reconstruct_frames
from rmz_acq.session import ReconstructionSession
from rmz_acq.training.conditions import PRESET_CONDITIONS

PLANES = np.round(np.arange(0.0, 4.01, 0.1), 6)  # 41 planes


@pytest.fixture
def tiny(tmp_path: Path) -> LoadedModel:
    torch.manual_seed(0)
    conditions = PRESET_CONDITIONS["beads"].model_dump() | {"depth_um": 4.0}
    model = RecurrentMZ(base_channels=2, depth=2)
    return load_model(
        save_weights(model, tmp_path / "t.safetensors", name="t", conditions=conditions)
    )


def _frames() -> tuple[list[np.ndarray], list[float]]:
    rng = np.random.default_rng(1)
    frames = [(200 + 400 * rng.random((48, 40))).astype(np.float32) for _ in range(4)]
    return frames, [2.0, 0.5, 3.5, 1.2]  # 2.0 and 0.5 lie on output planes (measured there)


def test_plane_batches_give_the_streaming_volume_and_changes(tiny: LoadedModel) -> None:
    frames, z = _frames()
    streaming = ReconstructionSession(tiny, PLANES)
    changes, relative = [], []
    for frame, zi in zip(frames, z, strict=True):
        result = streaming.push(frame, zi)
        changes.append(result.frobenius_change)
        relative.append(result.relative_change)
    for batch in (1, 7, 41):
        built = reconstruct_by_plane_batches(tiny, frames, z, PLANES, batch_planes=batch)
        np.testing.assert_allclose(built.volume, streaming.volume, rtol=1e-5, atol=1e-3)
        assert built.frobenius_changes[0] is None and built.relative_changes[0] is None
        np.testing.assert_allclose(built.frobenius_changes[1:], changes[1:], rtol=1e-4)
        np.testing.assert_allclose(built.relative_changes[1:], relative[1:], rtol=1e-4)


def test_reconstruct_builds_by_plane_batches_when_the_state_does_not_fit(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames, z = _frames()
    frame_set = FrameSet(np.stack(frames), np.asarray(z), 0.1)
    whole = reconstruct_frames(tiny, frame_set, PLANES)
    session = ReconstructionSession(tiny, PLANES)
    state = session.state_nbytes_for(48, 40)
    host = len(PLANES) * 48 * 40 * 4 + np.stack(frames).nbytes
    free = int((host + state / 3) / 0.8)  # a third of the state fits beside the volume
    monkeypatch.setattr("rmz_acq.safety.available_memory_bytes", lambda device="cpu": free)
    assert 1 <= session.plane_batch_that_fits(48, 40, extra_host_bytes=np.stack(frames).nbytes) < 41  # type: ignore[operator]
    batched = reconstruct_frames(tiny, frame_set, PLANES)
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-3)
    # a z-stack keeps its statistics of all the frames when built a batch at a time
    batched_z = reconstruct_frames(tiny, frame_set.in_order("z"), PLANES)
    monkeypatch.undo()
    np.testing.assert_allclose(
        batched_z, reconstruct_frames(tiny, frame_set.in_order("z"), PLANES), rtol=1e-5, atol=1e-3
    )
    monkeypatch.setattr("rmz_acq.safety.available_memory_bytes", lambda device="cpu": free)
    monkeypatch.setattr("rmz_acq.safety.available_memory_bytes", lambda device="cpu": host)
    with pytest.raises(Exception, match="need about"):  # not even one plane beside the volume
        reconstruct_frames(tiny, frame_set, PLANES)


def test_a_z_stack_is_normalised_by_all_its_frames_whatever_their_order(
    tiny: LoadedModel,
) -> None:
    frames, z = _frames()
    frames = [f + 60.0 * i for i, f in enumerate(frames)]  # haze that differs frame to frame
    stack = FrameSet(np.stack(frames), np.asarray(z), 0.1).in_order("z")
    assert stack.stack_statistics and list(stack.z_um) == sorted(z)
    volume = reconstruct_frames(tiny, stack, PLANES)
    # the same stack stored in another order
    shuffled = FrameSet(np.stack(frames[::-1]), np.asarray(z[::-1]), 0.1).in_order("z")
    np.testing.assert_array_equal(reconstruct_frames(tiny, shuffled, PLANES), volume)
    # normalised by the statistics of all four frames, not by the lowest one's
    pooled = IntensityNormalization.from_frames(frames, method=tiny.model.config.intensity)
    expected = ReconstructionSession(tiny, PLANES, normalization=pooled).run(
        list(stack.frames), list(stack.z_um)
    )
    np.testing.assert_allclose(volume, expected.volume, rtol=1e-5, atol=1e-3)
    first = ReconstructionSession(tiny, PLANES).run(list(stack.frames), list(stack.z_um))
    assert np.abs(first.volume - volume).max() > 1e-2


@pytest.mark.parametrize("order", ["as-taken", "z"])
def test_a_scan_whose_state_does_not_fit_builds_its_volume_after_stopping(
    small_core: CMMCorePlus,
    tiny: LoadedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    order: str,
) -> None:
    session = ReconstructionSession(tiny, PLANES)
    state = session.state_nbytes_for(64, 64)
    host = len(PLANES) * 64 * 64 * 4 + 4 * 64 * 64 * 4
    free = int((host + state / 4) / 0.8)
    monkeypatch.setattr("rmz_acq.safety.available_memory_bytes", lambda device="cpu": free)
    plan = ScanPlan.build(PLANES, candidates_um=[0.5, 1.5, 2.5, 3.5])
    run = tmp_path / "run"
    settings = ScanSettings(epsilon=0.0, volume_order=order)  # type: ignore[arg-type]
    scan = AdaptiveScan(small_core, tiny, plan, settings, run)
    assert scan.plane_batch is not None and scan.plane_batch < len(PLANES)
    assert any("planes at a time" in w for w in scan.warnings)
    updates: list[int] = []
    scan.events.volumeUpdated.connect(lambda u: updates.append(u.record.index))
    report = scan.run()
    # one volume once the scan has stopped (and the one sorted by z after it)
    assert updates == ([3] if order == "as-taken" else [3, 3])
    assert all(f.decision_s is not None for f in report.frames)
    assert all(f.relative_change is not None for f in report.frames[1:])
    volume = read_zstack(run / "volume.ome.tif").data
    again = reconstruct_frames(tiny, read_frames(run / "frames.ome.tif").in_order(order), PLANES)
    np.testing.assert_allclose(volume, again, rtol=1e-5, atol=1e-3)
