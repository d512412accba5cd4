"""The ring filters of benchmarks/linear_oracle.py: what a linear method makes of the frames."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from rmz_acq.evaluation.baselines import linear_interpolation
from rmz_acq.evaluation.generalisation import Case


def _oracle() -> ModuleType:
    benchmarks = str(Path(__file__).resolve().parents[2] / "benchmarks")
    sys.path.insert(0, benchmarks)
    try:
        return importlib.import_module("linear_oracle")
    finally:
        sys.path.remove(benchmarks)


def _case(seed: int, weights: np.ndarray, rings: np.ndarray) -> Case:
    """Frames of noise; each truth plane a ring-by-ring sum of them with ``weights``."""
    rng = np.random.default_rng(seed)
    frames = 100 + 10 * rng.standard_normal((3, 32, 32))
    z, planes = [1.0, 3.0, 5.0], np.linspace(0.0, 6.0, 4)
    spectra = np.fft.rfft2(frames)
    truth = []
    means = linear_interpolation(frames.mean(axis=(1, 2))[:, None, None], z, planes)
    for w, mean in zip(weights, means, strict=True):
        spectrum = np.einsum("nyx,yxn->yx", spectra, w[np.maximum(rings, 0)])
        spectrum[0, 0] = mean[0, 0] * frames[0].size
        truth.append(np.fft.irfft2(spectrum, s=frames.shape[-2:]))
    return Case("test", frames.astype(np.float32), z, np.stack(truth).astype(np.float32),
                planes, clean=True)  # fmt: skip


def test_ring_filters_recover_a_linear_relation_from_the_truth_and_from_other_volumes() -> None:
    oracle = _oracle()
    rings = oracle._rings((32, 32), 4)
    assert rings[0, 0] == -1 and set(np.unique(rings[rings >= 0])) == {0, 1, 2, 3}
    rng = np.random.default_rng(0)
    # four planes, four rings, three frames: the weights of a linear method
    weights = rng.standard_normal((4, 4, 3)).astype(np.complex128)
    a, b = _case(1, weights, rings), _case(2, weights, rings)
    gram_a, rhs_a = oracle.normal_equations(a, 4)
    gram_b, rhs_b = oracle.normal_equations(b, 4)
    assert gram_a.shape == (4, 4, 3, 3) and rhs_a.shape == (4, 4, 3)
    # fitted on its own truth, and on another volume's: the relation is found exactly
    np.testing.assert_allclose(oracle.filtered_volume(a, gram_a, rhs_a), a.truth, atol=1e-2)
    np.testing.assert_allclose(oracle.filtered_volume(a, gram_b, rhs_b), a.truth, atol=1e-2)
    # a truth no linear sum of the frames reaches is not
    other = Case("x", a.frames, a.frames_z_um, np.flip(a.truth, axis=-1).copy(), a.planes_um, True)
    gram, rhs = oracle.normal_equations(other, 4)
    miss = oracle.filtered_volume(other, gram, rhs) - other.truth
    assert np.abs(miss).mean() > 0.1 * np.abs(other.truth - other.truth.mean()).mean()
