from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rmz_acq.errors import RmzError
from rmz_acq.model.losses import (
    Discriminator,
    berhu,
    discriminator_loss,
    generator_adversarial_loss,
    lowpass_error,
    ms_ssim,
    order_gap,
    reconstruction_loss,
    rescale_knee,
)
from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.weights import load_model, save_weights


def test_berhu_is_l1_below_c_and_scaled_l2_above() -> None:
    target = torch.zeros(1, 1, 1, 3)
    prediction = torch.tensor([[[[0.05, -0.1, 0.3]]]])
    expected = torch.tensor([0.05, 0.1, (0.09 + 0.01) / 0.2]).mean()
    torch.testing.assert_close(berhu(prediction, target, c=0.1), expected)


def test_rescale_knee_undoes_the_compression_and_weighs_bright_errors_as_psnr_does() -> None:
    linear = torch.linspace(-2.0, 30.0, 33)
    compressed = 3 * torch.asinh(linear / 3)
    torch.testing.assert_close(rescale_knee(compressed, 3, 0), linear)
    torch.testing.assert_close(rescale_knee(rescale_knee(compressed, 3, 10), 10, 3), compressed)
    torch.testing.assert_close(rescale_knee(linear, 0, 3), compressed)

    # the same 10 % error on a dim (1) and a bright (20) pixel, on each scale
    def error_ratio(new_knee: float) -> float:
        truth = torch.tensor([1.0, 20.0])
        scale = (lambda v: v) if new_knee == 0 else (lambda v: new_knee * torch.asinh(v / new_knee))
        errors = (scale(1.1 * truth) - scale(truth)).abs()
        return float(errors[1] / errors[0])

    # linear: 20 times the dim error; the network's knee of 3 hides most of it
    assert error_ratio(0) == pytest.approx(20.0, rel=1e-4)
    assert error_ratio(3) < 4 < error_ratio(10) < 20


def test_ms_ssim_is_one_for_identical_images_and_falls_with_noise() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 1, 64, 64)
    assert ms_ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    slightly = ms_ssim(x + 0.05 * torch.randn_like(x), x)
    badly = ms_ssim(x + 0.5 * torch.randn_like(x), x)
    assert (badly < slightly).all() and (slightly < 1).all()
    with pytest.raises(ValueError, match="too small"):
        ms_ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))


def test_foreground_weight_makes_missing_sparse_points_cost_more() -> None:
    target = torch.zeros(1, 1, 64, 64)
    target[0, 0, 30:32, 30:32] = 1.0
    blank = torch.zeros_like(target)
    plain = reconstruction_loss(blank, target)
    weighted = reconstruction_loss(blank, target, foreground_weight=50.0)
    assert weighted > plain
    prediction = torch.zeros_like(target, requires_grad=True)
    reconstruction_loss(prediction, target).backward()
    assert prediction.grad is not None and torch.isfinite(prediction.grad).all()


def test_on_noisy_targets_only_berhu_prefers_the_clean_contrast() -> None:
    """MS-SSIM against a noisy target rewards inflated contrast; BerHu alone does not.

    Calibration trains on a recorded stack, whose targets are noisy; that is
    why it sets ``ssim_weight`` to 0.
    """
    torch.manual_seed(0)
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    clean = (0.5 + 0.5 * torch.sin(x / 5) * torch.cos(y / 7))[None, None]
    noisy = clean + 0.3 * torch.randn_like(clean)
    gains = [0.8 + 0.05 * i for i in range(13)]  # 0.8 .. 1.4

    def best(beta: float) -> float:
        mean = clean.mean()
        predictions = [mean + g * (clean - mean) for g in gains]
        costs = [float(reconstruction_loss(p, noisy, beta=beta)) for p in predictions]
        return gains[costs.index(min(costs))]

    assert best(0.0) == pytest.approx(1.0)
    assert best(1.0) > 1.0
    assert float(reconstruction_loss(clean, noisy, beta=0.0)) == pytest.approx(
        3 * float(berhu(clean, noisy))
    )


def _tiny() -> RecurrentMZ:
    torch.manual_seed(3)
    return RecurrentMZ(base_channels=4, depth=2, dpm_scale_um=3.0)


def test_adversarial_losses_follow_eqs_7_and_10() -> None:
    zeros, ones = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    assert float(discriminator_loss(zeros, ones)) == 0.0  # a perfect critic
    assert float(discriminator_loss(ones, zeros)) == 1.0
    assert float(generator_adversarial_loss(ones)) == 0.0  # the critic is fooled
    assert float(generator_adversarial_loss(zeros)) == 1.0


