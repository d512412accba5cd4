"""The live viewer follows a real scan on the simulated microscope (offscreen Qt)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from pymmcore_plus import CMMCorePlus

from rmz_acq.acquisition import AdaptiveScan, ScanPlan, ScanSettings, StopReason
from rmz_acq.io import read_zstack
from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.weights import LoadedModel, load_model, save_weights
from rmz_acq.preview.projections import render_orthoviews
from rmz_acq.preview.viewer import ScanViewer, open_run, start_scan
from rmz_acq.training.conditions import PRESET_CONDITIONS

PLANES = np.round(np.arange(0.0, 4.01, 0.25), 6)


@pytest.fixture
def tiny_model(tmp_path: Path) -> LoadedModel:
    torch.manual_seed(0)
    conditions = PRESET_CONDITIONS["beads"].model_dump()
    model = RecurrentMZ(base_channels=2, depth=2)
    return load_model(
        save_weights(model, tmp_path / "t.safetensors", name="t", conditions=conditions)
    )


def test_viewer_draws_every_update_on_the_gui_thread(
    qtbot: object, small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path
) -> None:
    plan = ScanPlan.build(PLANES, candidates_um=[0.5, 1.5, 2.5, 3.5])
    settings = ScanSettings(epsilon=0.0, decision_planes=5)  # the volume follows the verdicts
    scan = AdaptiveScan(small_core, tiny_model, plan, settings, tmp_path / "run")
    assert scan.decision is not None
    viewer = ScanViewer(0.1, epsilon=0.0)
    qtbot.addWidget(viewer)  # type: ignore[attr-defined]
    viewer.show()
    worker = start_scan(scan, viewer)
    qtbot.waitUntil(lambda: viewer.report is not None, timeout=60_000)  # type: ignore[attr-defined]
    worker.join(timeout=30)
    assert not worker.failures  # type: ignore[attr-defined]
    assert viewer.report is not None and viewer.report.stop_reason is StopReason.MAX_FRAMES
    assert viewer.updates == [(0, True), (1, True), (2, True), (3, True)]
    assert [r.index for r in viewer.decisions] == [0, 1, 2, 3]
    final = read_zstack(tmp_path / "run" / "volume.ome.tif").data
    assert viewer.volume is not None
    np.testing.assert_array_equal(viewer.volume, final)
    assert not viewer.picture.pixmap().isNull()
    marks = [f.measured_z_um for f in viewer.report.frames]
    expected, layout = render_orthoviews(final, PLANES, 0.1, marks)
    assert viewer.image is not None
    np.testing.assert_array_equal(viewer.image[: layout.height, : layout.width], expected)
    assert "stopped: max_frames after 4 frames" in viewer.status.text()

    viewer._on_decision(replace(viewer.report.frames[1], decided_on="full grid"))
    assert "frame 2 at z = " in viewer.status.text()
    assert "judged on the full grid in" in viewer.status.text()
    viewer._on_decision(replace(viewer.report.frames[1], decided_on="decision planes"))
    assert "full grid" not in viewer.status.text()

    reopened = open_run(tmp_path / "run")
    qtbot.addWidget(reopened)  # type: ignore[attr-defined]
    assert reopened.volume is not None and reopened.image is not None
    np.testing.assert_array_equal(reopened.image[: layout.height, : layout.width], expected)
