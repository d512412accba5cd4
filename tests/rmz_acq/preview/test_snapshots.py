from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from matplotlib.image import imread

from rmz_acq.acquisition.controller import VolumeUpdate
from rmz_acq.acquisition.report import FrameRecord
from rmz_acq.preview.projections import MARK_COLOUR, render_orthoviews
from rmz_acq.preview.render import judged_change, render_preview, saturated_frames
from rmz_acq.preview.snapshots import SnapshotWriter

PLANES = np.round(np.arange(0, 4.01, 0.2), 6)  # 21 planes, z scale 2 at 0.1 um pixels


def _volume() -> np.ndarray:
    volume = np.full((21, 40, 50), 10.0, np.float32)
    volume[5, 12, 30] = 1000.0  # a bright point at z = 1.0 um
    return volume


def test_orthoviews_put_structure_and_marks_where_they_belong() -> None:
    image, layout = render_orthoviews(_volume(), PLANES, 0.1, [1.0, 3.0])
    assert layout.z_scale == 2
    assert image.shape == (40 + 4 + 42, 50 + 4 + 42, 3)
    assert image[12, 30].min() == 255  # XY
    assert image[layout.xz_origin[0] + 5 * 2, 30].min() == 255  # XZ, z down
    assert image[12, layout.yz_origin[1] + 5 * 2].min() == 255  # YZ, z right
    assert image[:40, :50].std() > 0  # not blank
    expected_rows = (40 + 4 + 5 * 2 + 1, 40 + 4 + 15 * 2 + 1)
    assert layout.marks_xz_rows == expected_rows
    for row in expected_rows:
        assert (image[row, :50] == MARK_COLOUR).all()
    for col in layout.marks_yz_cols:
        assert (image[:40, col] == MARK_COLOUR).all()
    cyan_rows = [r for r in range(image.shape[0]) if (image[r, :50] == MARK_COLOUR).all()]
    assert tuple(cyan_rows) == expected_rows


def _record(index: int, z: float, change: float | None) -> FrameRecord:
    return FrameRecord(index, z, z + 0.01, float(index), change, change, 0.1)


def test_snapshot_after_every_update_shows_the_frames_taken(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path / "snapshots", 0.1, relative_epsilon=0.05)
    volume = _volume()
    for i, (z, change) in enumerate([(2.0, None), (1.0, 0.3), (3.0, 0.04)]):
        writer(VolumeUpdate(_record(i, z, change), volume, PLANES))
    assert [p.name for p in writer.written] == ["frame_01.png", "frame_02.png", "frame_03.png"]
    last = (imread(writer.written[-1])[..., :3] * 255).round().astype(np.uint8)
    expected, layout = render_orthoviews(volume, PLANES, 0.1, [2.01, 1.01, 3.01])
    np.testing.assert_array_equal(last[: layout.height, : layout.width], expected)
    first = (imread(writer.written[0])[..., :3] * 255).round().astype(np.uint8)
    marked = [r for r in range(layout.height) if (first[r, : volume.shape[2]] == MARK_COLOUR).all()]
    assert len(marked) == 1  # only the first frame's plane so far
    assert last.shape[1] > layout.width + 100  # the convergence curve beside the views


def test_the_curve_shows_the_change_the_rule_judged() -> None:
    # relative to structure and noise, the rule's change is on another scale
    # than the full grid's change relative to the volume: the curve must show
    # the one compared with epsilon
    judged = replace(_record(1, 1.0, None), relative_change=0.05, decision_relative_change=0.4)
    assert judged_change(judged, absolute=False) == 0.4
    older = replace(_record(1, 1.0, None), relative_change=0.05, decision_relative_change=None)
    assert judged_change(older, absolute=False) == 0.05
    absolute = replace(_record(1, 1.0, None), frobenius_change=3.0, decision_frobenius_change=2.0)
    assert judged_change(absolute, absolute=True) == 2.0


def test_saturated_frames_are_marked_in_the_preview() -> None:
    frames = [
        replace(_record(0, 1.0, None), saturated_fraction=0.0),
        replace(_record(1, 3.0, 1.0), saturated_fraction=0.004),  # worth a warning
        replace(_record(2, 2.0, 0.5), saturated_fraction=1e-6),  # one hot pixel
        _record(3, 0.5, 0.2),  # an older report: nothing known
    ]
    assert saturated_frames(frames) == [(2, 3.01)]  # M, measured z
    marked = render_preview(
        _volume(), PLANES, 0.1, frames, epsilon=0.1, relative_epsilon=None, title="t"
    )
    plain = render_preview(
        _volume(), PLANES, 0.1, [replace(f, saturated_fraction=0.0) for f in frames],
        epsilon=0.1, relative_epsilon=None, title="t",
    )  # fmt: skip
    assert marked.shape == plain.shape and np.any(marked != plain)
