"""``rmz-acq reconstruct``, ``evaluate`` and ``train`` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from rmz_acq.cli.train import default_sample_varieties
from rmz_acq.errors import RmzError
from rmz_acq.io import read_zstack, write_zstack
from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.normalization import IntensityNormalization
from rmz_acq.model.weights import load_model, save_weights, training_stages
from rmz_acq.reconstruct import FrameSet, reconstruct_frames
from rmz_acq.session import ReconstructionSession
from rmz_acq.training import trainer as trainer_module
from rmz_acq.training.conditions import ImagingConditions
from rmz_acq.training.trainer import TrainingSettings, train
from tests.rmz_acq.test_cli_stack import rmz_acq


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = RecurrentMZ(base_channels=4, depth=2)
    return save_weights(model, tmp_path / "tiny.safetensors", name="tiny")


@pytest.fixture
def frames_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    frames = (100 + 200 * rng.random((3, 32, 36))).astype(np.uint16)
    return write_zstack(tmp_path / "frames.ome.tif", frames, [3.02, 8.97, 6.01], 0.1)


def test_reconstruct_writes_the_contract_volume(
    tiny_weights: Path, frames_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "volume.ome.tif"
    result = rmz_acq(
        "reconstruct", frames_file, "--z-range", "2:10:0.5", "--model", tiny_weights, "-o", out
    )
    assert result.returncode == 0, result.stderr
    volume = read_zstack(out)
    assert volume.data.dtype == np.float32 and volume.data.shape == (17, 32, 36)
    assert volume.z_um == pytest.approx(np.arange(17) * 0.5 + 2)
    assert volume.pixel_size_um == pytest.approx(0.1) and volume.z_step_um == pytest.approx(0.5)
    # a file that is not a run's: as a z-stack, the file holds 3.02, 8.97, 6.01 um and
    # they are pushed 3.02, 6.01, 8.97, scaled by the statistics of all three frames
    stack = read_zstack(frames_file)
    assert stack.z_um is not None
    pooled = IntensityNormalization.from_frames(list(stack.data), method="energy")
    session = ReconstructionSession(
        load_model(tiny_weights).model, volume.z_um, normalization=pooled
    )
    expected = session.run([stack.data[i] for i in (0, 2, 1)], [3.02, 6.01, 8.97]).volume
    np.testing.assert_allclose(volume.data, expected, rtol=1e-5, atol=1e-3)
    # bfloat16 compute: the same volume within rounding
    fast = tmp_path / "fast.ome.tif"
    args = ("--z-range", "2:10:0.5", "--model", tiny_weights, "-o", fast)
    assert rmz_acq("reconstruct", frames_file, *args, "--precision", "bfloat16").returncode == 0
    span = float(volume.data.max() - volume.data.min())
    assert np.abs(read_zstack(fast).data - volume.data).max() < 0.05 * span
    bad = rmz_acq("reconstruct", frames_file, *args, "--precision", "half")
    assert bad.returncode == 2 and "precision 'half'" in bad.stderr
    # --z overrides the stored positions
    other = tmp_path / "other.ome.tif"
    args = ("--z-range", "2:10:0.5", "--model", tiny_weights, "-o", other, "--z", "1,2,3")
    assert rmz_acq("reconstruct", frames_file, *args).returncode == 0
    assert not np.allclose(read_zstack(other).data, volume.data)
    # --order as-taken: in the file's order, scaled by the first frame's statistics
    taken = tmp_path / "taken.ome.tif"
    args = ("--z-range", "2:10:0.5", "--model", tiny_weights, "-o", taken, "--order", "as-taken")
    assert rmz_acq("reconstruct", frames_file, *args).returncode == 0
    session = ReconstructionSession(load_model(tiny_weights).model, volume.z_um)
    expected = session.run(list(stack.data), list(stack.z_um)).volume
    np.testing.assert_allclose(read_zstack(taken).data, expected, rtol=1e-5, atol=1e-3)
    assert not np.allclose(read_zstack(taken).data, volume.data)
    # longer than the model's training sequences: as-taken by default
    two = tmp_path / "two.safetensors"
    save_weights(
        load_model(tiny_weights).model, two, name="two", extra={"training": '{"max_inputs": 2}'}
    )
    longer = tmp_path / "longer.ome.tif"
    args = ("--z-range", "2:10:0.5", "--model", two, "-o", longer)
    assert rmz_acq("reconstruct", frames_file, *args).returncode == 0
    np.testing.assert_allclose(read_zstack(longer).data, expected, rtol=1e-5, atol=1e-3)


def test_reconstruct_bad_input(tiny_weights: Path, frames_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.ome.tif"
    nan_frames = tmp_path / "nan.ome.tif"
    data = np.ones((2, 16, 16), np.float32)
    data[1, 3, 3] = np.nan
    write_zstack(nan_frames, data, [1.0, 2.0], 0.1)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.ones((2, 16, 16), np.uint16), photometric="minisblack")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 20)
    cases = [
        ((frames_file, "--z-range", "0:1:0.1", "-m", "no-such-model"), "unknown model"),
        ((frames_file, "--z-range", "0:1:0.1", "-m", corrupt), "corrupt"),
        ((frames_file, "--z-range", "5:1:0.1", "-m", tiny_weights), "below start"),
        ((frames_file, "--z-range", "0:1:0.1", "-m", tiny_weights, "--z", "1,2"), "3 frames"),
        ((nan_frames, "--z-range", "0:1:0.1", "-m", tiny_weights), "NaN"),
        ((plain, "--z-range", "0:1:0.1", "-m", tiny_weights), "no z positions"),
        (
            (frames_file, "--z-range", "0:1:0.1", "-m", tiny_weights, "--order", "backwards"),
            "frame order 'backwards' is not one of: as-taken, z",
        ),
    ]
    for args, fragment in cases:
        result = rmz_acq("reconstruct", *args, "-o", out)
        assert result.returncode == 2, (args, result.stderr)
        assert fragment in result.stderr, (fragment, result.stderr)
        assert "Traceback" not in result.stderr
    assert not out.exists()


def test_reconstruct_needs_at_least_one_frame(tiny_weights: Path) -> None:
    empty = FrameSet(np.zeros((0, 8, 8), np.float32), np.zeros(0), 0.1)
    with pytest.raises(RmzError, match="at least one"):
        reconstruct_frames(load_model(tiny_weights), empty, np.array([0.0]))


def test_evaluate_scores_methods_and_writes_json_and_plot(
    tiny_weights: Path, frames_file: Path, tmp_path: Path
) -> None:
    planes = np.arange(0, 10.01, 0.5)
    rng = np.random.default_rng(1)
    truth = (100 + 200 * rng.random((len(planes), 32, 36))).astype(np.uint16)
    truth_path = write_zstack(tmp_path / "gt.ome.tif", truth, planes, 0.1, z_step_um=0.5)
    volume_path = tmp_path / "volume.ome.tif"
    args = ("--z-range", "0:10:0.5", "-m", tiny_weights, "-o", volume_path)
    assert rmz_acq("reconstruct", frames_file, *args).returncode == 0
    result = rmz_acq(
        "evaluate", volume_path, "--ground-truth", truth_path, "--frames", frames_file,
        "--model", tiny_weights, "--beads",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for method in ("recurrent_mz", "nearest_plane", "linear_interpolation", "single_input"):
        assert method in result.stdout
    report = json.loads((tmp_path / "volume.evaluation.json").read_text())
    assert len(report["planes_um"]) == len(planes)
    assert sum(report["input_planes"]) == 3
    beads = report["beads"]
    assert len(beads["nearest_input_um"]) == beads["isolated_beads"]
    for method in ("ground_truth", "recurrent_mz", "single_input"):
        bins = beads[method]["by_input_distance"]
        assert sum(b["beads"] for b in bins) == beads["isolated_beads"]
    assert "distance to the nearest input" in result.stdout
    assert set(report["mean_non_input_planes"]) >= {"recurrent_mz", "linear_interpolation"}
    assert (tmp_path / "volume.psnr.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "volume.fwhm.png").read_bytes()[:4] == b"\x89PNG"
    assert "isolated beads" in result.stdout


def _tiny_training() -> tuple[ImagingConditions, TrainingSettings]:
    conditions = ImagingConditions(
        sample="beads", emission_wavelength_nm=615, depth_um=2.0, voxel_z_um=0.1,
        input_spacing_um=0.8, output_step_um=0.1, photon_flux_per_s=2e6,
    )  # fmt: skip
    settings = TrainingSettings(
        steps=4, crop_px=32, n_volumes=2, fov_px=64, base_channels=2, depth=2,
        checkpoint_every=10, validate_every=2,
    )  # fmt: skip
    return conditions, settings


def test_train_resumes_exactly(tmp_path: Path) -> None:
    conditions, settings = _tiny_training()
    straight = train(tmp_path / "a", conditions, settings, name="t")
    stopped = train(tmp_path / "b", conditions, settings, name="t", stop_after=2)
    assert stopped.weights is None and stopped.steps == 2
    resumed = train(tmp_path / "b", conditions, settings, name="t")
    assert straight.weights is not None and resumed.weights is not None
    a = load_model(straight.weights).model.state_dict()
    b = load_model(resumed.weights).model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4 and "psnr" in log[-1] and "linear_psnr" in log[-1]
    with pytest.raises(RmzError, match="other settings"):
        train(tmp_path / "b", conditions, settings.model_copy(update={"steps": 5}), name="t")


def test_adversarial_training_resumes_exactly_and_changes_the_weights(tmp_path: Path) -> None:
    conditions, plain = _tiny_training()
    settings = plain.model_copy(update={"adversarial_weight": 0.5})
    straight = train(tmp_path / "a", conditions, settings, name="t")
    train(tmp_path / "b", conditions, settings, name="t", stop_after=2)
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert {"discriminator", "discriminator_optimizer"} <= set(state)
    resumed = train(tmp_path / "b", conditions, settings, name="t")
    without = train(tmp_path / "c", conditions, plain, name="t")
    assert straight.weights and resumed.weights and without.weights
    a = load_model(straight.weights).model.state_dict()
    b = load_model(resumed.weights).model.state_dict()
    c = load_model(without.weights).model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert any(not torch.equal(a[key], c[key]) for key in a)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["discriminator"] > 0 and log[-1]["adversarial"] > 0


def test_order_consistency_and_stack_statistics_train_and_log_the_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conditions, plain = _tiny_training()
    settings = plain.model_copy(
        update={
            "order_consistency": 3.0,
            "stack_statistics_fraction": 0.5,
            "saturated_fraction": 0.5,
            "max_inputs": 3,
        }
    )
    samplers: list[trainer_module.TrainingSampler] = []

    class Recorded(trainer_module.TrainingSampler):
        def __post_init__(self) -> None:
            super().__post_init__()
            samplers.append(self)

    monkeypatch.setattr(trainer_module, "TrainingSampler", Recorded)
    paired = train(tmp_path / "a", conditions, settings, name="t")
    # the training-only shares reach the batches
    assert samplers[0].saturated_fraction == 0.5 and samplers[0].stack_statistics_fraction == 0.5
    without = train(tmp_path / "b", conditions, plain, name="t")
    assert paired.weights and without.weights
    a = load_model(paired.weights).model.state_dict()
    c = load_model(without.weights).model.state_dict()
    assert any(not torch.equal(a[key], c[key]) for key in a)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert all(record["order_gap"] >= 0 for record in log) and log[-1]["step"] == 4
    plain_log = (tmp_path / "b" / "log.jsonl").read_text()
    assert "order_gap" not in plain_log


def test_loss_knee_changes_the_training_only_off_the_networks_own(tmp_path: Path) -> None:
    conditions, plain = _tiny_training()  # energy intensities: the network's knee is 3
    runs = {
        name: train(
            tmp_path / name, conditions, plain.model_copy(update={"loss_knee": k}), name="t"
        )
        for name, k in (("plain", None), ("own", 3.0), ("linear", 0.0))
    }
    weights = {name: run.weights for name, run in runs.items()}
    assert all(weights.values())
    state = {name: load_model(w).model.state_dict() for name, w in weights.items() if w}
    for key in state["plain"]:
        torch.testing.assert_close(state["own"][key], state["plain"][key], rtol=0, atol=0)
    assert any(not torch.equal(state["linear"][k], state["plain"][k]) for k in state["plain"])
    assert json.loads(load_model(weights["linear"]).metadata["training"])["loss_knee"] == 0.0


def test_lowpass_weight_joins_the_loss_and_is_logged(tmp_path: Path) -> None:
    conditions, plain = _tiny_training()
    runs = {
        name: train(
            tmp_path / name, conditions, plain.model_copy(update={"lowpass_weight": w}), name="t"
        )
        for name, w in (("plain", 0.0), ("lowpass", 10.0))
    }
    assert runs["plain"].weights and runs["lowpass"].weights
    a = load_model(runs["plain"].weights).model.state_dict()
    b = load_model(runs["lowpass"].weights).model.state_dict()
    assert any(not torch.equal(a[key], b[key]) for key in a)
    log = [
        json.loads(line) for line in (tmp_path / "lowpass" / "log.jsonl").read_text().splitlines()
    ]
    assert all(record["lowpass"] >= 0 for record in log)
    assert "lowpass" not in (tmp_path / "plain" / "log.jsonl").read_text()
    stored = json.loads(load_model(runs["lowpass"].weights).metadata["training"])
    assert stored["lowpass_weight"] == 10.0


def test_train_grows_smaller_weights_and_refuses_larger_ones(tmp_path: Path) -> None:
    conditions, settings = _tiny_training()
    shallow = train(tmp_path / "a", conditions, settings, name="t")
    assert shallow.weights is not None
    deeper = settings.model_copy(update={"depth": 3, "steps": 2})
    grown = train(tmp_path / "b", conditions, deeper, name="t", init_from=shallow.weights)
    assert grown.weights is not None
    model = load_model(grown.weights).model
    assert model.config.depth == 3
    # the old encoders and GRUs start from the given weights, not from scratch
    start = load_model(shallow.weights).model.state_dict()
    kept = [k for k in start if k.startswith(("encoders.", "recurrent."))]
    assert kept
    moved = [float(torch.dist(model.state_dict()[k], start[k]) / start[k].norm()) for k in kept]
    assert max(moved) < 0.1
    # the grown weights remember the stage they started from, then their own
    stages = training_stages(load_model(grown.weights).metadata)
    assert [s["depth"] for s in stages] == [settings.depth, 3]
    assert "earlier_training" not in load_model(shallow.weights).metadata
    # wider and deeper at once: the given weights' channels keep their values
    wider = settings.model_copy(update={"base_channels": 3, "depth": 3, "steps": 1})
    widened = train(tmp_path / "c", conditions, wider, name="t", init_from=shallow.weights)
    assert widened.weights is not None
    model = load_model(widened.weights).model
    assert model.channels == (3, 6, 12)
    old_gates = start["recurrent.0.hidden_forget.weight"]  # 2 x 2 channels
    new_gates = model.state_dict()["recurrent.0.hidden_forget.weight"]
    assert float(torch.dist(new_gates[:2, :2], old_gates) / old_gates.norm()) < 0.1
    shallower = settings.model_copy(update={"depth": 1})
    with pytest.raises(RmzError, match="give matching --base-channels"):
        train(tmp_path / "d", conditions, shallower, name="t", init_from=shallow.weights)


# Python 3.12+ warns on any fork of a threaded process; the loader's workers
# only slice numpy arrays, which is safe.
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_train_with_workers_gives_the_same_weights(tmp_path: Path) -> None:
    conditions, settings = _tiny_training()
    alone = train(tmp_path / "a", conditions, settings, name="t")
    helped = train(tmp_path / "b", conditions, settings, name="t", workers=2)
    assert alone.weights is not None and helped.weights is not None
    a = load_model(alone.weights).model.state_dict()
    b = load_model(helped.weights).model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    with pytest.raises(RmzError, match="workers must be 0 or more, not -1"):
        train(tmp_path / "c", conditions, settings, name="t", workers=-1)


def test_train_stops_at_its_time_limit_and_resumes(tmp_path: Path) -> None:
    conditions, settings = _tiny_training()
    stopped = train(tmp_path / "a", conditions, settings, name="t", time_limit_s=1e-9)
    assert stopped.weights is None and stopped.steps == 1
    assert (tmp_path / "a" / "checkpoint.pt").exists()
    finished = train(tmp_path / "a", conditions, settings, name="t")
    assert finished.weights is not None and finished.steps == 4
    with pytest.raises(RmzError, match="time limit must be positive"):
        train(tmp_path / "b", conditions, settings, name="t", time_limit_s=0)


def test_a_run_the_clock_ends_decays_over_the_clock() -> None:
    from rmz_acq.training.trainer import _learning_rate

    _, settings = _tiny_training()
    long = settings.model_copy(update={"steps": 1_000_000, "learning_rate": 1e-3})
    # by steps, a run stopped after 5000 of a million steps is still at its peak rate
    assert _learning_rate(long, 5000) == pytest.approx(1e-3, rel=1e-3)
    # by the clock, it ends at a twentieth, half-way at the cosine's middle
    assert _learning_rate(long, 5000, elapsed=1.0) == pytest.approx(5e-5)
    assert _learning_rate(long, 5000, elapsed=0.5) == pytest.approx((1e-3 + 5e-5) / 2)
    assert _learning_rate(long, 5000, elapsed=3.0) == pytest.approx(5e-5)  # never below
    assert _learning_rate(long, 10, elapsed=0.9) == pytest.approx(1e-3 * 11 / 100)  # warm-up


def test_annealing_by_time_needs_a_time_limit(tmp_path: Path) -> None:
    conditions, settings = _tiny_training()
    with pytest.raises(RmzError, match="annealing by time needs a time limit"):
        train(tmp_path / "a", conditions, settings, name="t", anneal_by_time=True)
    ended = train(
        tmp_path / "b", conditions, settings, name="t", time_limit_s=1e-9, anneal_by_time=True
    )
    # the clock ended the schedule: weights written after the one step, not a checkpoint to resume
    assert ended.steps == 1 and ended.weights is not None
    assert load_model(ended.weights).metadata["name"] == "t"


def test_train_command_runs_and_stops_with_a_checkpoint(tmp_path: Path) -> None:
    args = ("--preset", "beads", "--volumes", "1", "--crop", "32", "--fov", "64")
    args += ("--batch", "2", "--targets", "1")
    args += ("--base-channels", "2", "--depth", "2", "--steps", "3", "--stop-after", "1")
    args += ("--psf-models", "scalar, vectorial", "--sample-variety", "wide")
    args += ("--ssim-weight", "0")
    result = rmz_acq("train", *args, "-o", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert "run again to resume" in result.stdout
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    stored = json.loads(state["settings"])
    assert (stored["batch_items"], stored["targets_per_item"]) == (2, 1)
    assert stored["psf_models"] == ["scalar", "vectorial"]
    assert stored["sample_varieties"] == ["wide"]
    assert stored["ssim_weight"] == 0
    bad = rmz_acq("train", "--preset", "cells", "-o", tmp_path / "x")
    assert bad.returncode == 2 and "unknown --preset" in bad.stderr
    # widefield trains on the structure families unless told otherwise
    assert default_sample_varieties("widefield") == "structures"
    assert default_sample_varieties("nuclei") == ",".join(TrainingSettings().sample_varieties)
    bad = rmz_acq("train", "--psf-models", "scalar,gaussian", "-o", tmp_path / "x")
    assert bad.returncode == 2 and "--psf-models 'scalar,gaussian'" in bad.stderr
    assert "scalar, vectorial" in bad.stderr
    bad = rmz_acq("train", "--sample-variety", "standard,huge", "-o", tmp_path / "x")
    assert bad.returncode == 2 and "--sample-variety 'standard,huge'" in bad.stderr
    assert "standard, wide" in bad.stderr
    bad = rmz_acq("train", "--families", "nuclei,bacteria", "-o", tmp_path / "x")
    assert bad.returncode == 2 and "--families 'nuclei,bacteria'" in bad.stderr
    assert "filaments" in bad.stderr
    bad = rmz_acq("train", *args, "--crop", "96", "-o", tmp_path / "x")
    assert bad.returncode == 2 and "--crop-px 96 is larger than" in bad.stderr
    bad = rmz_acq("train", *args, "--anneal-by-time", "-o", tmp_path / "x")
    assert bad.returncode == 2 and "needs a time limit (--time-limit-min)" in bad.stderr
    bad = rmz_acq("train", "--optics", "perfect", "-o", tmp_path / "x")
    assert bad.returncode == 2 and "ideal, realistic" in bad.stderr
    bad = rmz_acq("train", "--intensity", "energy,triangle", "-o", tmp_path / "x")
    assert bad.returncode == 2 and "--intensity takes one of" in bad.stderr


def test_train_stores_the_new_settings_and_fine_tunes_across_intensity(tmp_path: Path) -> None:
    conditions, settings = _tiny_training()
    old = train(tmp_path / "a", conditions, settings.model_copy(update={"intensity": "triangle"}),
                name="t")  # fmt: skip
    assert old.weights is not None
    assert load_model(old.weights).model.config.intensity == "triangle"
    # weights learnt on one normalisation may be fine-tuned on the other
    new_settings = settings.model_copy(
        update={"sample_varieties": ("structures",), "structure_families": ("puncta",),
                "optics_varieties": ("realistic",), "steps": 2}
    )  # fmt: skip
    new = train(tmp_path / "b", conditions, new_settings, name="t", init_from=old.weights)
    assert new.weights is not None
    loaded = load_model(new.weights)
    assert loaded.model.config.intensity == "energy"
    stored = json.loads(loaded.metadata["training"])
    assert stored["structure_families"] == ["puncta"]
    assert stored["optics_varieties"] == ["realistic"]


def test_train_takes_unit_names_and_precision_and_keeps_the_old_spellings(
    tmp_path: Path,
) -> None:
    args = ("--preset", "beads", "--volumes", "1", "--batch", "1", "--targets", "1")
    args += ("--base-channels", "2", "--depth", "2", "--steps", "2", "--stop-after", "1")
    new = rmz_acq(
        "train", *args, "--crop-px", "32", "--fov-px", "64", "--time-limit-min", "30",
        "--precision", "bfloat16", "--shuffle-fraction", "1", "-o", tmp_path / "new",
    )  # fmt: skip
    assert new.returncode == 0, new.stderr
    stored = json.loads(torch.load(tmp_path / "new" / "checkpoint.pt")["settings"])
    assert (stored["crop_px"], stored["fov_px"], stored["precision"]) == (32, 64, "bfloat16")
    assert stored["shuffle_fraction"] == 1.0
    old = rmz_acq("train", *args, "--crop", "32", "--fov", "64", "-o", tmp_path / "old")
    assert old.returncode == 0, old.stderr
    stored = json.loads(torch.load(tmp_path / "old" / "checkpoint.pt")["settings"])
    assert (stored["crop_px"], stored["fov_px"], stored["precision"]) == (32, 64, "float32")
    bad = rmz_acq("train", *args, "--precision", "half", "-o", tmp_path / "bad")
    assert bad.returncode == 2 and "bfloat16" in bad.stderr


def test_train_defaults_are_the_training_settings_own() -> None:
    """The command restates no default: each option's is read from TrainingSettings."""
    import typer.main

    from rmz_acq.cli import app

    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    defaults = {p.name: p.default for p in command.params}
    settings = TrainingSettings()
    for option, field in [
        ("steps", "steps"), ("crop_px", "crop_px"), ("batch_items", "batch_items"),
        ("volumes", "n_volumes"), ("learning_rate", "learning_rate"),
        ("max_inputs", "max_inputs"), ("input_plane_fraction", "input_plane_fraction"),
        ("between_fraction", "between_fraction"),
        ("intensity", "intensity"), ("precision", "precision"), ("seed", "seed"),
        ("intensity_jitter", "intensity_jitter"), ("shuffle_fraction", "shuffle_fraction"),
    ]:  # fmt: skip
        assert defaults[option] == getattr(settings, field), option
    assert defaults["psf_models"] == ",".join(settings.psf_models)
    assert defaults["families"] == ",".join(settings.structure_families)


