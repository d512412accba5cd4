"""``rmz-acq stack`` (and its old name ``simulate``) through the real entry point."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile

from rmz_acq.io import read_zstack
from tests.conftest import SMALL_BEADS


def rmz_acq(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rmz_acq", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_stack_writes_an_ome_z_stack_with_measured_z(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = make_config(**SMALL_BEADS, Z__PositionErrorSigmaUm=0.05, Z__Seed=2)
    out = tmp_path / "stack.ome.tif"
    result = rmz_acq("stack", "--config", config, "--z-range", "0:4:0.5", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "9 planes" in result.stdout
    stack = read_zstack(out)
    assert stack.data.shape == (9, 64, 64) and stack.data.dtype == np.uint16
    assert stack.pixel_size_um == pytest.approx(0.1)
    assert stack.z_step_um == pytest.approx(0.5)
    commanded = np.arange(9) * 0.5
    assert stack.z_um is not None
    errors = stack.z_um - commanded
    assert np.all(np.abs(errors) < 0.3) and np.std(errors) > 0.01
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome
        assert tif.series[0].axes == "ZYX"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--z-range", "0:4"], "START:STOP:STEP"),
        (["--z-range", "0:40:1"], "outside the focus travel limits"),
        (["--z-range", "0:4:1", "--exposure-ms", "-3"], "exposure"),
    ],
)
def test_stack_bad_input_is_one_line_and_moves_nothing(
    make_config: Callable[..., Path], tmp_path: Path, args: list[str], fragment: str
) -> None:
    config = make_config(**SMALL_BEADS)
    out = tmp_path / "stack.ome.tif"
    result = rmz_acq("stack", "--config", config, "-o", out, *args)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_stack_missing_config(tmp_path: Path) -> None:
    result = rmz_acq(
        "stack", "--config", tmp_path / "x.cfg", "--z-range", "0:1:1", "-o", tmp_path / "o.tif"
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_version_and_help() -> None:
    assert rmz_acq("--version").stdout.startswith("rmz-acq ")
    listed = rmz_acq("--help").stdout
    assert "stack" in listed and "export-bioimageio" in listed


def test_simulate_is_an_alias_of_stack_that_says_so(
    make_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = make_config(**SMALL_BEADS)
    out = tmp_path / "old.ome.tif"
    result = rmz_acq("simulate", "--config", config, "--z-range", "0:1:0.5", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "now `rmz-acq stack`" in result.stderr
    assert read_zstack(out).data.shape == (3, 64, 64)
