"""Training batches: where the targets are drawn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rmz_acq.errors import RmzError
from rmz_acq.model.normalization import IntensityNormalization
from rmz_acq.training.data import (
    SATURATED_SHARE,
    StackVolume,
    TrainingSampler,
    between_z,
    other_order,
    saturation_ceiling,
)


def _stack_with_one_sharp_plane(sharp: int = 7) -> StackVolume:
    rng = np.random.default_rng(0)
    data = 100 + rng.normal(0, 1, (20, 64, 64)).astype(np.float32)
    data[sharp, ::8, ::8] += 500.0  # a grid of points: every crop sees some
    return StackVolume(data, np.arange(20) * 0.5)


def _peak_scores(targets: torch.Tensor) -> np.ndarray:
    """Peak height in noise standard deviations (independent of normalisation)."""
    t = targets.flatten(1).numpy()
    median = np.median(t, axis=1, keepdims=True)
    noise = np.median(np.abs(t - median), axis=1) * 1.4826
    return (t.max(axis=1) - median[:, 0]) / noise


def test_in_focus_z_is_the_sharp_plane() -> None:
    volume = _stack_with_one_sharp_plane()
    sampler = TrainingSampler([volume], 1.5, crop_px=32, focus_fraction=1.0)
    rng = np.random.default_rng(2)
    crop = (slice(10, 42), slice(20, 52))
    assert {sampler.in_focus_z(volume, crop, rng) for _ in range(20)} == {3.5}


def test_focus_fraction_draws_targets_where_the_crop_is_sharp() -> None:
    volume = _stack_with_one_sharp_plane()
    focused = TrainingSampler([volume], 1.5, crop_px=32, items=2, focus_fraction=1.0)
    uniform = TrainingSampler([volume], 1.5, crop_px=32, items=2, focus_fraction=0.0)
    away = [0.0, 1.5, 6.0, 9.0]  # inputs away from the sharp plane (z = 3.5)
    for sampler in (focused, uniform):
        sampler.input_planes = lambda rng, m, z_range: away[:m]  # type: ignore[method-assign]
    rng = np.random.default_rng(3)
    sharp = np.concatenate([_peak_scores(focused.sample(rng).targets) for _ in range(10)])
    flat = np.concatenate([_peak_scores(uniform.sample(rng).targets) for _ in range(10)])
    assert (sharp > 50).all()
    # a uniform draw over 20 planes lands on the sharp one rarely
    assert (flat > 50).mean() < 0.3


def test_m_weights_extend_the_first_four() -> None:
    volume = _stack_with_one_sharp_plane()
    four = TrainingSampler([volume], 1.5).m_weights
    np.testing.assert_allclose(four, [0.1, 0.25, 0.4, 0.25])
    nine = TrainingSampler([volume], 1.5, max_inputs=9).m_weights
    assert nine.shape == (9,) and np.isclose(nine.sum(), 1.0)
    np.testing.assert_allclose(nine[4:], nine[3])  # each M above 4 as likely as 4
    np.testing.assert_allclose(
        TrainingSampler([volume], 1.5, max_inputs=2).m_weights, [2 / 7, 5 / 7]
    )


def test_long_share_keeps_the_short_sequences_weights() -> None:
    volume = _stack_with_one_sharp_plane()
    nine = TrainingSampler([volume], 1.5, max_inputs=9).m_weights
    long = TrainingSampler([volume], 1.5, max_inputs=17, long_share=0.3).m_weights
    assert long.shape == (17,) and np.isclose(long.sum(), 1.0)
    np.testing.assert_allclose(long[:9], 0.7 * nine)  # M <= 9 as at --max-inputs 9
    np.testing.assert_allclose(long[9:], 0.3 / 8)  # M = 10-17 share 0.3 equally
    # without it, M = 3 (the order-spread protocol) is half as frequent at 17
    plain = TrainingSampler([volume], 1.5, max_inputs=17).m_weights
    assert plain[2] < 0.6 * nine[2] < long[2]
    # up to nine frames there is nothing long to weigh
    np.testing.assert_allclose(
        TrainingSampler([volume], 1.5, max_inputs=9, long_share=0.3).m_weights, nine
    )
    with pytest.raises(RmzError, match=r"long_share must be at least 0 and below 1, not 1\.0"):
        TrainingSampler([volume], 1.5, max_inputs=17, long_share=1.0)


def test_sequences_reach_max_inputs_and_stay_in_range() -> None:
    volume = _stack_with_one_sharp_plane()  # 0-9.5 um
    sampler = TrainingSampler([volume], 3.0, crop_px=32, items=1, targets_per_item=1, max_inputs=9)
    lengths = {sampler.sample(np.random.default_rng(s)).frames.shape[1] for s in range(60)}
    assert max(lengths) == 9 and min(lengths) == 1
    rng = np.random.default_rng(5)
    for _ in range(50):
        z = np.asarray(sampler.input_planes(rng, 8, volume.z_range_um))
        assert z.min() >= 0.0 and z.max() <= 9.5
        # eight frames 3 um apart cannot fit in 9.5 um: the grid is made denser
        # instead of piling frames up at the end of the range
        assert np.isclose(z, 9.5).sum() <= 1


def test_max_inputs_below_one_is_an_error() -> None:
    with pytest.raises(RmzError, match="max_inputs must be 1 or more, not 0"):
        TrainingSampler([_stack_with_one_sharp_plane()], 1.5, max_inputs=0)


def test_scan_order_sequences_come_coarse_to_fine() -> None:
    volume = _stack_with_one_sharp_plane()  # 0-9.5 um
    scans = TrainingSampler([volume], 3.0, scan_order_fraction=1.0)
    plain = TrainingSampler([volume], 3.0, shuffle_probability=0.0)
    rng = np.random.default_rng(6)
    for _ in range(40):
        z = np.asarray(scans.input_planes(rng, 5, volume.z_range_um))
        assert z.min() >= 0.0 and z.max() <= 9.5
        # bisection or centre-out: the first frame lies between the next two
        assert min(z[1], z[2]) < z[0] < max(z[1], z[2])
        # neither sorted (the grid's order) nor piled up
        assert not np.all(np.diff(z) > 0)
        assert np.diff(np.sort(z)).min() > 0.2
    # without it, a sequence with shuffling off is in z order
    z = np.asarray(plain.input_planes(rng, 3, volume.z_range_um))
    assert np.all(np.diff(z) >= 0)


def test_shuffle_fraction_sets_the_share_of_sequences_out_of_z_order() -> None:
    volume = _stack_with_one_sharp_plane()  # 0-9.5 um
    rng = np.random.default_rng(8)

    def sorted_share(shuffle: float) -> float:
        sampler = TrainingSampler([volume], 3.0, shuffle_probability=shuffle)
        draws = [np.asarray(sampler.input_planes(rng, 3, volume.z_range_um)) for _ in range(600)]
        return float(np.mean([np.all(np.diff(z) >= 0) for z in draws]))

    # a quarter of the sequences lie anywhere in the range, in the order drawn
    # (sorted one time in six); of the gridded rest, the share not shuffled is in z order
    assert abs(sorted_share(0.0) - (0.75 + 0.25 / 6)) < 0.05
    assert abs(sorted_share(0.5) - (0.75 * (0.5 + 0.5 / 6) + 0.25 / 6)) < 0.06
    assert abs(sorted_share(1.0) - 1 / 6) < 0.05


def test_psf_model_changes_the_optics_and_nothing_else() -> None:
    from rmz_acq.training.conditions import PRESET_CONDITIONS
    from rmz_acq.training.data import make_simulated_volume

    conditions = PRESET_CONDITIONS["beads"]
    scalar = make_simulated_volume(conditions, 5, 64)
    vectorial = make_simulated_volume(conditions, 5, 64, ("vectorial",))
    # same specimen, flux and camera: the draw of the model has its own stream
    assert scalar.photons_per_unit == vectorial.photons_per_unit
    assert scalar.camera == vectorial.camera
    # the same beads, each spread wider by the vectorial spot: lower peaks, same light
    a, b = scalar.stack.stack, vectorial.stack.stack
    assert b.max() < 0.9 * a.max()
    assert b.sum() == pytest.approx(a.sum(), rel=0.02)


def test_a_mixed_list_gives_each_volume_one_of_its_models() -> None:
    from rmz_acq.training.data import draw_psf_model

    drawn = [draw_psf_model(seed, ("scalar", "vectorial")) for seed in range(40)]
    assert 10 < drawn.count("vectorial") < 30
    assert drawn == [draw_psf_model(seed, ("scalar", "vectorial")) for seed in range(40)]
    assert {draw_psf_model(seed, ("vectorial",)) for seed in range(10)} == {"vectorial"}


def test_unknown_psf_model_is_refused() -> None:
    from rmz_acq.training.conditions import PRESET_CONDITIONS
    from rmz_acq.training.data import make_simulated_volume

    with pytest.raises(RmzError, match="psf_models"):
        make_simulated_volume(PRESET_CONDITIONS["beads"], 5, 64, ("gaussian",))  # type: ignore[arg-type]
    with pytest.raises(RmzError, match="psf_models"):
        make_simulated_volume(PRESET_CONDITIONS["beads"], 5, 64, ())


def test_wide_variety_redraws_the_sample_and_keeps_optics_and_camera() -> None:
    from rmz_acq.training.conditions import PRESET_CONDITIONS
    from rmz_acq.training.data import make_simulated_volume

    conditions = PRESET_CONDITIONS["beads"]
    standard = make_simulated_volume(conditions, 3, 64)
    wide = make_simulated_volume(conditions, 3, 64, sample_varieties=("wide",))
    assert standard.camera == wide.camera
    assert standard.photons_per_unit == wide.photons_per_unit
    assert standard.stack.stack.shape == wide.stack.stack.shape
    assert not np.array_equal(standard.stack.stack, wide.stack.stack)
    # "standard" alone is the default: the volumes model cards are scored on
    again = make_simulated_volume(conditions, 3, 64, sample_varieties=("standard",))
    np.testing.assert_array_equal(standard.stack.stack, again.stack.stack)


def test_wide_nuclei_stay_within_their_stated_ranges() -> None:
    from rmz_acq.training.data import _wide_sample
    from simulators.samples import NucleiSample

    specs = [_wide_sample(NucleiSample(seed=s), s) for s in range(200)]
    lows = np.array([s.diameter_range_um[0] for s in specs])
    highs = np.array([s.diameter_range_um[1] for s in specs])
    assert lows.min() >= 1.5 and highs.max() <= 7.0 and np.all(highs > lows)
    assert highs.max() > 6.0 and lows.min() < 1.7  # the range is used, not just allowed
    bands = np.array([s.band_half_width_um for s in specs])
    assert bands.min() >= 8.0 and bands.max() <= 45.0
    contrast = np.array([s.chromatin_contrast for s in specs])
    assert contrast.max() > 0.5 and contrast.min() < 0.05
    # packing fraction 3-25 %: large nuclei come fewer to the cubic micrometre
    packing = [
        s.nuclei_per_1000_um3 / 1000 * np.pi / 6 * np.mean(np.linspace(*s.diameter_range_um) ** 3)
        for s in specs
    ]
    assert min(packing) > 0.025 and max(packing) < 0.26


def test_sample_varieties_are_drawn_per_volume_and_checked() -> None:
    from rmz_acq.training.conditions import PRESET_CONDITIONS
    from rmz_acq.training.data import draw_psf_model, draw_sample_variety, make_simulated_volume

    both = ("standard", "wide")
    drawn = [draw_sample_variety(seed, both) for seed in range(40)]  # type: ignore[arg-type]
    assert 10 < drawn.count("wide") < 30
    # a stream apart from the PSF model's: the two draws are not the same coin
    psf = [draw_psf_model(seed, ("scalar", "vectorial")) for seed in range(40)]
    assert [d == "wide" for d in drawn] != [p == "vectorial" for p in psf]
    with pytest.raises(RmzError, match="sample_varieties"):
        make_simulated_volume(PRESET_CONDITIONS["beads"], 5, 64, sample_varieties=("odd",))  # type: ignore[arg-type]


def test_sample_settings_override_the_drawn_sample_and_are_validated() -> None:
    from rmz_acq.training.conditions import PRESET_CONDITIONS
    from rmz_acq.training.data import make_simulated_volume

    conditions = PRESET_CONDITIONS["beads"]
    drawn = make_simulated_volume(conditions, 4, 64)
    none = make_simulated_volume(conditions, 4, 64, sample_settings={"density_per_1000_um3": 0})
    # no beads: only the flat background is left; camera and flux unchanged
    assert drawn.stack.stack.max() > 0 and none.stack.stack.max() == 0
    assert none.camera == drawn.camera
    with pytest.raises(RmzError, match="density_per_1000_um3"):
        make_simulated_volume(conditions, 4, 64, sample_settings={"density_per_1000_um3": -1})
    with pytest.raises(RmzError, match="diameter"):
        make_simulated_volume(conditions, 4, 64, sample_settings={"diameter_um": 3})


def test_structures_variety_draws_only_the_allowed_families() -> None:
    from rmz_acq.training.conditions import PRESET_CONDITIONS
    from rmz_acq.training.data import _structure_sample

    conditions = PRESET_CONDITIONS["nuclei"]
    allowed = ("cells", "puncta", "tissue")
    drawn = [_structure_sample(conditions, s, allowed) for s in range(60)]  # type: ignore[arg-type]
    used = {f for spec in drawn for f in spec.families}
    assert used == set(allowed)  # each allowed family comes up; nothing else does
    sizes = [len(spec.families) for spec in drawn]
    assert min(sizes) == 1 and max(sizes) == 3  # single families and mixtures
    assert max(spec.brightness_decades for spec in drawn) > 1.5
    with pytest.raises(RmzError, match="structure families"):
        _structure_sample(conditions, 0, ("nuclei", "bacteria"))  # type: ignore[arg-type]


def test_a_family_named_twice_is_drawn_more_often_and_unnamed_twice_as_before() -> None:
    from rmz_acq.training.conditions import PRESET_CONDITIONS
    from rmz_acq.training.data import _structure_sample

    conditions = PRESET_CONDITIONS["nuclei"]
    plain = ("nuclei", "cells", "puncta", "tissue")
    weighted = ("nuclei", "cells", "cells", "cells", "puncta", "tissue")
    seeds = range(400)

    def share(families: tuple[str, ...]) -> float:
        drawn = [_structure_sample(conditions, s, families) for s in seeds]  # type: ignore[arg-type]
        assert all(len(set(d.families)) == len(d.families) for d in drawn)  # distinct
        return sum("cells" in d.families for d in drawn) / len(drawn)

    assert share(weighted) > share(plain) + 0.1
    # the same seed and the same families without a repeat: the same field as before
    spec = _structure_sample(conditions, 7, plain)  # type: ignore[arg-type]
    assert spec == _structure_sample(conditions, 7, plain)  # type: ignore[arg-type]
    assert set(_structure_sample(conditions, 7, weighted).families) <= set(plain)  # type: ignore[arg-type]


def test_thin_fraction_confines_that_share_of_structure_volumes_to_a_slab() -> None:
    from rmz_acq.training.conditions import PRESET_CONDITIONS
    from rmz_acq.training.data import _structure_sample, _thin

    conditions = PRESET_CONDITIONS["nuclei"]
    specs = [_structure_sample(conditions, s, ("nuclei", "cells")) for s in range(200)]
    assert all(_thin(spec, s, 0.0) is spec for s, spec in enumerate(specs))
    thin = [_thin(spec, s, 0.4) for s, spec in enumerate(specs)]
    slabs = [t.slab_um for t in thin if t.slab_um is not None]
    assert 0.3 < len(slabs) / len(specs) < 0.5
    depth = conditions.depth_um
    for lo, hi in slabs:
        assert lo >= 0.0 and hi <= depth and 0.15 * depth <= hi - lo <= 0.6 * depth
    # everything else about the sample is as drawn
    for t, spec in zip(thin, specs, strict=True):
        assert t.model_copy(update={"slab_um": None}) == spec
    # a larger share keeps the thin ones thin: one draw per seed
    more = [_thin(spec, s, 0.8).slab_um for s, spec in enumerate(specs)]
    assert all(m == t.slab_um for m, t in zip(more, thin, strict=True) if t.slab_um is not None)
    with pytest.raises(RmzError, match="thin fraction"):
        _thin(specs[0], 0, 1.5)


def test_realistic_optics_add_aberration_focal_shift_and_haze_only() -> None:
    from rmz_acq.training.conditions import PRESET_CONDITIONS
    from rmz_acq.training.data import make_simulated_volume

    conditions = PRESET_CONDITIONS["beads"]
    seeds = range(4)
    ideal = [make_simulated_volume(conditions, s, 64) for s in seeds]
    real = [
        make_simulated_volume(conditions, s, 64, optics_varieties=("realistic",)) for s in seeds
    ]
    for a, b in zip(ideal, real, strict=True):
        assert a.camera == b.camera and a.axial_scale == 1.0 and a.haze_photons is None
        assert 0.8 <= b.axial_scale <= 1.0
        assert b.stack.stack.shape == a.stack.stack.shape
    assert any(b.haze_photons is not None for b in real)
    # the focal shift squeezes the stage range onto less of the sample
    b = next(v for v in real if v.axial_scale < 0.95)
    z, _ = b.planes()
    lo, hi = b.z_range_um
    assert z[0] < lo and z[-1] > hi
    rng = np.random.default_rng(0)
    assert b.frame(lo, rng).shape == (64, 64)


def test_input_plane_targets_sit_on_an_input() -> None:
    volume = _stack_with_one_sharp_plane()
    sampler = TrainingSampler(
        [volume], 1.5, crop_px=32, items=2, max_inputs=3, input_plane_fraction=1.0
    )
    batch = sampler.sample(np.random.default_rng(5))
    # every target's DPM is zero for one of its inputs
    assert bool((batch.dpm_um.abs().min(dim=1).values < 1e-6).all())


def test_between_targets_lie_inside_a_gap_between_two_inputs() -> None:
    """Every target with inputs on both sides: DPMs of both signs, none zero."""
    volume = StackVolume(
        100 + np.random.default_rng(3).normal(0, 1, (40, 64, 64)).astype(np.float32),
        np.arange(40) * 0.5,
    )
    sampler = TrainingSampler(
        [volume], 6.0, crop_px=32, items=4, max_inputs=4, between_fraction=1.0
    )
    rng = np.random.default_rng(4)
    checked = 0
    for _ in range(30):
        batch = sampler.sample(rng)
        dpm = batch.dpm_um.numpy()
        for row in dpm:
            inputs = np.unique(np.round(-row, 6))  # the inputs' z relative to the target
            # a gap of adjacent stack planes holds no free plane to draw from
            if len(inputs) < 2 or np.diff(inputs).min() < 1.0:
                continue
            assert row.min() < 0 < row.max(), row
            assert np.abs(row).min() > 0.25, row
            checked += 1
    assert checked > 20


def test_between_z_is_inside_a_gap_and_needs_two_inputs() -> None:
    rng = np.random.default_rng(0)
    draws = [between_z([15.0, 3.0, 9.0], rng) for _ in range(200)]
    assert min(draws) > 3.0 and max(draws) < 15.0
    assert min(draws) < 9.0 < max(draws)  # both gaps are drawn
    with pytest.raises(RmzError, match="two different input z"):
        between_z([4.0, 4.0], rng)


def test_stack_targets_avoid_the_inputs_planes_unless_asked() -> None:
    """On a recorded stack a target at an input's z is that frame, noise and all."""
    volume = StackVolume(np.zeros((4, 64, 64), np.float32) + 100, np.arange(4) * 1.0)
    sampler = TrainingSampler([volume], 1.0, crop_px=32, items=8, max_inputs=3)
    sampler.input_plane_fraction = 0.0
    rng = np.random.default_rng(2)
    for _ in range(20):
        batch = sampler.sample(rng)
        m = batch.dpm_um.shape[1]
        if m < 4:  # some plane is free: the target is never one the inputs took
            assert bool((batch.dpm_um.abs().min(dim=1).values > 0.5).all())
    # the sharpest plane is an input: the in-focus target moves beside it
    sharp = _stack_with_one_sharp_plane()
    focused = TrainingSampler([sharp], 1.5, crop_px=32, items=4, focus_fraction=1.0)
    focused.input_planes = lambda rng, m, z_range: [3.5]  # type: ignore[method-assign]
    batch = focused.sample(np.random.default_rng(1))
    assert sorted(set(batch.dpm_um[:, 0].abs().tolist())) == [0.5]
    # every plane taken (four inputs of a four-plane stack): a target still comes
    sampler.max_inputs = 4
    sampler.input_planes = lambda rng, m, z_range: [0.0, 1.0, 2.0, 3.0][:m]  # type: ignore[method-assign]
    assert sampler.sample(np.random.default_rng(0)).targets.shape[0] == 16