def test_the_model_is_required_where_nothing_can_say_which(
    frames_file: Path, tmp_path: Path
) -> None:
    """No command assumes a preset: only a simulated config's optics may choose one
    (and reconstruct-runs takes the model its runs were made with: test_batch)."""
    grid = ("--z-range", "0:9:1")
    for args in (
        ("reconstruct", frames_file, *grid, "-o", tmp_path / "v.ome.tif"),
        ("evaluate", frames_file, "-g", frames_file, "-f", frames_file),
        ("calibrate", "--stack", frames_file, "-o", tmp_path / "c.safetensors"),
    ):
        result = rmz_acq(*args)
        assert result.returncode == 2 and "--model" in result.stderr, (args, result.stderr)
    result = rmz_acq("validate", "--stack", frames_file, "-o", tmp_path / "check")
    assert result.returncode == 2
    assert "--model is required with --stack" in result.stderr
    assert not (tmp_path / "v.ome.tif").exists()


def test_every_command_that_runs_the_network_explains_device_and_precision() -> None:
    import typer.main

    from rmz_acq.cli import app

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name in ("acquire", "reconstruct", "reconstruct-runs", "evaluate", "validate", "train"):
        options = {p.name: p for p in commands[name].params}
        assert "cuda" in (options["device"].help or ""), name
        assert "bfloat16" in (options["precision"].help or ""), name
    assert "cuda" in (({p.name: p for p in commands["calibrate"].params})["device"].help or "")


