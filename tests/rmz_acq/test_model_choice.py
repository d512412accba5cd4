"""Which preset a simulated config's optics and sample call for when --model is not given."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rmz_acq.cli._app import model_for_config
from rmz_acq.hardware import load_core


@pytest.mark.parametrize(
    ("base", "sample", "preset"),
    [
        ("simulated_beads.cfg", None, "beads"),
        ("simulated_worm.cfg", None, "nuclei"),
        ("simulated_worm.cfg", "structures", "widefield"),
        ("simulated_worm.cfg", "nuclei", "nuclei"),
    ],
)
def test_the_sample_picks_between_presets_of_one_optics(
    make_config: Callable[..., Path], base: str, sample: str | None, preset: str
) -> None:
    settings = {"Microscope__SampleKind": sample} if sample else {}
    core = load_core(make_config(base, Camera__Width=64, Camera__Height=64, **settings))
    assert model_for_config(None, core) == preset
    assert model_for_config("beads", core) == "beads"  # a model given is never second-guessed
