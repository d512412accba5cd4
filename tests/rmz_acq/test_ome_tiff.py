from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from rmz_acq.errors import RmzError
from rmz_acq.io import FrameStackWriter, read_zstack, write_zstack


def _frames(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 4000, (n, 24, 32)).astype(np.uint16)


def test_frames_are_readable_with_their_z_before_the_writer_closes(tmp_path: Path) -> None:
    # A scan killed half way: the file must already hold every frame taken.
    path = tmp_path / "frames.ome.tif"
    frames = _frames(3)
    writer = FrameStackWriter(path, pixel_size_um=0.1)
    for frame, z in zip(frames, [3.02, 9.1, 5.97], strict=True):
        writer.append(frame, z, exposure_ms=10.0)
    partial = read_zstack(path)  # not closed: plain pages with JSON records
    np.testing.assert_array_equal(partial.data, frames)
    assert partial.z_um == pytest.approx([3.02, 9.1, 5.97])
    writer.close()


def test_closed_stack_is_ome_with_positions_and_pixel_size(tmp_path: Path) -> None:
    path = tmp_path / "stack.ome.tif"
    frames = _frames(4)
    z = [0.0, 0.21, 0.39, 0.6]
    with FrameStackWriter(path, pixel_size_um=0.1, z_step_um=0.2) as writer:
        for frame, zi in zip(frames, z, strict=True):
            writer.append(frame, zi, exposure_ms=12.5)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        assert tif.series[0].axes == "ZYX"
        xml = tif.ome_metadata
    assert 'PhysicalSizeX="0.1"' in xml and 'PhysicalSizeZ="0.2"' in xml
    assert 'PositionZ="0.21"' in xml
    back = read_zstack(path)
    np.testing.assert_array_equal(back.data, frames)
    assert back.z_um == pytest.approx(z)
    assert back.pixel_size_um == pytest.approx(0.1)
    assert back.z_step_um == pytest.approx(0.2)
    assert back.exposure_ms == pytest.approx([12.5] * 4)


def test_writer_refuses_a_frame_of_another_shape(tmp_path: Path) -> None:
    with FrameStackWriter(tmp_path / "a.ome.tif", 0.1) as writer:
        writer.append(np.zeros((8, 8), np.uint16), 0.0)
        with pytest.raises(ValueError, match="shape"):
            writer.append(np.zeros((8, 9), np.uint16), 1.0)


def test_float_volume_round_trip(tmp_path: Path) -> None:
    volume = np.random.default_rng(1).random((5, 16, 16)).astype(np.float32)
    z = np.arange(5) * 0.1
    write_zstack(tmp_path / "v.ome.tif", volume, z, 0.1, z_step_um=0.1)
    back = read_zstack(tmp_path / "v.ome.tif")
    assert back.data.dtype == np.float32
    np.testing.assert_array_equal(back.data, volume)
    assert back.z_um == pytest.approx(z)


def test_plain_tiff_has_no_z(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "plain.tif", _frames(3), photometric="minisblack")
    stack = read_zstack(tmp_path / "plain.tif")
    assert stack.z_um is None and stack.data.shape == (3, 24, 32)


def test_unreadable_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RmzError, match="does not exist"):
        read_zstack(tmp_path / "missing.tif")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff at all")
    with pytest.raises(RmzError, match="cannot read"):
        read_zstack(junk)