def test_intensity_jitter_moves_half_the_statistics_within_its_bounds() -> None:
    """Jittered sequences keep one normalisation for inputs and targets, bounded."""
    volume = _stack_with_one_sharp_plane()
    factor = 3.0
    sampler = TrainingSampler(
        [volume],
        1.5,
        crop_px=64,  # the whole frame, so the first input is the whole first frame
        items=40,
        targets_per_item=1,
        max_inputs=2,
        intensity="triangle",  # linear, so the statistics can be read back exactly
        input_plane_fraction=1.0,
        intensity_jitter=factor,
    )
    batch = sampler.sample(np.random.default_rng(3))
    moved = 0
    for frames, dpm, target in zip(batch.frames, batch.dpm_um, batch.targets, strict=True):
        # the target sits on an input and went through the same normalisation
        j = int(dpm.abs().argmin())
        assert torch.equal(target[0], frames[j])
        # which plane the first input is (its noise is its own), and the statistics read
        # back from it: normalised = (raw - shift) / scale
        first = frames[0].double().numpy().ravel()
        pattern = (first - first.mean()) / first.std()
        plane = next(
            p
            for p in volume.data
            if np.allclose((p.ravel() - p.mean()) / p.std(), pattern, atol=1e-3)
        )
        slope, intercept = np.polyfit(plane.astype(np.float64).ravel(), first, 1)
        scale, shift = 1 / slope, -intercept / slope
        natural = IntensityNormalization.from_frame(plane, method="triangle")
        assert natural.scale / factor - 1e-3 <= scale <= natural.scale * factor + 1e-3
        assert abs(shift - natural.shift) <= natural.scale * (factor - 1) / 2 + 1e-3
        moved += not np.isclose(scale, natural.scale, rtol=1e-4)
    assert 5 <= moved <= 35  # about half of the 40 sequences


