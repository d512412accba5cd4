"""The experiment viewer follows a running experiment, then browses it (offscreen Qt)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import useq
from pymmcore_plus import CMMCorePlus

from rmz_acq.acquisition import ScanSettings
from rmz_acq.experiment import Experiment
from rmz_acq.io import read_zstack
from rmz_acq.model.weights import LoadedModel
from rmz_acq.preview.experiment_viewer import ExperimentViewer, open_experiment

SEQUENCE = useq.MDASequence(
    stage_positions=[{"x": 0, "y": 0, "z": 2, "name": "a"}, {"x": 30, "y": 0, "z": 2, "name": "b"}],
    time_plan={"interval": 0, "loops": 2},
)


def test_viewer_follows_each_volume_then_browses_positions_and_time(
    qtbot: object, small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path
) -> None:
    run = tmp_path / "exp"
    experiment = Experiment(small_core, tiny_model, SEQUENCE, run, settings=ScanSettings(epsilon=0))
    viewer = ExperimentViewer(run, ["a", "b"], 2, 0.1, epsilon=0.0)
    qtbot.addWidget(viewer)  # type: ignore[attr-defined]
    viewer.attach(experiment)
    viewer.show()
    worker = threading.Thread(target=experiment.run)
    worker.start()
    qtbot.waitUntil(lambda: len(viewer.finished) == 4, timeout=60_000)  # type: ignore[attr-defined]
    worker.join(timeout=30)
    assert viewer.shown == (1, 1)  # it followed the last volume taken
    assert viewer.position.currentIndex() == 1 and viewer.time.value() == 1
    assert "4 of 4 volumes" in viewer.progress.text()
    viewer.position.setCurrentIndex(0)  # looking back stops following
    assert not viewer.follow.isChecked() and viewer.shown == (0, 1)
    expected = read_zstack(run / "p000_t0001" / "volume.ome.tif").data
    assert viewer.scan_view.volume is not None
    np.testing.assert_array_equal(viewer.scan_view.volume, expected)

    reopened = open_experiment(run)
    qtbot.addWidget(reopened)  # type: ignore[attr-defined]
    assert reopened.shown == (0, 0) and "4 of 4 volumes" in reopened.progress.text()
    assert reopened.show_volume(1, 0) and not reopened.show_volume(5, 0)
    np.testing.assert_array_equal(
        reopened.scan_view.volume, read_zstack(run / "p001_t0000" / "volume.ome.tif").data
    )
