"""End-to-end: the shipped presets scanning the shipped simulated configs (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rmz_acq.acquisition import AdaptiveScan, ScanPlan, ScanSettings, StopReason
from rmz_acq.acquisition.stop_rules import evenly_spaced
from rmz_acq.hardware import load_core
from rmz_acq.io import read_zstack
from rmz_acq.model.weights import load_model
from rmz_acq.reconstruct import read_frames, reconstruct_frames
from tests.conftest import CONFIGS


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "preset"),
    [("simulated_worm.cfg", "nuclei"), ("simulated_beads.cfg", "beads")],
    ids=["worm", "beads"],
)
def test_the_default_scan_stops_on_its_rule(tmp_path: Path, config: str, preset: str) -> None:
    """What `rmz-acq acquire` does by default: the model's plan and rule, decision planes."""
    core = load_core(CONFIGS / config)
    core.setProperty("Camera", "Width", "128")
    core.setProperty("Camera", "Height", "128")
    model = load_model(preset)
    plan = ScanPlan.for_model(model)
    settings = ScanSettings.for_model(model)
    scan = AdaptiveScan(core, model, plan, settings, tmp_path / "run")
    assert scan.decision is not None  # the rule judges a few planes, the rest come after
    report = scan.run()
    assert report.stop_reason is StopReason.CONVERGED
    assert 2 <= len(report.frames) < len(plan.candidates_um)
    if settings.stop_at == "even":  # it stopped where its planes are a fixed z-stack's
        taken = [f.commanded_z_um for f in report.frames]
        assert evenly_spaced(taken, min(plan.candidates_um), max(plan.candidates_um))
    # the volume on disk is what offline reconstruction makes of frames.ome.tif
    volume = read_zstack(tmp_path / "run" / "volume.ome.tif").data
    planes = np.asarray(plan.output_planes_um)
    frames = read_frames(tmp_path / "run" / "frames.ome.tif").in_order(settings.volume_order)
    again = reconstruct_frames(model, frames, planes)
    np.testing.assert_allclose(volume, again, rtol=1e-4, atol=1e-2)
    data = json.loads((tmp_path / "run" / "report.json").read_text())
    assert data["stop_reason"] == "converged" and data["epsilon"] == settings.relative_epsilon
    last = data["frames"][-1]
    assert last["decision_relative_change"] <= settings.relative_epsilon
    estimated = [f for f in data["frames"] if f["decided_on"] == "decision planes"]
    waited = [f for f in data["frames"] if f["decided_on"] == "full grid"]
    assert estimated and len(estimated) + len(waited) == len(data["frames"])
    # Deciding on a few planes costs less than updating every plane. Compared
    # over the scan: the completion runs on another thread of the same cores,
    # so a single frame's decision can be slowed past its own full update.
    assert sum(f["decision_s"] for f in estimated) < sum(f["reconstruction_s"] for f in estimated)
    # near the threshold the rule judged the full grid's own change
    assert all(f["decision_relative_change"] == f["relative_change"] for f in waited)
    assert data["durations_s"]["after_last_frame"] > 0
