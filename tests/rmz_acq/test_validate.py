"""``rmz-acq validate``: a full stack of the specimen, a replayed sparse scan, a verdict."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from pymmcore_plus import CMMCorePlus

from rmz_acq.acquisition import AdaptiveScan, ScanPlan, ScanSettings
from rmz_acq.acquisition.stop_rules import evenly_spaced
from rmz_acq.calibration import (
    BLEND_SHARES,
    BlendChoice,
    HeldOutScore,
    StopChoice,
    calibrate,
    split_stack,
)
from rmz_acq.errors import DataWarning
from rmz_acq.hardware import load_core
from rmz_acq.io import ZStack, read_zstack, write_zstack
from rmz_acq.linear_blend import LinearBlend
from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.weights import load_model, save_weights
from rmz_acq.training.conditions import PRESET_CONDITIONS
from rmz_acq.validation import Validation, validate_stack
from rmz_acq.zstack import acquire_zstack
from simulators.devices import SimulatedCamera
from tests.conftest import SMALL_BEADS
from tests.rmz_acq.test_fault_injection import cli, one_line_error


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    conditions = {
        "depth_um": 4.0,
        "output_step_um": 0.1,
        "input_spacing_um": 1.0,  # candidates every 0.25 um from 0.5 to 3.5 um
        "pixel_size_um": 0.1,
        "numerical_aperture": 1.4,
        "emission_wavelength_nm": 615.0,
    }
    model = RecurrentMZ(base_channels=2, depth=2)
    return save_weights(model, tmp_path / "tiny.safetensors", name="tiny", conditions=conditions)


def test_validate_takes_the_stack_simulate_would_and_scores_the_replay(
    capsys: pytest.CaptureFixture[str],
    make_config: Callable[..., Path],
    weights: Path,
    tmp_path: Path,
) -> None:
    config = make_config(**SMALL_BEADS)
    out = tmp_path / "validation"
    code, stdout, err = cli(capsys, "validate", "-c", config, "-m", weights, "-o", out)
    assert code == 0, err
    assert stdout.startswith("on this specimen, model tiny reaches ")
    assert "linear interpolation of the same planes" in stdout
    simulated = tmp_path / "simulated.ome.tif"
    code, _, err = cli(capsys, "stack", "-c", config, "--z-range", "0:4:0.1", "-o", simulated)
    assert code == 0, err
    taken, reference = read_zstack(out / "stack.ome.tif"), read_zstack(simulated)
    np.testing.assert_array_equal(taken.data, reference.data)
    np.testing.assert_allclose(taken.z_um, reference.z_um)  # type: ignore[arg-type]
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["name"] == "tiny" and len(report["model"]["sha256"]) == 64
    assert 2 <= report["frames_used"] <= report["candidates"] == 13
    assert set(report["psnr_db"]) == {
        "recurrent_mz",
        "linear_interpolation",
        "nearest_plane",
        "single_input",
    }
    assert all(np.isfinite(v) for v in report["psnr_db"].values())
    assert len(report["recurrent_mz_psnr_db_at_m"]) == report["candidates"]
    # the rule it stopped by: the model's default (tiny is no preset)
    assert report["relative_epsilon"] == 0.1 and report["epsilon"] is None
    volume = read_zstack(out / "volume.ome.tif")
    assert volume.data.shape == (41, 64, 64) and volume.pixel_size_um == pytest.approx(0.1)
    assert (out / "validation.png").read_bytes()[:4] == b"\x89PNG"
    # the folder is not overwritten by accident
    code, _, err = cli(capsys, "validate", "-c", config, "-m", weights, "-o", out)
    one_line_error(code, err, "is not empty")


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"next_plane": "sweeps", "stop_at": "even", "volume_order": "z"},
        {"relative_to": "structure-noise", "relative_epsilon": 0.5},
    ],
    ids=["defaults", "sweeps-even-z", "structure-noise"],
)
def test_the_replay_decides_as_a_live_scan_fed_the_same_frames(
    small_core: CMMCorePlus,
    weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, str],
) -> None:
    model = load_model(weights)
    grid = ScanPlan.for_model(model).output_planes_um
    rng = np.random.default_rng(3)
    blobs = np.zeros((len(grid), 64, 64), np.float32)
    for _ in range(12):  # a few bright spots at random depths
        z, y, x = rng.integers(0, len(grid)), rng.integers(8, 56), rng.integers(8, 56)
        blobs[max(0, z - 6) : z + 6, y - 3 : y + 3, x - 3 : x + 3] += 2000
    stack_data = (100 + blobs + rng.poisson(20, blobs.shape)).astype(np.uint16)
    path = write_zstack(tmp_path / "stack.ome.tif", stack_data, grid, 0.1)
    settings = ScanSettings.for_model(model, decision_planes=5, **options)
    replay = validate_stack(read_zstack(path), model, settings=settings)
    if settings.stop_at == "even":  # it stops on evenly spaced planes, or at the end
        used = replay.planes_taken_um[: replay.frames_used]
        span = (min(replay.candidates_um), max(replay.candidates_um))
        assert evenly_spaced(used, *span) or replay.frames_used == len(replay.candidates_um)

    def the_stack_plane(self: SimulatedCamera, buffer: np.ndarray) -> object:
        z = small_core.getPosition()
        buffer[:] = stack_data[int(np.argmin(np.abs(np.asarray(grid) - z)))]
        return {}

    monkeypatch.setattr(SimulatedCamera, "snap", the_stack_plane)
    plan = ScanPlan.build(grid, candidates_um=replay.candidates_um, reach_um=1.0)
    live = AdaptiveScan(small_core, model, plan, settings, tmp_path / "run").run()
    assert len(live.frames) == replay.frames_used and live.stop_reason is replay.stop_reason
    assert [f.commanded_z_um for f in live.frames] == replay.planes_taken_um[: replay.frames_used]
    np.testing.assert_allclose(
        [f.decision_relative_change or 0.0 for f in live.frames],
        [c or 0.0 for c in replay.relative_changes[: replay.frames_used]],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        read_zstack(tmp_path / "run" / "volume.ome.tif").data, replay.volume, rtol=1e-5, atol=1e-3
    )


def test_bad_stacks_are_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], weights: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "no_z.tif"
    tifffile.imwrite(plain, np.ones((9, 32, 32), np.uint16), photometric="minisblack")
    one_plane = write_zstack(tmp_path / "one.ome.tif", np.ones((1, 32, 32), np.uint16), [1.0], 0.1)
    tiny = write_zstack(
        tmp_path / "tiny.ome.tif", np.ones((9, 8, 8), np.uint16), np.arange(9) * 0.5, 0.1
    )
    cases = [
        (plain, "carries no z per plane"),
        (one_plane, "holds 1 plane(s)"),
        (tiny, "frames of 8 x 8 px"),
        (tmp_path / "missing.ome.tif", "does not exist"),
    ]
    for stack, fragment in cases:
        code, _, err = cli(
            capsys, "validate", "--stack", stack, "-m", weights, "-o", tmp_path / "v"
        )
        one_line_error(code, err, fragment)
    code, _, err = cli(capsys, "validate", "-m", weights, "-o", tmp_path / "v")
    one_line_error(code, err, "give either --config")


def test_validate_a_stack_taken_earlier_with_a_preset(
    capsys: pytest.CaptureFixture[str], make_config: Callable[..., Path], tmp_path: Path
) -> None:
    """A stack taken earlier (here: simulated) and the shipped preset, no hardware."""
    core = load_core(make_config(**SMALL_BEADS))
    stack = tmp_path / "beads.ome.tif"
    acquire_zstack(core, list(np.round(np.arange(0, 4.01, 0.1), 6)), stack, z_step_um=0.1)
    code, stdout, err = cli(
        capsys, "validate", "--stack", stack, "-m", "beads", "-o", tmp_path / "v"
    )
    assert code == 0, err
    assert "model beads reaches" in stdout
    # the stack's own noise bounds every score against it; taken out, each rises
    assert "the stack's own noise caps any score at" in stdout
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    ceiling, clean = report["noise_ceiling_db"], report["psnr_db_noise_free"]
    assert set(clean) == set(report["psnr_db"])
    for method, score in report["psnr_db"].items():
        assert score < ceiling and clean[method] > score
    assert len(report["noise_ceiling_per_plane_db"]) == 41
    assert report["relative_epsilon"] == ScanSettings.for_model("beads").relative_epsilon
    # replayed as you will scan: your threshold and next-plane policy
    args = ("validate", "--stack", stack, "-m", "beads", "--relative-epsilon", "0")
    code, stdout, err = cli(capsys, *args, "--next-plane", "even", "-o", tmp_path / "v0")
    assert code == 0, err
    report = json.loads((tmp_path / "v0" / "report.json").read_text())
    assert report["relative_epsilon"] == 0 and report["next_plane"] == "even"
    assert report["stop_reason"] == "max_frames"  # a change is never exactly 0
    assert report["frames_used"] == report["candidates"]
    code, _, err = cli(capsys, *args, "--next-plane", "wherever", "-o", tmp_path / "v1")
    one_line_error(code, err, "next-plane policy 'wherever' is not known")


def test_a_stack_too_coarse_in_z_gets_no_noise_ceiling(weights: Path) -> None:
    planes = np.arange(0.0, 4.01, 1.0)  # 1 um apart: more than the beads' depth of field
    rng = np.random.default_rng(3)
    data = (100 + 50 * rng.random((len(planes), 40, 40))).astype(np.float32)
    result = validate_stack(ZStack(data=data, z_um=planes, pixel_size_um=0.1), load_model(weights))
    assert result.noise_ceiling_db() is None and result.noise_free_psnr_db() == {}
    assert any("its noise cannot be estimated" in note for note in result.notes)
    assert "caps any score" not in result.verdict()
    assert result.to_json()["noise_ceiling_db"] is None


@pytest.fixture
def specimen(make_config: Callable[..., Path], tmp_path: Path) -> Path:
    """A dense bead specimen, 96 x 96 px, 0-4 um (a sample the tiny model never saw)."""
    wide = SMALL_BEADS | {
        "Camera__Width": 96,
        "Camera__Height": 96,
        "Microscope__BeadDensityPer1000um3": 200,
    }
    core = load_core(make_config(**wide))
    path = tmp_path / "specimen.ome.tif"
    acquire_zstack(core, list(np.round(np.arange(0, 4.01, 0.1), 6)), path, z_step_um=0.1)
    return path


@pytest.fixture
def trainable(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    conditions = PRESET_CONDITIONS["beads"].model_dump() | {
        "depth_um": 4.0,
        "input_spacing_um": 1.0,
    }
    model = RecurrentMZ(base_channels=2, depth=2)
    return save_weights(model, tmp_path / "start.safetensors", name="start", conditions=conditions)


def test_calibrate_improves_the_held_out_region(
    specimen: Path, trainable: Path, tmp_path: Path
) -> None:
    start = load_model(trainable)
    out = tmp_path / "mine.safetensors"
    result = calibrate(
        [("specimen", read_zstack(specimen))], start, out, minutes=0.3, learning_rate=3e-3
    )
    assert result.after.recurrent_mz > result.before.recurrent_mz  # never trained on that strip
    assert result.written == out and result.card == tmp_path / "mine.md"
    tuned = load_model(out)  # usable with --model everywhere
    assert tuned.name == "start-calibrated" and tuned.conditions == start.conditions
    assert "before" in result.card.read_text() and "held out" in result.card.read_text()
    # scores against a noisy stack stay under its noise ceiling; the table says so
    ceiling = result.before.noise_ceiling
    assert ceiling is not None and result.after.recurrent_mz < ceiling
    assert result.after.recurrent_mz_noise_free is not None
    assert result.after.recurrent_mz_noise_free > result.after.recurrent_mz
    assert f"caps any score at {ceiling:.2f} dB" in result.table()
    assert f"caps any score at {ceiling:.2f} dB" in result.card.read_text()
    # the weights carry the stop threshold chosen for them, never above the start's
    assert result.stop is not None
    assert result.stop.relative_epsilon <= ScanSettings.for_model(start).relative_epsilon
    assert ScanSettings.for_model(tuned).relative_epsilon == result.stop.relative_epsilon
    assert "stop rule: relative change" in result.table()
    assert "Stop rule: relative change" in result.card.read_text()
    # one stack: no linear blend, and the table says why
    assert result.blend is None and tuned.linear_blend is None
    assert "linear blend: not fitted: the linear blend needs two or more stacks" in result.table()
    # the strip is really held out: the split is by columns, right quarter
    training, strip = split_stack(read_zstack(specimen), "specimen")
    assert training.shape == (96, 72) and strip.shape == (96, 24)


@pytest.fixture
def other_field(specimen: Path, tmp_path: Path) -> Path:
    """A second field of the same specimen: its planes transposed."""
    stack = read_zstack(specimen)
    data = np.ascontiguousarray(np.swapaxes(stack.data, 1, 2))
    return write_zstack(tmp_path / "other.ome.tif", data, stack.z_um, stack.pixel_size_um)


def test_calibrate_without_minutes_fits_the_linear_blend_alone(
    specimen: Path, other_field: Path, trainable: Path, tmp_path: Path
) -> None:
    start = load_model(trainable)
    out = tmp_path / "blend.safetensors"
    stacks = [(str(p), read_zstack(p)) for p in (specimen, other_field)]
    result = calibrate(stacks, start, out, minutes=0)
    assert result.steps == 0 and result.blend is not None
    assert set(result.blend.psnr_db) == set(BLEND_SHARES)
    # an untrained network: the filter calibrated on the other field carries the volume,
    # chosen stack against stack and better on the strips it never saw
    assert result.blend.weight < 1.0
    assert result.blend.psnr_db[result.blend.weight] > result.blend.psnr_db[1.0]
    assert result.after.recurrent_mz > result.before.recurrent_mz
    assert result.written == out and "linear blend: " in result.table()
    assert "fitted on the other stacks" in result.table()
    assert result.card is not None and "Linear blend: " in result.card.read_text()
    tuned = load_model(out)
    assert tuned.linear_blend is not None and tuned.linear_blend.weight == result.blend.weight
    assert tuned.linear_blend.stacks == 2
    for key, value in start.model.state_dict().items():  # the network is the start's
        torch.testing.assert_close(tuned.model.state_dict()[key], value)


def test_calibrate_without_minutes_writes_nothing_when_the_blend_does_not_help(
    capsys: pytest.CaptureFixture[str],
    specimen: Path,
    other_field: Path,
    trainable: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    network_alone = BlendChoice(1.0, {share: 20.0 - share for share in BLEND_SHARES})
    monkeypatch.setattr("rmz_acq.calibration.choose_linear_blend", lambda *a, **k: network_alone)
    out = tmp_path / "same.safetensors"
    code, stdout, err = cli(
        capsys, "calibrate", "--stack", specimen, "--stack", other_field, "-m", trainable,
        "-o", out, "--minutes", "0",
    )  # fmt: skip
    assert code == 1 and "no share of it beat the network" in err and not out.exists()
    assert "linear blend: none" in stdout


def test_calibrating_weights_that_carry_a_blend_keeps_it_when_none_is_chosen(
    specimen: Path, trainable: Path, tmp_path: Path
) -> None:
    stack = read_zstack(specimen)
    own = LinearBlend.fit([(stack.data, stack.z_um)], 0.75).with_source("a training mixture")
    start = load_model(trainable)
    carrying = save_weights(
        start.model, tmp_path / "carrying.safetensors", name="start",
        conditions=start.conditions, linear_blend=own,
    )  # fmt: skip
    out = tmp_path / "tuned.safetensors"
    # one stack: none fitted on it, so the weights' own blend stays with the tuned network
    result = calibrate([("specimen", stack)], load_model(carrying), out, minutes=0.02, force=True)
    tuned = load_model(out)
    assert tuned.linear_blend is not None and tuned.linear_blend.weight == 0.75
    assert tuned.linear_blend.source == "a training mixture"
    np.testing.assert_allclose(tuned.linear_blend.spectra, own.spectra, rtol=1e-5)
    assert "the weights' own kept" in result.table()
    assert "fitted on a training mixture" in result.table()
    assert result.card is not None and "the weights' own kept" in result.card.read_text()


def _replay(changes: list[float | None], scores: list[float]) -> Validation:
    replay = object.__new__(Validation)  # only what the threshold choice reads
    replay.relative_changes, replay.recurrent_mz_psnr_at_m = changes, scores
    replay.planes_taken_um = replay.candidates_um = [float(z) for z in range(len(changes))]
    return replay


def test_calibrate_lowers_the_stop_threshold_until_the_stop_is_good_enough(
    trainable: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rmz_acq.calibration import choose_stop_threshold
    from rmz_acq.training.data import StackVolume

    start = load_model(trainable)  # not a preset: its own threshold is 0.1
    assert ScanSettings.for_model(start).relative_epsilon == pytest.approx(0.1)
    part = StackVolume(np.zeros((5, 8, 8), np.float32), np.arange(5.0))
    # at 0.1 the scan stops after 2 frames, 2.4 dB short of taking all 5; at
    # 0.07 after 3, 0.4 dB short: good enough
    replays = iter([_replay([None, 0.09, 0.04, 0.02, 0.01], [20.0, 21.0, 23.0, 23.3, 23.4])])
    monkeypatch.setattr("rmz_acq.calibration.validate_stack", lambda *a, **k: next(replays))
    choice = choose_stop_threshold(start, [part])
    assert choice.relative_epsilon == pytest.approx(0.07) and choice.met
    assert choice.frames == [3] and choice.candidates == [5]
    assert choice.shortfall_db == [pytest.approx(0.4)]
    assert "lowered from 0.1" in choice.describe()
    # a scan that stops too early at every threshold tried gets the lowest
    replays = iter([_replay([None, 0.05, 0.012, 0.02, 0.03], [20.0, 21.0, 21.0, 21.0, 24.0])])
    choice = choose_stop_threshold(start, [part])
    assert choice.relative_epsilon == pytest.approx(0.0125) and not choice.met
    assert choice.frames == [3] and "still 3.00 dB below" in choice.describe()
    assert "sparse scans save few frames" not in choice.describe()
    # where the model's own already stops well, it is kept (never raised)
    replays = iter([_replay([None, 0.5, 0.05, 0.02, 0.01], [20.0, 21.0, 23.3, 23.3, 23.4])])
    choice = choose_stop_threshold(start, [part])
    assert choice.relative_epsilon == pytest.approx(0.1) and choice.frames == [3]
    assert "kept the model's 0.1" in choice.describe()
    # a specimen where only (nearly) every candidate is good enough says so
    replays = iter([_replay([None, 0.05, 0.03, 0.02, 0.011], [20.0, 21.0, 21.0, 21.0, 24.0])])
    choice = choose_stop_threshold(start, [part])
    assert choice.frames == [5] and choice.met
    assert "sparse scans save few frames" in choice.describe()
    assert "a larger --stop-tolerance here" in choice.describe()
    # a user who accepts 3 dB keeps the model's threshold and its 3 frames there
    replays = iter([_replay([None, 0.05, 0.03, 0.02, 0.011], [20.0, 21.0, 21.0, 21.0, 24.0])])
    choice = choose_stop_threshold(start, [part], tolerance_db=3.0)
    assert choice.relative_epsilon == pytest.approx(0.1) and choice.frames == [2]
    assert choice.met and "within 3 dB of taking every candidate" in choice.describe()


def test_calibrated_weights_scan_as_their_preset_unless_they_store_their_own(
    tmp_path: Path,
) -> None:
    from rmz_acq.acquisition.plan import SCAN_DEFAULTS_KEY, scan_defaults
    from rmz_acq.errors import RmzError

    preset = load_model("nuclei")
    network = RecurrentMZ(base_channels=2, depth=2)
    origin = {"calibrated_from": json.dumps({"name": "nuclei", "sha256": preset.sha256})}

    def weights(name: str, **extra: str) -> Path:
        return save_weights(
            network,
            tmp_path / f"{name}.safetensors",
            name=name,
            conditions=preset.conditions,
            extra=origin | extra,
        )

    # calibrated before the threshold was stored: the preset's spacing, rule and policy
    older = load_model(weights("nuclei-calibrated"))
    assert scan_defaults(older) == scan_defaults(preset)
    settings = ScanSettings.for_model(older)
    assert settings.relative_epsilon == ScanSettings.for_model(preset).relative_epsilon
    assert settings.next_plane == ScanSettings.for_model(preset).next_plane == "sweeps"
    assert settings.stop_at == "even" and settings.volume_order == "z"
    assert settings.min_frames == ScanSettings.for_model(preset).min_frames == 9
    assert ScanPlan.for_model(older).candidates_um == ScanPlan.for_model(preset).candidates_um
    # stored defaults win; the command line still overrides them
    stored = {"candidate_step_fraction": 0.25, "relative_epsilon": 0.02, "next_plane": "even"}
    mine = load_model(weights("mine", **{SCAN_DEFAULTS_KEY: json.dumps(stored)}))
    assert ScanSettings.for_model(mine).relative_epsilon == 0.02
    assert ScanSettings.for_model(mine).next_plane == "even"
    # stored before stop_at and volume_order existed: they default to the old behaviour
    assert ScanSettings.for_model(mine).stop_at == "any"
    assert ScanSettings.for_model(mine).volume_order == "as-taken"
    assert ScanSettings.for_model(mine).min_frames == 2
    assert ScanSettings.for_model(mine, relative_epsilon=0.2).relative_epsilon == 0.2
    broken = load_model(weights("broken", **{SCAN_DEFAULTS_KEY: "{not json"}))
    with pytest.raises(RmzError, match="unreadable scan defaults"):
        ScanSettings.for_model(broken)


def test_calibration_trains_on_noisy_targets_as_noise_to_noise(trainable: Path) -> None:
    from rmz_acq.calibration import _settings_for

    settings = _settings_for(load_model(trainable), 64, 2e-4)
    # BerHu alone (MS-SSIM would reward the targets' noise), never a target at
    # an input's z (the input frame itself), and no adversary
    assert settings.ssim_weight == 0 and settings.input_plane_fraction == 0
    assert settings.adversarial_weight == 0 and settings.learning_rate == 2e-4


def test_calibrate_refuses_worse_weights_unless_forced(
    capsys: pytest.CaptureFixture[str],
    specimen: Path,
    trainable: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scores = iter([HeldOutScore(30.0, 28.0), HeldOutScore(29.0, 28.0)] * 2)
    monkeypatch.setattr("rmz_acq.calibration.score_held_out", lambda *a, **k: next(scores))
    out = tmp_path / "worse.safetensors"
    args = ("calibrate", "--stack", specimen, "-m", trainable, "-o", out, "--minutes", "0.05")
    code, stdout, err = cli(capsys, *args)
    assert code == 1 and "not written: the held-out score dropped (30.00 -> 29.00 dB)" in err
    assert "before" in stdout and not out.exists()
    import rmz_acq.calibration

    chosen = rmz_acq.calibration.choose_stop_threshold
    asked: list[float] = []

    def choose(*a: object, tolerance_db: float, **k: object) -> StopChoice:
        asked.append(tolerance_db)
        return chosen(*a, tolerance_db=tolerance_db, **k)  # type: ignore[arg-type]

    monkeypatch.setattr("rmz_acq.calibration.choose_stop_threshold", choose)
    code, _, err = cli(capsys, *args, "--force", "--stop-tolerance", "1.5")
    assert code == 0 and out.is_file(), err
    assert asked == [1.5]  # the threshold is chosen for the user's tolerance


BAD_CALIBRATE = [
    (("--minutes", "-1"), "--minutes must be 0 or more, got -1"),
    (("--minutes", "0", "--no-linear-blend"), "leaves nothing to calibrate"),
    (("--minutes", "0"), "the linear blend needs two or more stacks of different fields"),
    (("--stop-tolerance", "-1"), "--stop-tolerance must be 0 dB or more, got -1"),
    (("-o", "weights.pt"), "must end in .safetensors"),
    (("--narrow",), "calibration needs at least 48 px"),
]


@pytest.mark.parametrize(("extra", "fragment"), BAD_CALIBRATE)
def test_bad_calibrate_input_is_one_line(
    capsys: pytest.CaptureFixture[str],
    trainable: Path,
    tmp_path: Path,
    extra: tuple[str, ...],
    fragment: str,
) -> None:
    stack = write_zstack(
        tmp_path / "s.ome.tif",
        np.ones((9, 64, 40 if "--narrow" in extra else 64), np.uint16),
        np.arange(9) * 0.5,
        0.1,
    )
    args = [a for a in extra if a != "--narrow"]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out.safetensors")]
    code, _, err = cli(capsys, "calibrate", "--stack", stack, "-m", trainable, *args)
    one_line_error(code, err, fragment)


@pytest.mark.parametrize("policy", ["structure", "even", "bisection"])
def test_validate_a_stack_whose_z_are_not_round(weights: Path, policy: str) -> None:
    """Measured z such as 0.17391304... (a real stack's): the policies' rounded
    choices are found again among the stack's planes, and pushed at the stack's z."""
    planes = np.linspace(0.0, 4.0, 24)  # steps of 0.1739130434... um
    rng = np.random.default_rng(3)
    data = (100 + 50 * rng.random((len(planes), 40, 40))).astype(np.float32)
    stack = ZStack(data=data, z_um=planes, pixel_size_um=0.1)
    model = load_model(weights)
    settings = ScanSettings.for_model(model, next_plane=policy, relative_epsilon=0.0)
    result = validate_stack(stack, model, settings=settings)
    assert len(result.planes_taken_um) == len(result.candidates_um) >= 3
    for z in result.planes_taken_um:
        assert np.min(np.abs(planes - z)) == 0.0  # exactly a plane of the stack
    assert len(set(result.planes_taken_um)) == len(result.planes_taken_um)


def test_a_saturated_stack_is_noted_in_the_validation(weights: Path) -> None:
    """A stack clipped at 255 in two planes: the validation says which (a poor ground truth)."""
    planes = np.arange(0.0, 4.01, 0.5)
    rng = np.random.default_rng(4)
    data = (30 + 20 * rng.random((len(planes), 40, 40))).astype(np.uint8)
    data[4:6, 10:20, 10:20] = 255  # a bright object clipped at 2.0 and 2.5 um
    result = validate_stack(ZStack(data=data, z_um=planes, pixel_size_um=0.1), load_model(weights))
    notes = [n for n in result.notes if "saturated" in n]
    assert len(notes) == 1 and "2 of 9 planes saturated (z 2, 2.5 um)" in notes[0]
    assert "6.25% of its pixels (100) are saturated at 255" in notes[0]
    assert notes[0] in result.to_json()["notes"]
    clean = (30 + 20 * rng.random((len(planes), 40, 40))).astype(np.uint8)
    result = validate_stack(ZStack(data=clean, z_um=planes, pixel_size_um=0.1), load_model(weights))
    assert not any("saturated" in n for n in result.notes)


def test_calibrating_on_a_saturated_stack_warns() -> None:
    planes = np.arange(0.0, 4.01, 0.5)
    data = np.full((len(planes), 64, 64), 40, np.uint8) + np.arange(64, dtype=np.uint8)
    data[3, 5:15, 5:15] = 255
    with pytest.warns(DataWarning, match=r"stack.ome.tif, the plane at z 1.5 um: 2.44% of"):
        split_stack(ZStack(data=data, z_um=planes, pixel_size_um=0.1), "stack.ome.tif")
