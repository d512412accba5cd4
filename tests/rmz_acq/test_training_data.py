"""Training batches: where the targets are drawn."""

from __future__ import annotations

import numpy as np
import torch

from rmz_acq.training.data import StackVolume, TrainingSampler


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
    rng = np.random.default_rng(3)
    sharp = np.concatenate([_peak_scores(focused.sample(rng).targets) for _ in range(10)])
    flat = np.concatenate([_peak_scores(uniform.sample(rng).targets) for _ in range(10)])
    assert (sharp > 50).all()
    # a uniform draw over 20 planes lands on the sharp one rarely
    assert (flat > 50).mean() < 0.3
