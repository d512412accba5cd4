"""``rmz-acq average``: weights averaged parameter by parameter, and what they record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rmz_acq.errors import RmzError
from rmz_acq.evaluation.generalisation import families_seen_in_training
from rmz_acq.model.network import RecurrentMZ
from rmz_acq.model.weights import average_weights, load_model, save_weights, training_stages
from tests.rmz_acq.test_cli_stack import rmz_acq


def _weights(path: Path, seed: int, training: dict[str, object], **arch: int) -> Path:
    torch.manual_seed(seed)
    network = RecurrentMZ(base_channels=arch.get("base_channels", 2), depth=2)
    return save_weights(network, path, name="t", extra={"training": json.dumps(training)})


def test_the_average_is_the_weighted_mean_and_remembers_both(tmp_path: Path) -> None:
    a = _weights(tmp_path / "a.safetensors", 0, {"sample_varieties": ["standard"]})
    b = _weights(
        tmp_path / "b.safetensors",
        1,
        {"sample_varieties": ["structures"], "structure_families": ["cells"]},
    )
    out = tmp_path / "mean.safetensors"
    done = rmz_acq("average", a, b, "--fractions", "0.25,0.75", "-o", out)
    assert done.returncode == 0, done.stderr
    assert "mean of 2 weights" in done.stdout
    mean, first, second = (load_model(p) for p in (out, a, b))
    for key, value in mean.model.state_dict().items():
        want = 0.25 * first.model.state_dict()[key] + 0.75 * second.model.state_dict()[key]
        torch.testing.assert_close(value, want)
    sources = json.loads(mean.metadata["averaged_from"])
    assert [s["sha256"] for s in sources] == [first.sha256, second.sha256]
    assert [s["fraction"] for s in sources] == [0.25, 0.75]
    assert len(training_stages(mean.metadata)) == 2
    assert families_seen_in_training(mean) == {"own", "cells"}
    assert mean.name == "t"
    named = rmz_acq("average", a, b, "--name", "widefield", "-o", tmp_path / "named.safetensors")
    assert named.returncode == 0, named.stderr
    assert load_model(tmp_path / "named.safetensors").name == "widefield"
    # nothing overwritten silently
    again = rmz_acq("average", a, b, "-o", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_averaging_refuses_what_cannot_be_averaged(tmp_path: Path) -> None:
    a = load_model(_weights(tmp_path / "a.safetensors", 0, {}))
    wide = load_model(_weights(tmp_path / "w.safetensors", 0, {}, base_channels=3))
    with pytest.raises(RmzError, match="one architecture"):
        average_weights([a, wide])
    with pytest.raises(RmzError, match="two or more"):
        average_weights([a])
    with pytest.raises(RmzError, match="sum to 1"):
        average_weights([a, a], [0.5, 0.6])
    with pytest.raises(RmzError, match="one positive fraction per model"):
        average_weights([a, a], [1.0])
    bad = rmz_acq(
        "average", a.path, a.path, "--fractions", "half,half", "-o", tmp_path / "o.safetensors"
    )
    assert bad.returncode == 2 and "--fractions 'half,half'" in bad.stderr
