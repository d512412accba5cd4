"""The linear filter calibrated on the user's stacks, and its blend with the network."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from rmz_acq.errors import RmzError
from rmz_acq.evaluation.baselines import linear_interpolation
from rmz_acq.evaluation.metrics import psnr
from rmz_acq.linear_blend import LinearBlend, LinearFilter, SpectraBank, cross_spectra, rings_of
from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.weights import load_model, save_weights
from rmz_acq.session import ReconstructionSession
from rmz_acq.training.conditions import PRESET_CONDITIONS

Z = np.round(np.arange(0.0, 4.01, 0.1), 6)  # 41 planes
FRAMES = [5, 20, 35]  # 0.5, 2.0 and 3.5 um


def defocus_stack(seed: int, z0: float = 1.6, offset: float = 10.0) -> np.ndarray:
    """A thin textured specimen at ``z0`` seen through a Gaussian defocus blur."""
    rng = np.random.default_rng(seed)
    texture = np.fft.fft2(rng.random((48, 48)))
    fy = np.fft.fftfreq(48)[:, None]
    fx = np.fft.fftfreq(48)[None, :]
    planes = []
    for z in Z:
        sigma = 0.6 + 2.5 * abs(z - z0)  # px
        otf = np.exp(-2 * np.pi**2 * sigma**2 * (fx**2 + fy**2))
        planes.append(np.fft.ifft2(texture * otf).real)
    return offset + 20 * np.stack(planes)


def filtered(blend: LinearBlend, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    linear = LinearFilter(blend, 2.0)
    for i in FRAMES:
        linear.add(stack[i], float(Z[i]))
    return linear.planes(Z), linear.covers(Z)


def test_cross_spectra_are_the_frames_ring_sums() -> None:
    rng = np.random.default_rng(0)
    planes = rng.random((3, 12, 10))
    spectra = cross_spectra(planes, 4)
    f = np.fft.rfft2(planes)
    ring = rings_of((12, 10), 4)
    assert ring[0, 0] == -1 and set(np.unique(ring)) == {-1, 0, 1, 2, 3}
    for r in range(4):
        band = ring == r
        expected = np.sum(np.conj(f[0][band]) * f[2][band])
        assert spectra[r, 0, 2] == pytest.approx(expected)
    # Hermitian in the planes: the normal equations are well posed
    np.testing.assert_allclose(spectra, np.conj(np.swapaxes(spectra, 1, 2)))


def test_a_filter_fitted_on_one_field_refocuses_another() -> None:
    """Fitted on specimen A's stack, the filter beats linear interpolation on specimen B."""
    blend = LinearBlend.fit([(defocus_stack(1), Z)], weight=0.0)
    other = defocus_stack(2)
    estimate, covered = filtered(blend, other)
    assert covered.sum() == len(Z) - len(FRAMES) and not covered[FRAMES].any()
    interpolated = linear_interpolation(other[FRAMES], Z[FRAMES], Z)

    span = float(np.ptp(other))

    def mean_psnr(volume: np.ndarray) -> float:
        pairs = zip(volume[covered] / span, other[covered] / span, strict=True)
        return float(np.mean([psnr(v, t) for v, t in pairs]))

    ours, theirs = mean_psnr(estimate), mean_psnr(interpolated)
    assert ours > theirs + 5.0
    # the in-focus plane, between two frames, comes back sharper than either
    focus = 16
    assert psnr(estimate[focus], other[focus]) > psnr(interpolated[focus], other[focus]) + 5.0


def test_the_filter_is_gain_and_offset_equivariant() -> None:
    blend = LinearBlend.fit([(defocus_stack(1), Z)])
    stack = defocus_stack(2)
    base, covered = filtered(blend, stack)
    scaled, _ = filtered(blend, 3.0 * stack + 50.0)
    span = np.ptp(base[covered])
    assert np.max(np.abs(scaled[covered] - (3.0 * base[covered] + 50.0))) < 1e-4 * 3 * span


def test_frames_and_planes_outside_the_calibrated_range_are_left_to_the_network() -> None:
    blend = LinearBlend.fit([(defocus_stack(1)[:21], Z[:21])])  # 0-2 um: offsets -1..+1
    linear = LinearFilter(blend, 1.0)
    linear.add(defocus_stack(2)[30], 3.0)  # offset +2: outside, not used
    assert not linear.covers([0.5, 1.5]).any()  # no frame inside yet
    linear.add(defocus_stack(2)[5], 0.5)
    assert linear.covers([0.5, 1.5, 2.5]).tolist() == [False, True, False]


