"""The candidate weights kept under benchmarks/candidates are what their README says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rmz_acq.model.weights import load_model

CANDIDATES = Path(__file__).resolve().parents[3] / "benchmarks" / "candidates"
# a table row: | `FILE` | `PRESET` | ... | `SHA8...` | ...
ROW = re.compile(
    r"^\| `(?P<file>[^`]+\.safetensors)` \| `(?P<preset>\w+)` \|"
    r".*\| `(?P<sha>[0-9a-f]{8})\.\.\.` \|"
)


def _listed() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in (CANDIDATES / "README.md").read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            rows[match["file"]] = (match["preset"], match["sha"])
    return rows


def test_every_candidate_file_is_listed_and_every_listed_file_is_there() -> None:
    on_disk = {path.name for path in CANDIDATES.glob("*.safetensors")}
    assert on_disk, "no candidate weights kept"
    assert set(_listed()) == on_disk


@pytest.mark.parametrize("file", sorted(p.name for p in CANDIDATES.glob("*.safetensors")))
def test_a_candidate_loads_with_the_hash_and_preset_its_readme_names(file: str) -> None:
    preset, sha_prefix = _listed()[file]
    loaded = load_model(CANDIDATES / file)
    assert loaded.sha256.startswith(sha_prefix)
    assert loaded.name == preset
    # small enough to keep in the repository, as the shipped presets are
    assert (CANDIDATES / file).stat().st_size < 8 * 2**20


def test_the_widefield_preset_is_the_kept_mean_of_its_two_sources() -> None:
    """Its card's scores were measured on `nuclei_mean`; the tensors must be those."""
    preset = load_model("widefield")
    mean = load_model(CANDIDATES / "nuclei_mean.safetensors")
    assert preset.name == "widefield"
    for key, value in mean.model.state_dict().items():
        assert torch.equal(preset.model.state_dict()[key], value), key
    sources = json.loads(preset.metadata["averaged_from"])
    assert [s["sha256"][:8] for s in sources] == [
        _listed()[f][1] for f in ("nuclei_btw2.safetensors", "nuclei_cells.safetensors")
    ]
    assert [s["fraction"] for s in sources] == [0.5, 0.5]
    # and since 2026-12-05 the linear blend of its card, over the whole 18 um range
    assert preset.linear_blend is not None and mean.linear_blend is None
    assert preset.linear_blend.weight == 0.75 and preset.linear_blend.stacks == 16
    assert preset.linear_blend.offsets_um[0] == -9.0 and preset.linear_blend.offsets_um[-1] == 9.0


def test_the_through_blend_candidate_carries_the_shipped_filter_at_its_training_share() -> None:
    """Trained to complement the `nuclei` filter at 0.5 (rescued from a checkpoint): only so."""
    shipped = load_model("nuclei")
    candidate = load_model(CANDIDATES / "nuclei_tb50.safetensors")
    assert shipped.linear_blend is not None and candidate.linear_blend is not None
    assert json.loads(candidate.metadata["training"])["through_blend"] == 0.5
    assert candidate.linear_blend.weight == 0.5
    np.testing.assert_array_equal(candidate.linear_blend.spectra, shipped.linear_blend.spectra)


def test_the_shipped_nuclei_network_is_the_through_blend_candidate_at_its_share() -> None:
    """`nuclei` stage 14 (its card): the candidate's network bit for bit, with the bank.

    Its blend is used at the share it was trained through, and its training
    record keeps stage 13's under ``earlier_training``.
    """
    shipped = load_model("nuclei")
    candidate = load_model(CANDIDATES / "nuclei_tb50.safetensors")
    mine, theirs = shipped.model.state_dict(), candidate.model.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    training = json.loads(shipped.metadata["training"])
    assert shipped.linear_blend is not None and shipped.linear_blend.bank is not None
    assert shipped.linear_blend.weight == training["through_blend"] == 0.5
    assert len(json.loads(shipped.metadata["earlier_training"])) == 1