def test_intensity_jitter_below_one_is_refused() -> None:
    with pytest.raises(RmzError, match="intensity_jitter"):
        TrainingSampler([_stack_with_one_sharp_plane()], 1.5, intensity_jitter=0.5)


def test_stack_statistics_normalise_by_all_frames() -> None:
    """With the share at 1, every sequence is scaled as a z-stack is, not by its first frame."""
    volume = _stack_with_one_sharp_plane()
    sampler = TrainingSampler(
        [volume], 1.5, crop_px=64, items=3, targets_per_item=1, max_inputs=2,
        intensity="triangle", stack_statistics_fraction=1.0,
    )  # fmt: skip
    sampler.input_planes = lambda rng, m, z_range: [0.0, 3.5][:m]  # type: ignore[method-assign]
    raw = [volume.data[0], volume.data[7]]  # the first frame is dim, the second sharp
    stack = IntensityNormalization.from_frames(raw, method="triangle")
    first = IntensityNormalization.from_frame(raw[0], method="triangle")
    assert not np.isclose(stack.scale, first.scale, rtol=1e-2)
    for seed in range(6):
        batch = sampler.sample(np.random.default_rng(seed))
        m = batch.frames.shape[1]
        scaled = stack if m == 2 else first  # one frame: its own statistics are the stack's
        for frames in batch.frames:
            np.testing.assert_allclose(
                frames.numpy(), np.stack([scaled.apply(f) for f in raw[:m]]), rtol=1e-5, atol=1e-5
            )


