"""``rmz-acq acquire`` through the real entry point."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from rmz_acq.acquisition.controller import DEFAULT_RELATIVE_EPSILON, PRESET_RELATIVE_EPSILON
from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.weights import save_weights
from rmz_acq.training.conditions import PRESET_CONDITIONS
from tests.conftest import SMALL_BEADS
from tests.rmz_acq.test_cli_stack import rmz_acq


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    conditions = PRESET_CONDITIONS["beads"].model_dump() | {"depth_um": 4.0}
    model = RecurrentMZ(base_channels=2, depth=2)
    return save_weights(model, tmp_path / "tiny.safetensors", name="tiny", conditions=conditions)


def test_acquire_runs_and_summarises(
    make_config: Callable[..., Path], tiny_weights: Path, tmp_path: Path
) -> None:
    config = make_config(**SMALL_BEADS)
    run = tmp_path / "run"
    args = ("--config", config, "-m", tiny_weights, "-o", run, "--epsilon", "0", "--snapshots")
    result = rmz_acq("acquire", *args, "--candidates", "0.5,1.5,2.5,3.5")
    assert result.returncode == 0, result.stderr
    assert "max_frames after" in result.stdout
    report = json.loads((run / "report.json").read_text())
    assert report["stop_reason"] == "max_frames"
    assert report["output_planes_um"][:3] == [0.0, 0.1, 0.2]
    assert "frame 1/" in result.stderr
    snapshots = sorted((run / "snapshots").glob("frame_*.png"))
    assert len(snapshots) == len(report["frames"]) > 1
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in snapshots)


def test_dry_run_prints_the_plan_and_moves_nothing(
    make_config: Callable[..., Path], tiny_weights: Path, tmp_path: Path
) -> None:
    config = make_config(**SMALL_BEADS)
    result = rmz_acq(
        "acquire", "--config", config, "-m", tiny_weights, "-o", tmp_path / "r", "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    assert "candidates (bisection order)" in result.stdout
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("preset", ["beads", "nuclei", "widefield", None])
def test_default_stop_rule_is_the_models(
    preset: str | None, make_config: Callable[..., Path], tiny_weights: Path, tmp_path: Path
) -> None:
    config = make_config(**SMALL_BEADS)
    model = preset or str(tiny_weights)
    args = (
        "--config",
        config,
        "-m",
        model,
        "-o",
        tmp_path / "r",
        "--dry-run",
        "--z-range",
        "0:4:0.1",
    )
    result = rmz_acq("acquire", *args, "--candidates", "1,2,3")
    assert result.returncode == 0, result.stderr
    expected = PRESET_RELATIVE_EPSILON[preset] if preset else DEFAULT_RELATIVE_EPSILON
    assert f"stop: relative change <= {expected:g}" in result.stdout
    noise = "(relative to the structure and the frames' noise)" in result.stdout
    assert noise == (preset in ("nuclei", "widefield"))
    # 41 output planes: decided on 11, and on all 41 near the threshold
    assert "judged on 11 of 41 output planes, on all of them within 25% of" in result.stdout
    never = rmz_acq("acquire", *args, "--candidates", "1,2,3", "--decision-margin", "0")
    assert "judged on 11 of 41 output planes\n" in never.stdout
    bad = rmz_acq("acquire", *args, "--candidates", "1,2,3", "--decision-margin", "-1")
    assert bad.returncode != 0 and "--decision-margin must be >= 0, got -1" in bad.stderr
    given = rmz_acq("acquire", *args, "--candidates", "1,2,3", "--relative-epsilon", "0.0123")
    assert "stop: relative change <= 0.0123" in given.stdout


BAD = [
    ("negative epsilon", ["--epsilon", "-1"], None, "--epsilon must be >= 0"),
    ("empty candidates", ["--candidates", ","], None, "z list"),
    ("out of reach", ["--candidates", "0.5", "--z-range", "0:4:0.1"], None, "from every candidate"),
    (
        "outside limits",
        ["--candidates", "1,9", "--z-range", "0:4:0.1"],
        None,
        "outside the focus travel",
    ),
    ("unknown model", ["-m", "no-such-model"], None, "unknown model"),
    ("bad order", ["--order", "random"], None, "--order"),
    ("bad precision", ["--precision", "int8"], None, "precision 'int8' is not one of"),
    ("no focus", [], "#py Property,Core,Focus", "no focus stage"),
    ("no camera", [], "#py Property,Core,Camera", "no camera"),
]


@pytest.mark.parametrize(("name", "args", "drop", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_one_line_error(
    make_config: Callable[..., Path],
    tiny_weights: Path,
    tmp_path: Path,
    name: str,
    args: list[str],
    drop: str | None,
    fragment: str,
) -> None:
    config = make_config(**SMALL_BEADS)
    if drop is not None:
        text = config.read_text()
        kept = [line for line in text.splitlines() if not line.startswith(drop)]
        config.write_text("\n".join(kept))
    if "-m" not in args:
        args = [*args, "-m", str(tiny_weights)]
    result = rmz_acq("acquire", "--config", config, "-o", tmp_path / "run", *args)
    assert result.returncode == 2, (name, result.stdout, result.stderr)
    assert fragment in result.stderr, (name, result.stderr)
    assert "Traceback" not in result.stderr


def test_pixel_size_mismatch_warns_and_strict_refuses(
    make_config: Callable[..., Path], tiny_weights: Path, tmp_path: Path
) -> None:
    config = make_config(**SMALL_BEADS)
    config.write_text(
        config.read_text().replace("PixelSize_um,Res100x,0.1", "PixelSize_um,Res100x,0.2")
    )
    args = ("acquire", "--config", config, "-m", tiny_weights, "-o", tmp_path / "run")
    relaxed = rmz_acq(*args, "--dry-run")
    assert relaxed.returncode == 0
    assert "warning: pixel size 0.2 um differs" in relaxed.stderr
    strict = rmz_acq(*args, "--strict")
    assert strict.returncode == 2 and "refusing to scan (--strict)" in strict.stderr


def test_next_plane_policy_from_the_command_line(
    make_config: Callable[..., Path], tiny_weights: Path, tmp_path: Path
) -> None:
    config = make_config(**SMALL_BEADS)
    base = ("--config", config, "-m", tiny_weights, "--candidates", "0.5,1.5,2.5,3.5")
    planned = rmz_acq("acquire", *base, "-o", tmp_path / "p", "--dry-run", "--next-plane", "sweeps")
    assert planned.returncode == 0, planned.stderr
    assert "next plane: sweeps, in this order: 0.5, 1.5, 3.5, 2.5" in planned.stdout
    run = tmp_path / "run"
    result = rmz_acq(
        "acquire", *base, "-o", run, "--epsilon", "0", "--max-frames", "3", "--next-plane", "even"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((run / "report.json").read_text())
    assert report["next_plane"] == "even"
    assert [f["commanded_z_um"] for f in report["frames"]] == [0.5, 2.0, 3.5]
    assert "first sweep" in report["frames"][0]["plane_reason"]
    assert "[first sweep" in result.stderr  # the reason is shown as each frame is judged
    wrong = rmz_acq("acquire", *base, "-o", tmp_path / "w", "--next-plane", "spiral")
    assert wrong.returncode == 2
    assert "'spiral' is not known; choose one of bisection, sweeps" in wrong.stderr
    assert not (tmp_path / "w").exists()


def test_where_to_stop_and_the_volume_order_from_the_command_line(
    make_config: Callable[..., Path], tiny_weights: Path, tmp_path: Path
) -> None:
    config = make_config(**SMALL_BEADS)
    base = ("--config", config, "-m", tiny_weights, "--candidates", "0.5,1.25,2,2.75,3.5")
    planned = rmz_acq(
        "acquire", *base, "-o", tmp_path / "p", "--dry-run", "--stop-at", "even",
        "--volume-order", "z", "--relative-to", "structure-noise",
    )  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    assert "only on evenly spaced planes (a complete sweep)" in planned.stdout
    assert "(relative to the structure and the frames' noise)" in planned.stdout
    assert "volume: rebuilt from the frames sorted by z" in planned.stdout
    wrong = rmz_acq("acquire", *base, "-o", tmp_path / "w", "--stop-at", "anywhere")
    assert wrong.returncode == 2
    assert "--stop-at: input should be 'any' or 'even' (got 'anywhere')" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    wrong = rmz_acq("acquire", *base, "-o", tmp_path / "w", "--relative-to", "frames")
    assert wrong.returncode == 2
    assert "--relative-to: input should be 'volume' or 'structure-noise'" in wrong.stderr
    assert not (tmp_path / "w").exists()
