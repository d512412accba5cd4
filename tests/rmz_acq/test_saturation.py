"""Saturated frames are found, recorded and warned about; unsaturated ones are left alone."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rmz_acq.acquisition import AdaptiveScan, ScanPlan, ScanSettings
from rmz_acq.errors import DataWarning
from rmz_acq.hardware import load_core
from rmz_acq.io import write_zstack
from rmz_acq.model.weights import LoadedModel
from rmz_acq.reconstruct import read_frames
from rmz_acq.saturation import WARN_FRACTION, camera_ceiling, find_saturation
from tests.conftest import SMALL_BEADS


def _noisy(mean: float = 300.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:128, :128]
    blob = 3000.0 * np.exp(-((yy - 64.0) ** 2 + (xx - 64.0) ** 2) / (2 * 6.0**2))
    return rng.poisson(mean + blob).astype(np.uint16)


def _clipped_8bit() -> np.ndarray:
    """The blob rescaled to 8 bits with its top burnt in at 255 (as the flowdec neuron)."""
    image = _noisy().astype(np.float64)
    return np.clip(image / 8.0, 0, 255).astype(np.uint8)


# (name, frame, ceiling, saturated pixels expected: None for "some", 0 for none)
CASES = [
    ("noisy 16-bit blob", _noisy(), 65535.0, 0),
    ("noisy blob, no ceiling known", _noisy(), None, 0),
    ("float blob (every value distinct)", _noisy().astype(np.float32) + 0.25, None, 0),
    ("a dim 8-bit frame (quantised tail)", (_noisy(30.0) // 40).astype(np.uint8), None, 0),
    ("flat frame", np.full((64, 64), 100, np.uint16), None, 0),
    ("12-bit camera at its ceiling", np.minimum(_noisy() * 2, 4095), 4095.0, None),
    ("8-bit file clipped, no ceiling", _clipped_8bit(), None, None),
]


@pytest.mark.parametrize(("frame", "ceiling", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_find_saturation(frame: np.ndarray, ceiling: float | None, expected: int | None) -> None:
    found = find_saturation(frame, ceiling)
    if expected == 0:
        assert found.pixels == 0 and found.value is None and not found.worth_warning
        return
    top = frame.max()
    assert found.pixels == np.count_nonzero(frame == top) > 0
    assert found.value == top and found.fraction == found.pixels / frame.size
    assert found.worth_warning


def test_a_hot_pixel_at_the_ceiling_is_counted_but_not_worth_a_warning() -> None:
    frame = _noisy(seed=1).astype(np.uint16)
    frame[3, 5] = 4095
    found = find_saturation(frame, camera_ceiling(12))
    assert found.pixels == 1 and found.fraction < WARN_FRACTION and not found.worth_warning


def test_camera_ceiling() -> None:
    assert camera_ceiling(12) == 4095 and camera_ceiling(16) == 65535
    assert camera_ceiling(None, np.dtype(np.uint8)) == 255
    assert camera_ceiling(None, np.dtype(np.float32)) is None


def test_reading_a_saturated_file_warns_and_names_the_plane(tmp_path: Path) -> None:
    frames = np.stack([(_noisy(seed=2) // 40).astype(np.uint8), _clipped_8bit()])
    path = write_zstack(tmp_path / "frames.ome.tif", frames, [3.0, 9.0], 0.1)
    with pytest.warns(DataWarning, match=r"frames.ome.tif, the plane at z 9 um: .*at 255"):
        read_frames(path)
    path = write_zstack(tmp_path / "clean.ome.tif", frames[:1], [3.0], 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        read_frames(path)


def test_a_scan_records_saturated_frames_and_warns(
    make_config: Callable[..., Path], tiny_model: LoadedModel, tmp_path: Path
) -> None:
    """A 12-bit camera exposed 20x too long: the beads' cores clip at 4095."""
    output = np.round(np.arange(0.0, 4.01, 0.25), 6)
    plan = ScanPlan.build(output, candidates_um=[0.5, 2.5])
    runs = {}
    bright_camera = {"Camera__BitDepth": 12, "Camera__Exposure": 200}
    for name, extra in (("clean", {}), ("bright", bright_camera)):
        core = load_core(make_config(**SMALL_BEADS, **extra))
        scan = AdaptiveScan(core, tiny_model, plan, ScanSettings(epsilon=0.0), tmp_path / name)
        scan.run()
        runs[name] = json.loads((tmp_path / name / "report.json").read_text())
    clean, bright = runs["clean"], runs["bright"]
    assert [f["saturated_fraction"] for f in clean["frames"]] == [0.0, 0.0]
    assert not any("saturated" in w for w in clean["warnings"])
    fractions = [f["saturated_fraction"] for f in bright["frames"]]
    assert max(fractions) >= WARN_FRACTION
    notes = [w for w in bright["warnings"] if "saturated at 4095" in w]
    assert len(notes) == sum(f >= WARN_FRACTION for f in fractions) > 0
    assert "Lower the exposure" in notes[0]
