"""Shared fixtures: small simulated microscopes that load in well under a second."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from pymmcore_plus import CMMCorePlus

from rmz_acq.hardware import load_core
from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.weights import LoadedModel, load_model, save_weights
from rmz_acq.training.conditions import PRESET_CONDITIONS

# Qt widgets (the viewer tests) render without a display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "device_configs"
SHIPPED_CONFIGS = sorted(CONFIGS.glob("simulated_*.cfg"))


def configure(text: str, **properties: str | float | int) -> str:
    """Set ``Device.Property`` values in a config text (``Camera__Width=64``)."""
    for key, value in properties.items():
        device, prop = key.split("__")
        pattern = re.compile(rf"^(#py )?Property,{device},{prop},.*$", re.MULTILINE)
        line = f"#py Property,{device},{prop},{value}"
        if pattern.search(text):
            text = pattern.sub(line, text)
        else:  # a property the shipped config leaves at its default
            text = text.replace(
                "Property,Core,Initialize,1", f"{line}\nProperty,Core,Initialize,1", 1
            )
    return text


SMALL_BEADS = {
    "Camera__Width": 64,
    "Camera__Height": 64,
    "Microscope__SampleDepthUm": 4,
    "Microscope__BeadDensityPer1000um3": 40,
    "Z__LowerLimitUm": -1,
    "Z__UpperLimitUm": 5,
}


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a variant of a shipped config and return its path."""

    def make(base: str = "simulated_beads.cfg", **properties: str | float | int) -> Path:
        text = configure((CONFIGS / base).read_text(), **properties)
        path = tmp_path / f"variant_{len(list(tmp_path.glob('variant_*.cfg')))}.cfg"
        path.write_text(text)
        return path

    return make


@pytest.fixture
def small_core(make_config: Callable[..., Path]) -> CMMCorePlus:
    """A 64 x 64 px bead microscope over a 4 um deep sample."""
    return load_core(make_config(**SMALL_BEADS))


@pytest.fixture
def tiny_model(tmp_path: Path) -> LoadedModel:
    """A small untrained network with the beads preset's conditions over 4 um (seeded)."""
    torch.manual_seed(0)
    conditions = PRESET_CONDITIONS["beads"].model_dump() | {"depth_um": 4.0}
    model = RecurrentMZ(base_channels=2, depth=2)
    return load_model(
        save_weights(model, tmp_path / "tiny.safetensors", name="tiny", conditions=conditions)
    )