def test_saturation_ceiling_clips_a_share_within_its_bounds() -> None:
    rng = np.random.default_rng(3)
    frames = [rng.gamma(2.0, 50.0, (64, 64)) for _ in range(3)]
    pixels = np.concatenate([f.ravel() for f in frames])
    for seed in range(20):
        ceiling = saturation_ceiling(frames, np.random.default_rng(seed))
        share = np.mean(pixels >= ceiling)
        assert SATURATED_SHARE[0] * 0.5 <= share <= SATURATED_SHARE[1] * 1.05


def test_saturated_sequences_clip_frames_and_targets_at_one_ceiling() -> None:
    """A clipped sequence's targets never pass the ceiling its frames reach."""
    volume = _stack_with_one_sharp_plane()
    kwargs = dict(crop_px=64, items=4, targets_per_item=2, max_inputs=3, intensity="triangle")
    clipped = TrainingSampler([volume], 1.5, saturated_fraction=1.0, **kwargs)  # type: ignore[arg-type]
    plain = TrainingSampler([volume], 1.5, **kwargs)  # type: ignore[arg-type]

    def above_frames(sampler: TrainingSampler, seed: int) -> int:
        """Targets brighter than every frame of their sequence."""
        batch = sampler.sample(np.random.default_rng(seed))
        return sum(
            int(target.max() > frames.max() + 1e-5)
            for frames, target in zip(batch.frames, batch.targets, strict=True)
        )

    # unclipped, targets at the sharp plane outshine frames taken away from it
    assert sum(above_frames(plain, seed) for seed in range(6)) > 0
    assert sum(above_frames(clipped, seed) for seed in range(6)) == 0


