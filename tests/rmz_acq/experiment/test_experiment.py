"""Experiments on the simulated microscope: positions x time points, through the real core."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
import useq
from pymmcore_plus import CMMCorePlus

from rmz_acq.acquisition import ScanSettings
from rmz_acq.errors import ConfigError, StageSafetyError
from rmz_acq.experiment import Experiment, VolumeRecord
from rmz_acq.hardware import load_core
from rmz_acq.io import read_zstack
from rmz_acq.model.weights import LoadedModel
from simulators.devices import SimulatedXYStage
from tests.conftest import SMALL_BEADS
from tests.rmz_acq.test_cli_stack import rmz_acq

POSITIONS = [{"x": 0, "y": 0, "z": 2, "name": "left"}, {"x": 30, "y": 0, "z": 2, "name": "right"}]
TWO_BY_TWO = useq.MDASequence(stage_positions=POSITIONS, time_plan={"interval": 0.5, "loops": 2})


def _zarr(run: Path, image: str) -> tuple[np.ndarray, dict]:
    array = ts.open(
        {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(run / image / "0")}}
    ).result()
    meta = json.loads((run / image / "zarr.json").read_text())["attributes"]["ome"]
    return array.read().result(), meta["multiscales"][0]


def test_two_positions_two_time_points_end_to_end(
    small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path
) -> None:
    run = tmp_path / "exp"
    finished: list[VolumeRecord] = []
    experiment = Experiment(
        small_core, tiny_model, TWO_BY_TWO, run, settings=ScanSettings(epsilon=0.0)
    )
    experiment.events.volumeFinished.connect(finished.append)
    report = experiment.run()
    assert report.stop_reason == "completed" and report.finished
    assert {(v.p, v.t) for v in finished} == {(0, 0), (1, 0), (0, 1), (1, 1)}
    data = json.loads((run / "experiment.json").read_text())
    assert data["sequence"]["time_plan"]["loops"] == 2
    assert [(v["p"], v["t"]) for v in data["volumes"]] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    for volume in data["volumes"]:
        assert set(volume) >= {"p", "t", "position_um", "started_s", "run", "stop_reason"}
        assert volume["stop_reason"] == "max_frames" and volume["frames"] >= 2
        assert volume["run"] == f"p{volume['p']:03d}_t{volume['t']:04d}"
        assert (run / volume["run"] / "report.json").is_file()
    assert data["volumes"][2]["started_s"] >= 0.5  # the second time point waited for its time
    assert data["volumes"][1]["position_um"] == {"x": 30.0, "y": 0.0, "z": 2.0}
    assert set(data["lateness"]) == {"late_time_points", "max_late_s", "mean_late_s"}
    # volumes.ome.zarr: one image per position, t z y x, the run folders' volumes
    for p, name in enumerate(["left", "right"]):
        array, multiscale = _zarr(run / "volumes.ome.zarr", name)
        assert [a["name"] for a in multiscale["axes"]] == ["t", "z", "y", "x"]
        assert [a.get("unit") for a in multiscale["axes"][1:]] == ["micrometer"] * 3
        scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
        assert scale == pytest.approx([0.5, 0.1, 0.1, 0.1])
        for t in range(2):
            volume = read_zstack(run / f"p{p:03d}_t{t:04d}" / "volume.ome.tif")
            assert array.shape[1:] == volume.data.shape
            np.testing.assert_array_equal(array[t], volume.data)
    # the two positions see other structure: the same plane's frames differ beyond noise
    left = read_zstack(run / "p000_t0000" / "frames.ome.tif").data[0].astype(float)
    right = read_zstack(run / "p001_t0000" / "frames.ome.tif").data[0].astype(float)
    again = read_zstack(run / "p000_t0001" / "frames.ome.tif").data[0].astype(float)
    assert np.abs(left - right).mean() > 3 * np.abs(left - again).mean()
    stage = small_core.getXYPosition()
    assert stage == pytest.approx((30.0, 0.0))


def test_a_failing_position_is_recorded_and_skipped(
    small_core: CMMCorePlus,
    tiny_model: LoadedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = SimulatedXYStage.set_position_um

    def stuck_on_the_right(self: SimulatedXYStage, x: float, y: float) -> None:
        if x > 10:
            raise TimeoutError("XY stage did not reach its target in 5000 ms")
        original(self, x, y)

    monkeypatch.setattr(SimulatedXYStage, "set_position_um", stuck_on_the_right)
    run = tmp_path / "exp"
    report = Experiment(
        small_core, tiny_model, TWO_BY_TWO, run, settings=ScanSettings(epsilon=0.0)
    ).run()
    assert report.stop_reason == "completed"
    outcome = {(v.p, v.t): v for v in report.volumes}
    assert len(outcome) == 4
    for t in range(2):
        assert outcome[(0, t)].stop_reason == "max_frames" and outcome[(0, t)].in_zarr
        assert outcome[(1, t)].stop_reason == "error"
        assert "did not reach its target" in (outcome[(1, t)].error or "")
    right, _ = _zarr(run / "volumes.ome.zarr", "right")
    assert not right.any()  # never made: read as 0, and experiment.json says so
    left, _ = _zarr(run / "volumes.ome.zarr", "left")
    assert left[1].any()


def test_on_error_stop_ends_the_experiment_at_the_failure(
    small_core: CMMCorePlus,
    tiny_model: LoadedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def stuck(self: SimulatedXYStage, x: float, y: float) -> None:
        raise TimeoutError("XY stage did not reach its target")

    monkeypatch.setattr(SimulatedXYStage, "set_position_um", stuck)
    report = Experiment(
        small_core,
        tiny_model,
        TWO_BY_TWO,
        tmp_path / "exp",
        settings=ScanSettings(epsilon=0.0),
        on_error="stop",
    ).run()
    assert report.stop_reason == "error"
    assert len(report.volumes) == 1 and "p000_t0000" in (report.error or "")


def test_cancel_mid_experiment_keeps_everything_taken(
    small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path
) -> None:
    run = tmp_path / "exp"
    experiment = Experiment(
        small_core, tiny_model, TWO_BY_TWO, run, settings=ScanSettings(epsilon=0.0)
    )
    experiment.events.volumeStarted.connect(
        lambda started: started.scan.events.decisionMade.connect(
            lambda record: (
                experiment.cancel()
                if started.record.run == "p001_t0000" and record.index == 0
                else None
            )
        )
    )
    report = experiment.run()
    assert report.stop_reason == "cancelled" and report.finished
    assert [v.run for v in report.volumes] == ["p000_t0000", "p001_t0000"]
    assert report.volumes[1].stop_reason == "cancelled"
    assert read_zstack(run / "p001_t0000" / "frames.ome.tif").data.shape[0] == 1
    data = json.loads((run / "experiment.json").read_text())
    assert data["stop_reason"] == "cancelled" and data["finished"]
    left, _ = _zarr(run / "volumes.ome.zarr", "left")
    assert left[0].any() and not left[1].any()


@pytest.mark.parametrize(
    ("positions", "limits", "message"),
    [
        ([{"x": 600, "y": 0, "name": "far"}], None, "far (x 600, y 0)"),
        ([{"x": 0, "y": 40, "name": "up"}], ((-50.0, 50.0), (-20.0, 20.0)), "up (x 0, y 40)"),
        ([{"x": 0, "y": 0, "z": 30, "name": "deep"}], None, "focus planes of 1 position"),
    ],
    ids=["beyond-the-stage", "beyond-the-user-limits", "focus-too-deep"],
)
def test_positions_outside_the_travel_are_refused_before_anything_moves(
    small_core: CMMCorePlus,
    tiny_model: LoadedModel,
    tmp_path: Path,
    positions: list[dict],
    limits: tuple | None,
    message: str,
) -> None:
    before = small_core.getXYPosition(), small_core.getPosition()
    with pytest.raises(StageSafetyError, match="nothing moved") as info:
        Experiment(
            small_core,
            tiny_model,
            useq.MDASequence(stage_positions=positions),
            tmp_path / "exp",
            xy_limits_um=limits,
        )
    assert message in str(info.value)
    assert (small_core.getXYPosition(), small_core.getPosition()) == before
    assert not (tmp_path / "exp").exists()


def test_xy_positions_need_an_xy_stage(
    make_config: Callable[..., Path], tiny_model: LoadedModel, tmp_path: Path
) -> None:
    config = make_config(**SMALL_BEADS)
    lines = config.read_text().splitlines(keepends=True)
    config.write_text("".join(line for line in lines if ",XY" not in line))
    with pytest.raises(ConfigError, match="no XY stage"):
        Experiment(load_core(config), tiny_model, TWO_BY_TWO, tmp_path / "exp")


def test_acquire_sequence_from_the_command_line(
    make_config: Callable[..., Path], tiny_model: LoadedModel, tmp_path: Path
) -> None:
    config = make_config(**SMALL_BEADS)
    sequence = tmp_path / "experiment.yaml"
    sequence.write_text(TWO_BY_TWO.yaml())
    base = ("--config", config, "-m", tiny_model.path, "--sequence", sequence)
    planned = rmz_acq("acquire", *base, "-o", tmp_path / "plan", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "2 position(s) x 2 time point(s) = 4 volumes, every 0.5 s" in planned.stdout
    assert "right: x 30, y 0, z 2" in planned.stdout
    run = tmp_path / "exp"
    result = rmz_acq("acquire", *base, "-o", run, "--epsilon", "0")
    assert result.returncode == 0, result.stderr
    assert "completed: 4 of 4 volumes" in result.stdout
    assert "p001_t0001: max_frames" in result.stderr
    again = rmz_acq("acquire", *base, "-o", run, "--epsilon", "0")
    assert again.returncode == 2 and "is not empty" in again.stderr
    clash = rmz_acq("acquire", *base, "-o", tmp_path / "c", "--candidates", "1,2")
    assert clash.returncode == 2 and "--candidates cannot be used with --sequence" in clash.stderr
    overwrite = rmz_acq("acquire", *base, "-o", run, "--epsilon", "0", "--overwrite")
    assert overwrite.returncode == 0, overwrite.stderr