def test_bad_calibration_stacks_are_refused() -> None:
    stack = defocus_stack(1)
    with pytest.raises(RmzError, match="3 or more planes"):
        LinearBlend.fit([(stack[:2], Z[:2])])
    uneven = np.concatenate([Z[:10], Z[12:]])
    with pytest.raises(RmzError, match="evenly spaced"):
        LinearBlend.fit([(np.delete(stack, [10, 11], axis=0), uneven)])
    with pytest.raises(RmzError, match="different z steps"):
        LinearBlend.fit([(stack, Z), (stack[::2], Z[::2])])
    with pytest.raises(RmzError, match=r"must be in 0\.\.1"):
        LinearBlend.fit([(stack, Z)], weight=1.5)


def two_families(noise: float = 1.0) -> tuple[list[tuple[np.ndarray, np.ndarray]], object]:
    """Two stacks of a specimen in focus at 1.6 um and two at 3.0 um, with camera noise."""
    rng = np.random.default_rng(0)

    def noisy(stack: np.ndarray) -> np.ndarray:
        return stack + noise * rng.standard_normal(stack.shape)

    stacks = [(noisy(defocus_stack(s, 1.6)), Z) for s in (1, 3)]
    stacks += [(noisy(defocus_stack(s, 3.0)), Z) for s in (4, 5)]
    return stacks, noisy


def mean_psnr(blend: LinearBlend, seen: np.ndarray, truth: np.ndarray) -> float:
    estimate, covered = filtered(blend, seen)
    span = float(np.ptp(truth))
    pairs = zip(estimate[covered] / span, truth[covered] / span, strict=True)
    return float(np.mean([psnr(v, t) for v, t in pairs]))


def test_the_bank_weighs_the_stacks_that_look_like_the_scan() -> None:
    """Frames of a specimen in focus at 3 um pick the 3 um stacks; the filter gains by it."""
    stacks, noisy = two_families()
    bank = SpectraBank.fit(stacks)
    assert bank.members == 4 and bank.factors.shape[1:] == (16, len(Z), 8)
    ring = rings_of((48, 48), 16).ravel()
    counts = np.bincount(ring[ring >= 0], minlength=16).astype(np.float64)
    mean = LinearBlend.fit(stacks, weight=0.0)
    banked = mean.with_bank(bank)
    for seed, z0, ours in ((2, 1.6, slice(0, 2)), (6, 3.0, slice(2, 4))):
        truth = defocus_stack(seed, z0)
        seen = noisy(truth)
        alpha, _ = bank.weigh(cross_spectra(seen[FRAMES], 16), Z[FRAMES] - 2.0, counts)
        assert alpha[ours].sum() > 0.8 * alpha.sum(), (z0, alpha)
        assert mean_psnr(banked, seen, truth) > mean_psnr(mean, seen, truth) + 0.3, z0


def test_the_banked_filter_is_gain_and_offset_equivariant() -> None:
    stacks, noisy = two_families()
    blend = LinearBlend.fit(stacks).with_bank(SpectraBank.fit(stacks))
    stack = noisy(defocus_stack(2))
    base, covered = filtered(blend, stack)
    scaled, _ = filtered(blend, 3.0 * stack + 50.0)
    span = np.ptp(base[covered])
    assert np.max(np.abs(scaled[covered] - (3.0 * base[covered] + 50.0))) < 1e-4 * 3 * span


def test_rounding_error_alone_does_not_steer_the_bank() -> None:
    """Noise-free frames: rings holding nothing but rounding error must not pick the members."""
    stacks = [(defocus_stack(s, 1.6), Z) for s in (1, 3)] + [(defocus_stack(4, 3.0), Z)]
    blend = LinearBlend.fit(stacks, weight=0.0)
    truth = defocus_stack(6, 3.0)
    banked = mean_psnr(blend.with_bank(SpectraBank.fit(stacks)), truth, truth)
    assert banked > mean_psnr(blend, truth, truth) - 1.0 and banked > 30.0


def test_bad_banks_are_refused() -> None:
    stacks, _ = two_families()
    with pytest.raises(RmzError, match="1 to 40 components"):
        SpectraBank.fit(stacks, components=41)
    with pytest.raises(RmzError, match="share one z grid"):
        SpectraBank.fit([stacks[0], (stacks[1][0][:-1], Z[:-1])])
    with pytest.raises(RmzError, match="at least one stack"):
        SpectraBank.fit([])
    short = LinearBlend.fit([(stacks[0][0][:21], Z[:21])])
    with pytest.raises(RmzError, match="does not match the blend"):
        short.with_bank(SpectraBank.fit(stacks))