def test_order_pairs_hold_each_sequence_in_two_orders() -> None:
    volume = _stack_with_one_sharp_plane()
    sampler = TrainingSampler(
        [volume], 1.5, crop_px=32, items=3, targets_per_item=2, max_inputs=4, order_pairs=True
    )
    # distinct recorded planes, so each frame can be told from the others
    sampler.input_planes = lambda rng, m, z_range: [0.0, 2.0, 4.0, 6.0][:m]  # type: ignore[method-assign]
    rng = np.random.default_rng(5)
    seen_m = set()
    for _ in range(8):
        batch = sampler.sample(rng)
        assert batch.pairs and batch.frames.shape[0] == 12  # 3 items x 2 targets x 2 orders
        m = batch.frames.shape[1]
        seen_m.add(m)
        for k in range(0, 12, 2):
            assert torch.equal(batch.targets[k], batch.targets[k + 1])
            a, b = batch.frames[k], batch.frames[k + 1]
            # the same frames with the same distances, matched frame by frame
            order = [next(j for j in range(m) if torch.equal(b[i], a[j])) for i in range(m)]
            assert sorted(order) == list(range(m))
            assert torch.equal(batch.dpm_um[k + 1], batch.dpm_um[k][order])
            assert m == 1 or order != list(range(m))
    assert seen_m - {1}


