"""End-to-end: the shipped presets scanning the shipped simulated configs (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rmz_acq.acquisition import AdaptiveScan, ScanPlan, ScanSettings, StopReason
from rmz_acq.hardware import load_core
from rmz_acq.io import read_zstack
from rmz_acq.model.weights import load_model
from rmz_acq.reconstruct import read_frames, reconstruct_frames
from tests.conftest import CONFIGS

CASES = [
    # config, preset, output grid, candidates every 1.5 um
    ("simulated_worm.cfg", "nuclei", (0.0, 18.0, 0.2), [3.0 + 1.5 * i for i in range(9)]),
    ("simulated_beads.cfg", "beads", (0.0, 10.0, 0.1), [1.5 + 1.0 * i for i in range(8)]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("config", "preset", "grid", "candidates"), CASES, ids=["worm", "beads"])
def test_adaptive_scan_stops_early_with_the_default_rule(
    tmp_path: Path,
    config: str,
    preset: str,
    grid: tuple[float, float, float],
    candidates: list[float],
) -> None:
    core = load_core(CONFIGS / config)
    core.setProperty("Camera", "Width", "128")
    core.setProperty("Camera", "Height", "128")
    planes = np.round(np.arange(grid[0], grid[1] + 1e-6, grid[2]), 6)
    model = load_model(preset)
    plan = ScanPlan.build(planes, candidates_um=candidates)
    report = AdaptiveScan(core, model, plan, ScanSettings(), tmp_path / "run").run()
    assert report.stop_reason is StopReason.CONVERGED
    assert 2 <= len(report.frames) < len(candidates)
    # the volume on disk is what offline reconstruction makes of frames.ome.tif
    volume = read_zstack(tmp_path / "run" / "volume.ome.tif").data
    again = reconstruct_frames(model, read_frames(tmp_path / "run" / "frames.ome.tif"), planes)
    np.testing.assert_allclose(volume, again, rtol=1e-4, atol=1e-2)
    data = json.loads((tmp_path / "run" / "report.json").read_text())
    assert data["stop_reason"] == "converged"
    assert data["frames"][-1]["relative_change"] <= ScanSettings().relative_epsilon
