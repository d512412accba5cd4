"""Batch reconstruction of a folder of finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rmz_acq.batch import find_runs, reconstruct_runs, worker_split
from rmz_acq.errors import RmzError
from rmz_acq.io import read_zstack, write_zstack
from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.weights import load_model, save_weights
from rmz_acq.reconstruct import read_frames, reconstruct_frames
from tests.rmz_acq.test_cli_stack import rmz_acq

GRID = [2.0, 4.0, 6.0, 8.0]


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_weights(RecurrentMZ(base_channels=4, depth=2), tmp_path / "w.safetensors", name="w")


def _run(folder: Path, seed: int, report: bool = True) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    frames = (100 + 300 * rng.random((3, 24, 28))).astype(np.uint16)
    write_zstack(folder / "frames.ome.tif", frames, [3.0, 6.0, 9.0], 0.1)
    if report:
        (folder / "report.json").write_text(json.dumps({"output_planes_um": GRID}))
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    _run(root / "a", 0)
    _run(root / "b", 1)
    _run(root / "day2" / "c", 2)
    return root


def test_find_runs_takes_the_grid_from_each_report(runs: Path) -> None:
    found, skipped, unusable = find_runs(runs)
    assert [r.frames.parent.name for r in found] == ["a", "b", "c"] and skipped == unusable == []
    assert all(r.planes_um == tuple(GRID) for r in found)
    assert found[0].output == runs / "a" / "volume.ome.tif"
    own = find_runs(runs, [0.0, 1.0]).runs
    assert all(r.planes_um == (0.0, 1.0) for r in own)


def test_find_runs_bad_input(runs: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(RmzError, match=r"no frames\.ome\.tif"):
        find_runs(tmp_path / "empty")
    _run(runs / "no_report", 4, report=False)
    search = find_runs(runs)  # the run without a grid is set aside; the others go ahead
    assert [r.frames.parent.name for r in search.runs] == ["a", "b", "c"]
    assert [(p.name, "--z-range" in why) for p, why in search.unusable] == [("no_report", True)]
    assert len(find_runs(runs, GRID).runs) == 4  # a grid for all: every run
    with pytest.raises(RmzError, match="must be a file name"):
        find_runs(runs, GRID, output_name="../v.tif")


def test_worker_split_gives_each_process_its_share_of_cores() -> None:
    assert worker_split(10, cores=2) == (2, 1)
    assert worker_split(1, cores=8) == (1, 8)
    assert worker_split(10, jobs=1, cores=8) == (1, 8)
    assert worker_split(3, jobs=4, cores=16) == (3, 5)
    with pytest.raises(RmzError, match="--jobs 0"):
        worker_split(3, jobs=0)


def test_parallel_batch_equals_one_by_one_and_survives_a_bad_run(runs: Path, weights: Path) -> None:
    (runs / "broken").mkdir()
    (runs / "broken" / "frames.ome.tif").write_bytes(b"not a tiff")
    found = find_runs(runs, GRID).runs
    seen: list[int] = []
    results = reconstruct_runs(found, weights, jobs=2, on_done=lambda r, d, t: seen.append(d))
    assert seen == [1, 2, 3, 4]
    assert [r.ok for r in results] == [True, True, False, True]  # a, b, broken, day2/c
    assert "broken" in str(results[2].run.frames) and results[2].error
    model = load_model(weights)
    for result in (results[0], results[3]):
        expected = reconstruct_frames(model, read_frames(result.run.frames), np.asarray(GRID))
        volume = read_zstack(result.run.output)
        np.testing.assert_allclose(volume.data, expected, rtol=1e-5, atol=1e-3)
        assert volume.z_um == pytest.approx(GRID)


def test_cli_skips_existing_volumes_and_reports_failures(runs: Path, weights: Path) -> None:
    first = rmz_acq("reconstruct-runs", runs, "--model", weights, "--jobs", "1")
    assert first.returncode == 0, first.stderr
    assert "reconstructed 3 of 3 runs" in first.stdout
    again = rmz_acq("reconstruct-runs", runs, "--model", weights)
    assert again.returncode == 0 and again.stderr.count("skipped") == 3
    (runs / "bad").mkdir()
    (runs / "bad" / "frames.ome.tif").write_bytes(b"junk")
    (runs / "bad" / "report.json").write_text(json.dumps({"output_planes_um": GRID}))
    broken = rmz_acq("reconstruct-runs", runs, "--model", weights, "-j", "1")
    assert broken.returncode == 2
    assert "1 runs failed" in broken.stderr and "bad" in broken.stderr
    missing = rmz_acq("reconstruct-runs", runs / "nope", "--model", weights)
    assert missing.returncode == 2 and "is not a folder of runs" in missing.stderr


def test_runs_on_a_running_dask_scheduler_equal_serial(runs: Path, weights: Path) -> None:
    from distributed import LocalCluster

    found = find_runs(runs, GRID).runs
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        results = reconstruct_runs(found, weights, scheduler=cluster.scheduler_address)
    assert [r.ok for r in results] == [True, True, True]
    model = load_model(weights)
    for result in results:
        expected = reconstruct_frames(model, read_frames(result.run.frames), np.asarray(GRID))
        np.testing.assert_allclose(read_zstack(result.run.output).data, expected, rtol=1e-5)


def test_an_unreachable_scheduler_is_one_clear_line(runs: Path, weights: Path) -> None:
    result = rmz_acq(
        "reconstruct-runs", runs, "--model", weights, "--scheduler", "tcp://127.0.0.1:9"
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in lines[-1]
    assert "Traceback" not in result.stderr
    assert not list(runs.rglob("volume.ome.tif"))


def test_plane_groups_fit_a_worker() -> None:
    from rmz_acq.cluster import plane_groups_for

    gib = 1 << 30
    assert plane_groups_for(3 * gib, gib, None) == 1  # worker memory unknown: one task
    assert plane_groups_for(gib // 4, gib // 8, 4 * gib) == 1
    assert plane_groups_for(12 * gib, 2 * gib, 8 * gib) == 4  # 14 GiB over 4 GiB a group


def test_runs_split_into_plane_groups_equal_serial(runs: Path, weights: Path) -> None:
    """Groups of output planes as tasks: the same volume, a broken run reported."""
    from distributed import LocalCluster

    (runs / "broken").mkdir()
    (runs / "broken" / "frames.ome.tif").write_bytes(b"not a tiff")
    found = find_runs(runs, GRID).runs
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        for groups in (3, None):  # forced, and automatic (these runs fit: one task each)
            for run in found:
                run.output.unlink(missing_ok=True)
            results = reconstruct_runs(
                found, weights, scheduler=cluster.scheduler_address, plane_groups=groups
            )
            assert [r.ok for r in results] == [True, True, False, True], results
            model = load_model(weights)
            for result in (results[0], results[1], results[3]):
                frames = read_frames(result.run.frames)
                expected = reconstruct_frames(model, frames, np.asarray(GRID))
                volume = read_zstack(result.run.output)
                np.testing.assert_allclose(volume.data, expected, rtol=1e-5, atol=1e-3)
                assert volume.z_um == pytest.approx(GRID) and volume.pixel_size_um == 0.1
    bad = rmz_acq("reconstruct-runs", runs, "--model", weights, "--plane-groups", "0")
    assert bad.returncode == 2 and "--plane-groups must be 1 or more" in bad.stderr


def test_runs_are_reconstructed_with_the_model_their_reports_name(
    runs: Path, weights: Path, tmp_path: Path
) -> None:
    from rmz_acq.batch import model_of_runs

    found = find_runs(runs, GRID).runs
    with pytest.raises(RmzError, match="naming the model it was taken with"):
        model_of_runs(found)
    model = load_model(weights)
    named = {"name": model.name, "sha256": model.sha256, "path": str(weights)}
    for run in found:
        report = run.frames.parent / "report.json"
        data = json.loads(report.read_text()) | {"model": named}
        report.write_text(json.dumps(data))
    assert model_of_runs(found) == str(weights)
    result = rmz_acq("reconstruct-runs", runs, "-j", "1")
    assert result.returncode == 0, result.stderr
    assert f"model: {weights}" in result.stderr and "reconstructed 3 of 3" in result.stdout
    # a preset is taken by name, but only with the checksum the run recorded
    preset = load_model("beads")
    first = found[0].frames.parent / "report.json"
    first.write_text(
        json.dumps({"output_planes_um": GRID, "model": {"name": "beads", "sha256": preset.sha256}})
    )
    with pytest.raises(RmzError, match="different models"):
        model_of_runs(found)
    assert model_of_runs(found[:1]) == "beads"
    first.write_text(
        json.dumps({"output_planes_um": GRID, "model": {"name": "beads", "sha256": "0" * 64}})
    )
    with pytest.raises(RmzError, match="which is not here"):
        model_of_runs(found[:1])


def test_a_run_is_rebuilt_in_the_order_its_scan_built_its_volume(
    tmp_path: Path, weights: Path
) -> None:
    rng = np.random.default_rng(5)
    frames = (100 + 300 * rng.random((3, 24, 28))).astype(np.uint16)
    for name, order in (("taken", "as-taken"), ("sorted", "z")):
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        write_zstack(folder / "frames.ome.tif", frames, [6.0, 3.0, 9.0], 0.1)  # not in z order
        report = {"output_planes_um": GRID, "settings": {"volume_order": order}}
        (folder / "report.json").write_text(json.dumps(report))
    found = find_runs(tmp_path / "runs").runs
    assert [(r.frames.parent.name, r.order) for r in found] == [
        ("sorted", "z"),
        ("taken", "as-taken"),
    ]
    assert all(r.ok for r in reconstruct_runs(found, weights))
    model = load_model(weights)
    for run in found:
        expected = reconstruct_frames(model, read_frames(run.frames).in_order(run.order), GRID)
        np.testing.assert_allclose(read_zstack(run.output).data, expected, rtol=1e-5, atol=1e-3)
    taken, in_z = (read_zstack(r.output).data for r in reversed(found))
    assert np.abs(taken - in_z).max() > 1e-3  # the order matters, so the test can fail
