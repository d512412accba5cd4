"""The benchmark's bound on any stop rule: the fewest frames within 0.5 dB, knowing the truth."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


def _oracle_stops():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("bench_next_plane")._oracle_stops
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_first_frame_count_within_the_margin_counts_even_if_a_later_one_dips() -> None:
    oracle_stops = _oracle_stops()
    curves = [
        np.array([20.0, 24.0, 27.6, 27.0, 28.0]),  # within 0.5 dB of 28.0 from the third frame
        np.array([20.0, 21.0, 22.0, 23.0, 27.0]),  # never within 0.5 dB of 28.0
        np.array([np.nan, np.nan, 27.9, np.nan, 28.0]),  # only where the rule may stop
    ]
    stops = oracle_stops(curves, np.array([28.0, 28.0, 28.0]), 0.5)
    assert stops[0] == 3
    assert np.isnan(stops[1])
    assert stops[2] == 3
    # a tighter margin needs more frames
    assert oracle_stops(curves[:1], np.array([28.0]), 0.1)[0] == 5