def test_other_order_never_returns_the_given_one() -> None:
    rng = np.random.default_rng(0)
    for m in (2, 3):
        for _ in range(50):
            order = other_order(m, rng)
            assert sorted(order.tolist()) == list(range(m)) and order.tolist() != list(range(m))
    assert other_order(1, rng).tolist() == [0]


def test_training_settings_reach_the_simulated_volumes_thin_specimen() -> None:
    from rmz_acq.training.conditions import PRESET_CONDITIONS
    from rmz_acq.training.data import _structure_sample, _thin
    from rmz_acq.training.settings import TrainingSettings
    from rmz_acq.training.trainer import _settings_volume

    conditions = PRESET_CONDITIONS["nuclei"].model_copy(update={"depth_um": 8.0})
    families = ("nuclei", "cells")
    seed = next(
        s
        for s in range(100)
        if (slab := _thin(_structure_sample(conditions, s, families), s, 1.0).slab_um)
        and slab[0] > 4.5  # specimen high up: the bottom is empty
    )
    settings = TrainingSettings(
        fov_px=64, sample_varieties=("structures",), structure_families=families
    )
    whole = _settings_volume(conditions, settings, seed)
    thin = _settings_volume(conditions, settings.model_copy(update={"thin_fraction": 1.0}), seed)
    # at the bottom only far out-of-focus light is left: a much flatter frame
    assert thin.target(0.0).std() < 0.5 * whole.target(0.0).std()
    assert thin.camera == whole.camera