@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")  # its workers
def test_through_blend_trains_against_the_initial_weights_filter(tmp_path: Path) -> None:
    from rmz_acq.linear_blend import LinearBlend

    conditions, settings = _tiny_training()
    start = train(tmp_path / "start", conditions, settings, name="t")
    assert start.weights is not None
    loaded = load_model(start.weights)
    with pytest.raises(RmzError, match="carries no linear blend"):
        train(
            tmp_path / "none", conditions,
            settings.model_copy(update={"through_blend": 0.75}), name="t",
            init_from=start.weights,
        )  # fmt: skip
    with pytest.raises(RmzError, match="needs --init"):
        train(
            tmp_path / "no_init", conditions,
            settings.model_copy(update={"through_blend": 0.75}), name="t",
        )  # fmt: skip
    z, stack = trainer_module._settings_volume(conditions, settings, 0).planes()
    blend = LinearBlend.fit([(stack, z)], weight=0.5)
    blended = save_weights(
        loaded.model, tmp_path / "blended.safetensors", name="t", linear_blend=blend
    )
    shares = {"plain": None, "through": 0.75}
    runs = {
        name: train(
            tmp_path / name,
            conditions,
            settings.model_copy(update={"through_blend": share}),
            name="t",
            init_from=blended,
        )
        for name, share in shares.items()
    }
    assert runs["plain"].weights and runs["through"].weights
    a = load_model(runs["plain"].weights)
    b = load_model(runs["through"].weights)
    # the same batches, another loss: other weights
    assert any(not torch.equal(a.model.state_dict()[k], v) for k, v in b.model.state_dict().items())
    # shipped with the filter it was trained to complement, at the share it was trained for
    assert a.linear_blend is None
    assert b.linear_blend is not None and b.linear_blend.weight == 0.75
    np.testing.assert_array_equal(b.linear_blend.spectra, blend.spectra.astype(np.complex64))
    assert json.loads(b.metadata["training"])["through_blend"] == 0.75
    # batches made by worker processes (a GPU lease's --workers) carry the same filter estimate
    helped = train(
        tmp_path / "workers", conditions, settings.model_copy(update={"through_blend": 0.75}),
        name="t", init_from=blended, workers=2,
    )  # fmt: skip
    assert helped.weights is not None
    for key, value in load_model(helped.weights).model.state_dict().items():
        torch.testing.assert_close(value, b.model.state_dict()[key], rtol=0, atol=0)
    # a run killed before its end (a GPU lease) is rescued from its checkpoint with the blend
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu" / "checkpoint_weights.py"
    rescued = tmp_path / "rescued.safetensors"
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "through" / "checkpoint.pt"),
         "--init", str(blended), "--name", "t", "-o", str(rescued)],
        check=True, capture_output=True,
    )  # fmt: skip
    c = load_model(rescued)
    assert c.linear_blend is not None and c.linear_blend.weight == 0.75
    np.testing.assert_array_equal(c.linear_blend.spectra, b.linear_blend.spectra)
    assert all(torch.equal(c.model.state_dict()[k], v) for k, v in b.model.state_dict().items())
