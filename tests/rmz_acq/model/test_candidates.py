"""The candidate weights kept under benchmarks/candidates are what their README says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