class _RecordingStack(StackVolume):
    """A stack that remembers the z of every target drawn from it."""

    asked: list[float]

    def target(self, z_um: float) -> np.ndarray:
        self.asked.append(z_um)
        return super().target(z_um)


def test_blend_sampler_carries_the_filter_estimate_and_keeps_the_batches() -> None:
    """Every covered target comes with the filter's estimate from the same frames."""
    from rmz_acq.linear_blend import LinearBlend, LinearFilter

    rng = np.random.default_rng(4)
    data = 100 + 20 * rng.random((21, 64, 64)).astype(np.float32)
    volume = _RecordingStack(data, np.arange(21) * 0.5)
    blend = LinearBlend.fit([(data, volume.z_um)], weight=0.75)
    plain = TrainingSampler([volume], 3.0, crop_px=32, items=3, max_inputs=3, between_fraction=1)
    blended = TrainingSampler(
        [volume], 3.0, crop_px=32, items=3, max_inputs=3, between_fraction=1,
        input_plane_fraction=0.3, blend=blend,
    )  # fmt: skip
    plain.input_plane_fraction = 0.3
    covered = at_frames = 0
    for step in range(6):
        volume.asked = []
        a = plain.sample(np.random.default_rng(step))
        volume.asked = []
        b = blended.sample(np.random.default_rng(step))
        # the filter draws nothing at random: the same frames and targets as without it
        assert a.prior is None and a.share is None
        torch.testing.assert_close(a.frames, b.frames, rtol=0, atol=0)
        torch.testing.assert_close(a.targets, b.targets, rtol=0, atol=0)
        assert b.prior is not None and b.share is not None
        for i, (z_out, share) in enumerate(zip(volume.asked, b.share.tolist(), strict=True)):
            z_in = [z_out - float(d) for d in b.dpm_um[i]]
            linear = LinearFilter(blend, 5.0)  # the middle of the volume's 0-10 um
            for frame, z in zip(b.frames[i].numpy(), z_in, strict=True):
                linear.add(frame, z)
            if not linear.covers([z_out])[0]:  # at a frame: the network alone
                assert share == 1.0 and float(b.prior[i].abs().max()) == 0.0
                at_frames += 1
                continue
            assert share == 0.75
            expected = linear.planes([z_out])[0]
            np.testing.assert_allclose(b.prior[i, 0].numpy(), expected, rtol=1e-4, atol=1e-4)
            covered += 1
    assert covered > 0 and at_frames > 0
