"""``acquire --scheduler``: the full grid completed on a Dask worker, the same volume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pymmcore_plus import CMMCorePlus

from rmz_acq.acquisition import AdaptiveScan, ScanPlan, ScanSettings
from rmz_acq.io import read_zstack
from rmz_acq.model.weights import LoadedModel
from rmz_acq.preview.snapshots import PreviewWriter
from rmz_acq.reconstruct import read_frames, reconstruct_frames
from tests.conftest import SMALL_BEADS
from tests.rmz_acq.acquisition.test_scan import CANDIDATES, OUTPUT
from tests.rmz_acq.test_cli_stack import rmz_acq


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as local:
        yield local.scheduler_address


def test_a_scan_completes_on_the_cluster_with_the_local_volume(
    small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path, cluster: str
) -> None:
    from distributed import Client

    plan = ScanPlan.build(OUTPUT, candidates_um=CANDIDATES)
    settings = ScanSettings(epsilon=0.0, decision_planes=5)
    run = tmp_path / "run"
    with Client(cluster) as client:
        scan = AdaptiveScan(small_core, tiny_model, plan, settings, run, cluster=client)
        updates: list[int] = []
        scan.events.volumeUpdated.connect(lambda u: updates.append(u.record.index))
        preview = PreviewWriter(scan)
        report = scan.run()
        # the state lived on the worker: this process never pushed the full grid
        assert scan.session.n_frames == 0
    assert updates == [0, 1, 2, 3] and preview.written is not None
    volume = read_zstack(run / "volume.ome.tif").data
    expected = reconstruct_frames(tiny_model, read_frames(run / "frames.ome.tif"), OUTPUT)
    np.testing.assert_allclose(volume, expected, rtol=1e-5, atol=1e-3)
    data = json.loads((run / "report.json").read_text())
    assert data["stop_reason"] == report.stop_reason.value == "max_frames"
    changes = [f["frobenius_change"] for f in data["frames"]]
    assert changes[0] is None and all(c > 0 for c in changes[1:])
    assert all(f["reconstruction_s"] > 0 for f in data["frames"])


def test_acquire_with_an_unreachable_scheduler_is_one_line_and_takes_nothing(
    make_config, tmp_path: Path
) -> None:
    config = make_config(**SMALL_BEADS)
    out = tmp_path / "run"
    result = rmz_acq(
        "acquire", "-c", config, "-o", out, "--scheduler", "tcp://127.0.0.1:9",
        "--candidates", "1,2,3",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "frames.ome.tif").exists()


def test_an_experiment_completes_each_volume_on_the_cluster(
    small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path, cluster: str
) -> None:
    import useq
    from distributed import Client

    from rmz_acq.experiment import Experiment
    from tests.rmz_acq.experiment.test_experiment import POSITIONS

    run = tmp_path / "exp"
    sequence = useq.MDASequence(stage_positions=POSITIONS)
    with Client(cluster) as client:
        experiment = Experiment(
            small_core, tiny_model, sequence, run, settings=ScanSettings(epsilon=0.0),
            cluster=client,
        )  # fmt: skip
        report = experiment.run()
    assert [v.stop_reason for v in report.volumes] == ["max_frames", "max_frames"]
    for volume in report.volumes:
        folder = run / volume.run
        frames = read_frames(folder / "frames.ome.tif")
        planes = np.asarray(json.loads((folder / "report.json").read_text())["output_planes_um"])
        expected = reconstruct_frames(tiny_model, frames, planes)
        got = read_zstack(folder / "volume.ome.tif").data
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
        assert (folder / "preview.png").is_file()