def test_discriminator_learns_to_tell_sharp_points_from_blurred_ones() -> None:
    torch.manual_seed(0)
    critic = Discriminator(channels=8)
    optimizer = torch.optim.Adam(critic.parameters(), lr=2e-3)
    assert critic(torch.zeros(3, 1, 64, 64)).shape == (3, 1, 4, 4)

    def points(n: int) -> torch.Tensor:
        image = torch.zeros(n, 1, 64, 64)
        image.view(n, -1)[:, torch.randint(0, 64 * 64, (12,))] = 1.0
        return image

    blur = torch.ones(1, 1, 5, 5) / 25  # the same light, spread out
    for _ in range(150):
        sharp = points(8)
        blurred = torch.nn.functional.conv2d(points(8), blur, padding=2)
        loss = discriminator_loss(critic(blurred), critic(sharp))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        sharp_score = critic(points(16)).mean()
        blurred_score = critic(torch.nn.functional.conv2d(points(16), blur, padding=2)).mean()
    assert float(loss.detach()) < 0.1
    assert float(sharp_score) > 0.7 and float(blurred_score) < 0.3


def test_weights_round_trip_with_metadata(tmp_path: Path) -> None:
    model = _tiny()
    path = save_weights(model, tmp_path / "m.safetensors", name="tiny", conditions={"a": 1})
    loaded = load_model(path)
    assert loaded.name == "tiny" and loaded.conditions == {"a": 1}
    assert len(loaded.sha256) == 64
    assert loaded.model.config == model.config
    frames, dpm = torch.randn(1, 2, 16, 16), torch.tensor([[1.0, 2.0]])
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model(frames, dpm), model.eval()(frames, dpm))


def test_corrupt_foreign_and_mismatched_weights_are_refused(tmp_path: Path) -> None:
    good = save_weights(_tiny(), tmp_path / "good.safetensors", name="tiny")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(RmzError, match="corrupt"):
        load_model(corrupt)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(RmzError, match="not an rmz_acq weights file"):
        load_model(foreign)
    # weights of a depth-2 network described as depth 3
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(good), framework="pt") as fh:  # type: ignore[no-untyped-call]
        metadata = dict(fh.metadata())
    metadata["depth"] = "3"
    other = tmp_path / "other.safetensors"
    save_file(load_file(str(good)), str(other), metadata=metadata)
    with pytest.raises(RmzError, match="another architecture"):
        load_model(other)
    with pytest.raises(RmzError, match="unknown model"):
        load_model("no-such-preset")
    assert json.loads(metadata["conditions"]) == {}


def test_lowpass_error_counts_slow_differences_and_not_fine_ones() -> None:
    target = torch.rand(2, 1, 32, 32)
    assert float(lowpass_error(target, target)) == 0.0
    # a fine checkerboard averages out in every 8 px block; BerHu counts it in full
    y, x = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    checker = 0.2 * (((y + x) % 2) * 2 - 1).to(target.dtype)
    assert float(lowpass_error(target + checker, target)) == pytest.approx(0.0, abs=1e-12)
    assert float(berhu(target + checker, target)) == pytest.approx(0.25, rel=1e-5)  # c = 0.1
    # an offset (out-of-focus light the prediction lacks) counts as its square
    assert float(lowpass_error(target + 0.2, target)) == pytest.approx(0.04, rel=1e-5)
    # a smooth ramp counts nearly as its pixel-wise mean square
    ramp = (x.to(target.dtype) / 31) * 0.3
    whole = float((ramp**2).mean())
    assert 0.9 * whole < float(lowpass_error(target + ramp, target)) <= whole
    # smaller than a block: the image's mean
    small = torch.zeros(1, 1, 4, 4)
    assert float(lowpass_error(small + 0.5, small)) == pytest.approx(0.25)


def test_order_gap_compares_each_pair_only() -> None:
    a = torch.rand(3, 1, 8, 8)
    same = torch.stack([a, a], dim=1).flatten(0, 1)  # entries 2k and 2k + 1 equal
    assert float(order_gap(same)) == 0.0
    shifted = same.clone()
    shifted[1::2] += 0.25
    assert float(order_gap(shifted)) == pytest.approx(0.25)
    # equal neighbours across pairs do not count: only 2k against 2k + 1
    assert float(order_gap(torch.cat([a[:1], a[:1] + 1, a[:1] + 1, a[:1]]))) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="even batch"):
        order_gap(a)
