"""The generalisation scoring: cases, order spread, input-plane gain, provenance."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rmz_acq.errors import RmzError
from rmz_acq.evaluation.generalisation import (
    Case,
    CaseScore,
    families_seen_in_training,
    flowdec_stack,
    score_case,
    stack_case,
)
from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.weights import load_model, save_weights, training_stages


def _tiny(tmp_path: Path, training: dict[str, object] | None = None) -> Path:
    torch.manual_seed(0)
    extra = {"training": json.dumps(training)} if training is not None else None
    return save_weights(
        RecurrentMZ(base_channels=2, depth=2), tmp_path / "m.safetensors", name="t", extra=extra
    )


def test_a_stack_case_spreads_the_stack_and_takes_its_nearest_planes() -> None:
    stack = np.arange(10 * 8 * 8, dtype=np.float32).reshape(10, 8, 8)
    case = stack_case("s", stack, 18.0, [3.0, 9.0, 15.0])
    np.testing.assert_allclose(case.planes_um, np.linspace(0, 18, 10))
    # planes 1, 4, 7 of 0, 2, ..., 18 (15 is as near 14 as 16: the lower wins)
    assert case.frames_z_um == [2.0, 8.0, 14.0]
    np.testing.assert_array_equal(case.frames, stack[[1, 4, 7]])
    assert not case.clean
    with pytest.raises(RmzError, match="3\\+ planes"):
        stack_case("flat", stack[:2], 18.0, [3.0])


def test_score_case_counts_orders_and_input_planes(tmp_path: Path) -> None:
    model = load_model(_tiny(tmp_path))
    rng = np.random.default_rng(0)
    planes = np.round(np.arange(0, 4.01, 0.5), 3)
    truth = (100 + 20 * rng.random((len(planes), 16, 16))).astype(np.float32)
    z = [0.5, 2.0, 3.5]
    frames = np.stack([truth[int(np.argmin(np.abs(planes - zi)))] + 3 for zi in z])
    case = Case("toy", frames, z, truth, planes, clean=True)
    score = score_case(model, case, device="cpu")
    assert len(score.order_psnr_db) == 6  # every order of three frames
    assert score.order_spread_db >= 0 and np.isfinite(score.order_spread_db)
    assert score.input_plane_gain_db is not None and len(score.input_plane_gain_db) == 3
    for scale in (score.per_volume, score.truth_scale):
        assert set(scale) == {
            "recurrent_mz",
            "linear_interpolation",
            "nearest_plane",
            "single_input",
        }
    recorded = Case("rec", frames, z, truth, planes, clean=False)
    unordered = score_case(model, recorded, orders=False, device="cpu")
    assert unordered.input_plane_gain_db is None and np.isnan(unordered.z_order_gain_db)
    # frames given out of z order: z_order_db is still the lowest-first order's score
    shuffled = Case("shuffled", frames[[2, 0, 1]], [3.5, 0.5, 2.0], truth, planes, clean=True)
    reordered = score_case(model, shuffled, device="cpu")
    assert score.z_order_db == pytest.approx(score.order_psnr_db[0], abs=1e-9)  # identity
    assert reordered.z_order_db == pytest.approx(score.z_order_db, abs=1e-4)
    assert abs(reordered.order_psnr_db[0] - reordered.z_order_db) > 1e-3  # not the file order
    mean = float(np.mean(reordered.order_psnr_db))
    assert reordered.z_order_gain_db == pytest.approx(reordered.z_order_db - mean)
    # with all the frames' statistics, the order a file holds them in no longer sets the scale
    hazy = Case("hazy", frames + np.array([0, 8, 16], np.float32)[:, None, None], z, truth,
                planes, clean=True)  # fmt: skip
    pooled = score_case(model, hazy, device="cpu", normalization="all")
    pooled_shuffled = score_case(
        model,
        Case("hazy2", hazy.frames[[2, 0, 1]], [3.5, 0.5, 2.0], truth, planes, clean=True),
        device="cpu",
        normalization="all",
    )
    assert pooled_shuffled.z_order_db == pytest.approx(pooled.z_order_db, abs=1e-4)
    first = score_case(model, hazy, device="cpu")
    assert abs(first.z_order_db - pooled.z_order_db) > 1e-3  # type: ignore[operator]
    with pytest.raises(ValueError, match="normalization 'median'"):
        score_case(model, hazy, device="cpu", normalization="median")


def test_per_volume_scale_ignores_gain_and_offset_the_truth_scale_does_not(
    tmp_path: Path,
) -> None:
    from rmz_acq.evaluation.report import evaluate_arrays

    rng = np.random.default_rng(1)
    planes = np.arange(6, dtype=np.float64)
    truth = np.zeros((6, 32, 32), np.float32) + 100
    truth[:, 8:16, 8:16] += 400 * rng.random((6, 8, 8)).astype(np.float32)
    frames = truth[[1, 4]]
    volume = truth + rng.normal(0, 5, truth.shape).astype(np.float32)

    def rmz_psnr(estimate: np.ndarray, scale: str) -> float:
        e = evaluate_arrays(
            estimate,
            planes,
            truth,
            planes,
            frames,
            planes[[1, 4]],
            pixel_um=0.1,
            scale=scale,  # type: ignore[arg-type]
        )
        return e.means()["recurrent_mz"]["psnr"]

    brighter = 2 * volume + 50
    assert rmz_psnr(brighter, "per_volume") == pytest.approx(
        rmz_psnr(volume, "per_volume"), abs=0.2
    )
    assert rmz_psnr(brighter, "truth") < rmz_psnr(volume, "truth") - 10


def test_what_the_training_saw_comes_from_its_settings(tmp_path: Path) -> None:
    legacy = load_model(_tiny(tmp_path))
    assert families_seen_in_training(legacy) == {"own"}
    trained = load_model(
        _tiny(
            tmp_path,
            {"sample_varieties": ["standard", "structures"], "structure_families": ["cells"]},
        )
    )
    assert families_seen_in_training(trained) == {"own", "cells"}
    only = load_model(_tiny(tmp_path, {"sample_varieties": ["structures"]}))
    assert "own" not in families_seen_in_training(only)
    assert "filaments" in families_seen_in_training(only)  # all families by default
    assert "thin-filaments" not in families_seen_in_training(only)
    thin = load_model(
        _tiny(
            tmp_path,
            {
                "sample_varieties": ["structures"],
                "structure_families": ["cells"],
                "thin_fraction": 0.5,
            },
        )
    )
    assert families_seen_in_training(thin) == {"cells", "thin-cells"}


def test_a_stage_from_other_weights_has_seen_what_they_saw(tmp_path: Path) -> None:
    first = {"sample_varieties": ["standard", "structures"], "structure_families": ["nuclei"]}
    last = {"sample_varieties": ["structures"], "structure_families": ["cells"]}
    torch.manual_seed(0)
    path = save_weights(
        RecurrentMZ(base_channels=2, depth=2),
        tmp_path / "m.safetensors",
        name="t",
        extra={"training": json.dumps(last), "earlier_training": json.dumps([first])},
    )
    model = load_model(path)
    assert training_stages(model.metadata) == [first, last]
    assert families_seen_in_training(model) == {"own", "nuclei", "cells"}
    broken = dict(model.metadata, earlier_training="[{")
    with pytest.raises(RmzError, match="not JSON"):
        training_stages(broken)


def test_unknown_flowdec_stack_is_refused() -> None:
    with pytest.raises(RmzError, match="neuron, bead"):
        flowdec_stack("cells")


def test_thin_cases_hold_the_family_in_a_slab_of_the_depth() -> None:
    from rmz_acq.evaluation.generalisation import simulated_cases
    from rmz_acq.training.conditions import PRESET_CONDITIONS

    conditions = PRESET_CONDITIONS["nuclei"].model_copy(update={"depth_um": 8.0})
    planes = np.round(np.arange(0, 8.01, 0.5), 3)
    kwargs = dict(variety="structures", family="cells", n_volumes=1, fov_px=48)
    whole = simulated_cases(conditions, [2.0, 6.0], planes, **kwargs)[0]  # type: ignore[arg-type]
    thin = simulated_cases(conditions, [2.0, 6.0], planes, thin=True, **kwargs)[0]  # type: ignore[arg-type]
    assert (whole.name, thin.name) == ("cells", "thin-cells")

    # the structure's contrast now lives in fewer planes
    def contrast(case: Case) -> np.ndarray:
        return case.truth.std(axis=(1, 2)) / case.truth.mean(axis=(1, 2))

    assert contrast(thin).min() < 0.5 * contrast(whole).min()


def test_the_tables_standard_error_is_that_of_the_margin_over_interpolation() -> None:
    benchmarks = str(Path(__file__).resolve().parents[2] / "benchmarks")
    sys.path.insert(0, benchmarks)
    try:
        margin_se = importlib.import_module("generalisation")._margin_se
    finally:
        sys.path.remove(benchmarks)

    def score(rmz: float, lin: float) -> CaseScore:
        scores = {"recurrent_mz": {"psnr": rmz}, "linear_interpolation": {"psnr": lin}}
        return CaseScore(scores, scores, [], None)

    # margins 1, 2, 3 dB: standard deviation 1, standard error 1 / sqrt(3); the
    # absolute PSNR (20 or 30 dB) does not enter
    se = margin_se([score(21.0, 20.0), score(32.0, 30.0), score(23.0, 20.0)])
    assert se == pytest.approx(1 / np.sqrt(3))
    assert np.isnan(margin_se([score(21.0, 20.0)]))


def test_a_cached_case_is_the_simulated_one_and_a_new_protocol_misses(tmp_path: Path) -> None:
    from rmz_acq.evaluation.generalisation import simulated_cases
    from rmz_acq.training.conditions import PRESET_CONDITIONS

    conditions = PRESET_CONDITIONS["nuclei"].model_copy(update={"depth_um": 6.0})
    planes = np.round(np.arange(0, 6.01, 1.0), 3)
    kwargs = dict(variety="structures", family="puncta", n_volumes=2, fov_px=32, cache=tmp_path)
    fresh = simulated_cases(conditions, [1.0, 4.0], planes, **kwargs)  # type: ignore[arg-type]
    kept = sorted(tmp_path.glob("*.npz"))
    assert len(kept) == 2 and not list(tmp_path.glob("*.partial.npz"))
    again = simulated_cases(conditions, [1.0, 4.0], planes, **kwargs)  # type: ignore[arg-type]
    for a, b in zip(fresh, again, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.truth, b.truth)
        assert (a.name, a.frames_z_um, a.clean) == (b.name, b.frames_z_um, b.clean)
        np.testing.assert_array_equal(a.planes_um, b.planes_um)
    # read back, not simulated again: a volume changed on disk comes back changed
    with np.load(kept[0]) as data:
        frames, truth = data["frames"], data["truth"]
    np.savez(kept[0], frames=frames + 1.0, truth=truth)
    third = simulated_cases(conditions, [1.0, 4.0], planes, **kwargs)  # type: ignore[arg-type]
    assert any(np.allclose(c.frames, f.frames + 1.0) for c in third for f in fresh)
    # other input planes are another protocol: new files, not the kept ones
    simulated_cases(conditions, [2.0, 4.0], planes, **kwargs)  # type: ignore[arg-type]
    assert len(list(tmp_path.glob("*.npz"))) == 4