def test_weights_carry_the_bank_at_half_precision(tmp_path: Path) -> None:
    stacks, noisy = two_families()
    blend = LinearBlend.fit(stacks, weight=0.75).with_bank(SpectraBank.fit(stacks))
    network = RecurrentMZ(base_channels=2, depth=2)
    path = save_weights(network, tmp_path / "w.safetensors", name="w", linear_blend=blend)
    loaded = load_model(path).linear_blend
    assert loaded is not None and loaded.bank is not None and blend.bank is not None
    assert "a bank of 4 weighed by the scan's frames" in loaded.describe()
    scale = np.abs(blend.bank.factors).max()
    assert np.abs(loaded.bank.factors - blend.bank.factors).max() < 2e-3 * scale
    seen = noisy(defocus_stack(2))
    before, covered = filtered(blend, seen)
    after, _ = filtered(loaded, seen)
    span = float(np.ptp(before[covered]))
    assert np.abs(after[covered] - before[covered]).max() < 0.01 * span


def test_weights_carry_the_blend_and_every_session_applies_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = RecurrentMZ(base_channels=2, depth=2)
    blend = LinearBlend.fit([(defocus_stack(1), Z)], weight=0.25)
    path = save_weights(network, tmp_path / "w.safetensors", name="w", linear_blend=blend)
    loaded = load_model(path)
    assert loaded.linear_blend is not None and loaded.linear_blend.weight == 0.25
    np.testing.assert_allclose(loaded.linear_blend.spectra, blend.spectra, rtol=1e-5)
    stack = defocus_stack(2)
    frames, z = [stack[i] for i in FRAMES], [float(Z[i]) for i in FRAMES]
    alone = dataclasses.replace(loaded, linear_blend=None)
    net = ReconstructionSession(alone, Z).run(frames, z).volume.copy()
    session = ReconstructionSession(loaded, Z)
    for frame, zi in zip(frames, z, strict=True):
        blended = session.push(frame, zi).volume
    estimate, covered = filtered(loaded.linear_blend, stack)
    np.testing.assert_allclose(
        blended[covered], 0.25 * net[covered] + 0.75 * estimate[covered], rtol=1e-4, atol=1e-3
    )
    np.testing.assert_array_equal(blended[FRAMES], net[FRAMES])  # measured planes: untouched
    # a session over part of the grid, told the grid's middle, gives the same planes
    part = ReconstructionSession(loaded, Z[10:30], blend_centre_um=2.0).run(frames, z).volume
    np.testing.assert_allclose(part, blended[10:30], rtol=1e-4, atol=1e-3)
    # widefield and nuclei carry one, fitted on their (shared) training mixture; beads none
    assert load_model("beads").linear_blend is None
    spectra = []
    # at the network's share each was chosen with on the training mixture's choose specimens
    for name, share in (("widefield", 0.75), ("nuclei", 0.5)):
        shipped = load_model(name).linear_blend
        assert shipped is not None and shipped.weight == share, name
        assert f"{name} preset's training mixture" in shipped.source
        assert shipped.bank is not None and shipped.bank.members == 32, name
        spectra.append(shipped.spectra)
    # the two presets share optics and training families, so the same 16 stacks fitted both
    np.testing.assert_array_equal(*spectra)


def test_a_zoo_package_of_blended_weights_holds_the_network_and_says_so(
    tmp_path: Path,
) -> None:
    from rmz_acq.errors import DataWarning
    from rmz_acq.zoo.export import export_bioimageio

    torch.manual_seed(0)
    network = RecurrentMZ(base_channels=2, depth=2)
    conditions = PRESET_CONDITIONS["beads"].model_dump() | {"depth_um": 4.0}
    blend = LinearBlend.fit([(defocus_stack(1), Z)], weight=0.5)
    path = save_weights(
        network, tmp_path / "w.safetensors", name="w", conditions=conditions, linear_blend=blend
    )
    with warnings.catch_warnings(record=True) as caught:  # the zoo's own warn too
        warnings.simplefilter("always")
        folder = export_bioimageio(path, tmp_path / "zoo")
    said = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(said) == 1 and "holds the network alone" in said[0]
    packaged = load_model(folder)
    assert packaged.linear_blend is None
    expected = np.load(folder / "test_volume.npy")[0]
    frames = np.load(folder / "test_frames.npy")[0]
    frame_z = np.load(folder / "test_frame_z_um.npy")[0]
    planes = np.load(folder / "test_output_z_um.npy")[0]
    volume = ReconstructionSession(packaged, planes).run(list(frames), list(frame_z)).volume
    np.testing.assert_allclose(volume, expected, rtol=1e-4, atol=1e-4)


