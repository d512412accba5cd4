"""Adaptive scans on the simulated microscope, through the real ``core.mda``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from pymmcore_plus import CMMCorePlus

from rmz_acq.acquisition import AdaptiveScan, ScanPlan, ScanSettings, StopReason, VolumeUpdate
from rmz_acq.acquisition.judge import GridChange, ScanJudge, Verdict
from rmz_acq.acquisition.report import ScanReport
from rmz_acq.errors import AcquisitionError, StageSafetyError
from rmz_acq.hardware import load_core
from rmz_acq.io import read_zstack
from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.weights import LoadedModel, load_model, save_weights
from rmz_acq.preview.snapshots import PreviewWriter
from rmz_acq.reconstruct import read_frames, reconstruct_file, reconstruct_frames
from rmz_acq.training.conditions import PRESET_CONDITIONS
from simulators.devices import SimulatedCamera, SimulatedFocusStage
from tests.conftest import SMALL_BEADS

OUTPUT = np.round(np.arange(0.0, 4.01, 0.25), 6)
CANDIDATES = [0.5, 1.5, 2.5, 3.5]


@pytest.fixture
def tiny_model(tmp_path: Path) -> LoadedModel:
    torch.manual_seed(0)
    model = RecurrentMZ(base_channels=2, depth=2)
    conditions = PRESET_CONDITIONS["beads"].model_dump()
    return load_model(
        save_weights(model, tmp_path / "tiny.safetensors", name="tiny", conditions=conditions)
    )


def _scan(core: CMMCorePlus, model: LoadedModel, run_dir: Path, **settings: object) -> AdaptiveScan:
    plan = ScanPlan.build(OUTPUT, candidates_um=CANDIDATES)
    return AdaptiveScan(core, model, plan, ScanSettings(**settings), run_dir)  # type: ignore[arg-type]


@pytest.mark.parametrize("decision_planes", [5, None], ids=["decide-on-5-planes", "full-grid"])
def test_epsilon_zero_takes_every_candidate_and_writes_the_run(
    small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path, decision_planes: int | None
) -> None:
    updates: list[VolumeUpdate] = []
    decided: list[int] = []
    scan = _scan(
        small_core, tiny_model, tmp_path / "run", epsilon=0.0, decision_planes=decision_planes
    )
    assert (scan.decision is None) == (decision_planes is None)
    scan.events.volumeUpdated.connect(updates.append)
    scan.events.decisionMade.connect(lambda record: decided.append(record.index))
    preview = PreviewWriter(scan)
    report = scan.run()
    assert preview.done and preview.written == tmp_path / "run" / "preview.png"
    assert decided == [u.record.index for u in updates] == [0, 1, 2, 3]
    assert report.stop_reason is StopReason.MAX_FRAMES
    assert len(report.frames) == len(CANDIDATES) == len(updates)
    assert not small_core.getShutterOpen()
    run = tmp_path / "run"
    data = json.loads((run / "report.json").read_text())
    assert data["stop_reason"] == "max_frames" and data["epsilon"] == 0.0
    assert data["model"]["sha256"] == tiny_model.sha256
    assert set(data["durations_s"]) == {
        "acquisition",
        "decision",
        "reconstruction",
        "after_last_frame",
        "total",
    }
    assert data["frames"][0]["frobenius_change"] is None
    assert all(f["frobenius_change"] > 0 for f in data["frames"][1:])
    assert all(f["decision_s"] > 0 and f["reconstruction_s"] > 0 for f in data["frames"])
    assert all(f["decision_relative_change"] > 0 for f in data["frames"][1:])
    if decision_planes is None:  # the full grid decided: the same numbers
        assert all(
            f["decision_relative_change"] == f["relative_change"] for f in data["frames"][1:]
        )
    frames = read_zstack(run / "frames.ome.tif")
    assert frames.data.shape == (4, 64, 64)
    volume = read_zstack(run / "volume.ome.tif")
    assert volume.data.shape == (len(OUTPUT), 64, 64) and volume.data.dtype == np.float32
    assert (run / "preview.png").read_bytes()[:4] == b"\x89PNG"
    # the report reads back as the scan wrote it
    again_report = ScanReport.read(run)
    assert again_report.frames == report.frames
    assert again_report.stop_reason is report.stop_reason
    assert not (run / "unused_frames.ome.tif").exists()
    # the written volume is what offline reconstruction gives from frames.ome.tif
    again = reconstruct_frames(tiny_model, read_frames(run / "frames.ome.tif"), OUTPUT)
    np.testing.assert_allclose(volume.data, again, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(("stop_at", "frames"), [("any", 2), ("even", 3)])
def test_stop_at_even_ends_the_scan_only_after_a_complete_sweep(
    small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path, stop_at: str, frames: int
) -> None:
    # every change is below 10: "any" stops at the first frame allowed (the second);
    # "even" only once the planes are evenly spaced (0.5, 2, 3.5 after three frames)
    plan = ScanPlan.build(OUTPUT, candidates_um=[0.5, 1.25, 2.0, 2.75, 3.5])
    settings = ScanSettings(relative_epsilon=10.0, next_plane="sweeps", stop_at=stop_at)
    report = AdaptiveScan(small_core, tiny_model, plan, settings, tmp_path / "run").run()
    assert report.stop_reason is StopReason.CONVERGED
    assert len(report.frames) == frames
    assert [f.commanded_z_um for f in report.frames] == [0.5, 2.0, 3.5][:frames]
    assert json.loads((tmp_path / "run" / "report.json").read_text())["settings"]["stop_at"] == (
        stop_at
    )


@pytest.mark.parametrize("decision_planes", [5, None], ids=["completed-behind", "full-grid"])
def test_volume_order_z_rebuilds_the_final_volume_sorted_by_z(
    small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path, decision_planes: int | None
) -> None:
    updates: list[VolumeUpdate] = []
    scan = _scan(
        small_core,
        tiny_model,
        tmp_path / "run",
        epsilon=0.0,
        volume_order="z",
        decision_planes=decision_planes,
    )
    assert (scan.decision is None) == (decision_planes is None)
    scan.events.volumeUpdated.connect(updates.append)
    report = scan.run()
    taken = [f.commanded_z_um for f in report.frames]
    assert taken != sorted(taken)  # bisection: the centre first
    frames = read_frames(tmp_path / "run" / "frames.ome.tif")
    volume = read_zstack(tmp_path / "run" / "volume.ome.tif").data
    # the written volume is `rmz-acq reconstruct --order z` of frames.ome.tif ...
    in_z = reconstruct_frames(tiny_model, frames.in_order("z"), OUTPUT)
    np.testing.assert_allclose(volume, in_z, rtol=1e-5, atol=1e-3)
    # ... not the volume as the frames came, which the live view showed first
    as_taken = reconstruct_frames(tiny_model, frames, OUTPUT)
    assert np.abs(as_taken - in_z).max() > 1e-2
    np.testing.assert_allclose(updates[-2].volume, as_taken, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(updates[-1].volume, volume)
    # the records keep the changes of the scan as it ran
    assert report.frames[-1].relative_change is not None
    assert json.loads((tmp_path / "run" / "report.json").read_text())["volume_order"] == "z"
    # `rmz-acq reconstruct` of a run's frames pushes them as the run's scan did
    again = reconstruct_file(
        tmp_path / "run" / "frames.ome.tif", tmp_path / "again.ome.tif", OUTPUT, tiny_model.path
    )
    np.testing.assert_allclose(read_zstack(again).data, volume, rtol=1e-5, atol=1e-3)


def test_volume_order_z_keeps_the_order_taken_beyond_the_trained_length(
    small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path
) -> None:
    # sorted by z, a sequence longer than any in training is one the network never saw
    trained_on_two = replace(
        tiny_model, metadata={**tiny_model.metadata, "training": json.dumps({"max_inputs": 2})}
    )
    assert trained_on_two.trained_frames == 2 and tiny_model.trained_frames is None
    report = _scan(
        small_core, trained_on_two, tmp_path / "run", epsilon=0.0, volume_order="z"
    ).run()
    assert len(report.frames) > 2
    written = json.loads((tmp_path / "run" / "report.json").read_text())
    assert written["volume_order"] == "as-taken" and written["settings"]["volume_order"] == "z"
    volume = read_zstack(tmp_path / "run" / "volume.ome.tif").data
    frames = read_frames(tmp_path / "run" / "frames.ome.tif")
    as_taken = reconstruct_frames(tiny_model, frames, OUTPUT)
    np.testing.assert_allclose(volume, as_taken, rtol=1e-5, atol=1e-3)
    # `rmz-acq reconstruct` of the run's frames still gives the run's volume
    again = reconstruct_file(
        tmp_path / "run" / "frames.ome.tif", tmp_path / "again.ome.tif", OUTPUT, tiny_model.path
    )
    np.testing.assert_allclose(read_zstack(again).data, volume, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("margin", [0.0, 1e9], ids=["estimate-decides", "full-grid-near"])
def test_an_estimate_near_epsilon_waits_for_the_full_grid(
    small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path, margin: float
) -> None:
    # epsilon 1e-6 never fires; a margin of 1e9 puts every estimate "near" it
    report = _scan(
        small_core,
        tiny_model,
        tmp_path / "run",
        relative_epsilon=1e-6,
        decision_planes=5,
        decision_margin=margin,
    ).run()
    first, *rest = report.frames
    assert first.decided_on == "decision planes"  # no change yet: nothing to wait for
    assert len(rest) == len(CANDIDATES) - 1
    if margin:
        # the rule judged the full grid's own change, reached by the completion
        assert all(f.decided_on == "full grid" for f in rest)
        assert [f.decision_relative_change for f in rest] == [f.relative_change for f in rest]
    else:
        assert all(f.decided_on == "decision planes" for f in rest)
        assert [f.decision_relative_change for f in rest] != [f.relative_change for f in rest]


def test_the_judge_asks_the_full_grid_only_near_the_threshold(tiny_model: LoadedModel) -> None:
    plan = ScanPlan.build(OUTPUT, candidates_um=CANDIDATES)
    frames = np.random.default_rng(0).uniform(100, 200, (2, 32, 32)).astype(np.float32)

    def verdict(epsilon: float, full: GridChange | None) -> Verdict:
        settings = ScanSettings(relative_epsilon=epsilon, decision_planes=5)
        judge = ScanJudge(tiny_model, plan, settings)
        judge.judge(0, frames[0], 0.5, full_changes=lambda: pytest.fail("asked on frame 1"))
        return judge.judge(1, frames[1], 2.5, full_changes=lambda: full)

    estimate = verdict(1e-9, GridChange(None, None, None, 0)).relative_change
    assert estimate is not None and estimate > 0
    # the estimate is far below: it stops alone
    far = verdict(estimate * 10, GridChange(None, 0.0, None, 0))
    assert far.stop is StopReason.CONVERGED and not far.full_grid
    # near: the full grid's says go on
    near = verdict(estimate * 1.1, GridChange(1.0, estimate * 2, None, 0))
    assert near.full_grid and near.stop is None and near.relative_change == estimate * 2
    cancelled = verdict(estimate * 1.1, None)  # cancelled while waiting: no full grid
    assert not cancelled.full_grid and cancelled.stop is StopReason.CONVERGED


def test_a_loose_epsilon_stops_early(
    small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path
) -> None:
    report = _scan(small_core, tiny_model, tmp_path / "run", relative_epsilon=10.0).run()
    assert report.stop_reason is StopReason.CONVERGED
    assert len(report.frames) == 2  # min_frames


def test_the_session_uses_the_measured_z(
    make_config: Callable[..., Path], tiny_model: LoadedModel, tmp_path: Path
) -> None:
    core = load_core(make_config(**SMALL_BEADS, Z__PositionErrorSigmaUm=0.1, Z__Seed=3))
    scan = _scan(core, tiny_model, tmp_path / "run", epsilon=0.0)
    report = scan.run()
    measured = [f.measured_z_um for f in report.frames]
    commanded = [f.commanded_z_um for f in report.frames]
    assert commanded == pytest.approx(scan.plan.candidates_um)
    assert not np.allclose(measured, commanded, atol=0.01)
    assert scan.session.frames_z_um == pytest.approx(measured)
    assert read_zstack(tmp_path / "run" / "frames.ome.tif").z_um == pytest.approx(measured)


def _check_partial_run(run: Path, core: CMMCorePlus, frames: int, reason: str) -> None:
    assert not core.getShutterOpen()
    report = json.loads((run / "report.json").read_text())
    assert report["stop_reason"] == reason
    assert len(report["frames"]) == frames
    assert read_zstack(run / "frames.ome.tif").data.shape[0] == frames


def test_camera_failure_mid_scan(
    small_core: CMMCorePlus,
    tiny_model: LoadedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = {"n": 0}
    original = SimulatedCamera.snap

    def flaky(self: SimulatedCamera, buffer: np.ndarray) -> object:
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("camera disconnected")
        return original(self, buffer)

    monkeypatch.setattr(SimulatedCamera, "snap", flaky)
    with pytest.raises(AcquisitionError, match="no frame"):
        _scan(small_core, tiny_model, tmp_path / "run", epsilon=0.0).run()
    _check_partial_run(tmp_path / "run", small_core, 2, "error")


def test_stage_timeout_mid_scan(
    small_core: CMMCorePlus,
    tiny_model: LoadedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    moves = {"n": 0}
    original = SimulatedFocusStage.set_position_um

    def stuck(self: SimulatedFocusStage, value: float) -> None:
        moves["n"] += 1
        if moves["n"] > 3:
            raise TimeoutError("Z stage did not reach its target in 5000 ms")
        original(self, value)

    monkeypatch.setattr(SimulatedFocusStage, "set_position_um", stuck)
    with pytest.raises(AcquisitionError, match="did not reach"):
        _scan(small_core, tiny_model, tmp_path / "run", epsilon=0.0).run()
    _check_partial_run(tmp_path / "run", small_core, 3, "error")


def test_cancel_takes_effect_within_a_frame(
    small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path
) -> None:
    scan = _scan(small_core, tiny_model, tmp_path / "run", epsilon=0.0)
    scan.events.volumeUpdated.connect(
        lambda update: scan.cancel() if update.record.index == 1 else None
    )
    report = scan.run()
    assert report.stop_reason is StopReason.CANCELLED
    _check_partial_run(tmp_path / "run", small_core, 2, "cancelled")


def test_plan_outside_the_stage_limits_moves_nothing(
    small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path
) -> None:
    small_core.setPosition(2.0)
    plan = ScanPlan.build(OUTPUT, candidates_um=[1.0, 9.0])
    with pytest.raises(StageSafetyError, match="outside the focus travel"):
        AdaptiveScan(small_core, tiny_model, plan, ScanSettings(), tmp_path / "run")
    assert small_core.getPosition() == pytest.approx(2.0)
    assert not (tmp_path / "run").exists()