def test_validate_says_the_volume_is_blended(tmp_path: Path) -> None:
    from rmz_acq.io import ZStack
    from rmz_acq.validation import validate_stack

    torch.manual_seed(0)
    conditions = PRESET_CONDITIONS["beads"].model_dump() | {"depth_um": 4.0}
    blend = LinearBlend.fit([(defocus_stack(1), Z)], weight=0.5)
    path = save_weights(
        RecurrentMZ(base_channels=2, depth=2),
        tmp_path / "w.safetensors",
        name="w",
        conditions=conditions,
        linear_blend=blend,
    )
    stack = ZStack(data=defocus_stack(2).astype(np.float32), z_um=Z, pixel_size_um=0.1)
    result = validate_stack(stack, load_model(path))
    assert any("blend of 0.50 x the network" in note for note in result.notes)


def test_the_share_is_chosen_where_the_filter_was_not_fitted(tmp_path: Path) -> None:
    from rmz_acq.calibration import choose_linear_blend
    from rmz_acq.training.data import StackVolume

    torch.manual_seed(0)
    conditions = PRESET_CONDITIONS["beads"].model_dump() | {
        "depth_um": 4.0,
        "input_spacing_um": 1.0,
    }
    path = save_weights(
        RecurrentMZ(base_channels=2, depth=2), tmp_path / "w.safetensors", name="w",
        conditions=conditions,
    )  # fmt: skip
    model = load_model(path)
    parts = [StackVolume(defocus_stack(seed).astype(np.float32), Z) for seed in (1, 2)]
    across = choose_linear_blend(model, parts)  # each stack scored with the other's filter
    assert "fitted on the other stacks" in across.describe()
    # an untrained network against a filter that refocuses: the filter takes over
    assert across.weight == 0.0 and across.psnr_db[0.0] > across.psnr_db[1.0] + 3.0
    with pytest.raises(RmzError, match="two or more stacks of different fields"):
        choose_linear_blend(model, parts[:1])  # one field cannot check it carries


def test_averaging_blended_weights_leaves_the_blend_out_and_says_so(tmp_path: Path) -> None:
    from tests.rmz_acq.test_cli_stack import rmz_acq

    blend = LinearBlend.fit([(defocus_stack(1), Z)], weight=0.5)
    paths = []
    for seed, carried in ((0, blend), (1, None)):
        torch.manual_seed(seed)
        network = RecurrentMZ(base_channels=2, depth=2)
        path = tmp_path / f"w{seed}.safetensors"
        paths.append(save_weights(network, path, name="w", linear_blend=carried))
    out = tmp_path / "mean.safetensors"
    done = rmz_acq("average", *paths, "-o", out)
    assert done.returncode == 0, done.stderr
    assert f"the linear blend of {paths[0]} was fitted for that network" in done.stderr
    assert load_model(out).linear_blend is None


def test_the_memory_check_counts_the_frames_spectra_the_filter_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    blend = LinearBlend.fit([(defocus_stack(1), Z)], weight=0.5)
    path = save_weights(
        RecurrentMZ(base_channels=2, depth=2), tmp_path / "w.safetensors", name="w",
        linear_blend=blend,
    )  # fmt: skip
    loaded = load_model(path)
    session = ReconstructionSession(loaded, Z)
    stack = defocus_stack(2)
    for i in FRAMES:
        session.push(stack[i], float(Z[i]))
    assert session._filter is not None
    kept = session.filter_nbytes_for(48, 48, len(FRAMES))
    assert kept == session._filter._spectra.nbytes
    alone = ReconstructionSession(dataclasses.replace(loaded, linear_blend=None), Z)
    assert alone.filter_nbytes_for(48, 48, 1000) == 0
    # room for the state and the volume, not for a thousand frames' spectra
    need = session.state_nbytes_for(48, 48) + len(Z) * 48 * 48 * 4
    free = int((need + kept) / 0.8)
    monkeypatch.setattr("rmz_acq.safety.available_memory_bytes", lambda device="cpu": free)
    session.check_memory(48, 48, frames=len(FRAMES))
    alone.check_memory(48, 48, frames=1000)
    with pytest.raises(RmzError, match="linear blend's frame spectra"):
        session.check_memory(48, 48, frames=1000)
