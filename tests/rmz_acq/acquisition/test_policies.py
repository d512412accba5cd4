"""Next-plane policies: each alone, and driving a scan on the simulated microscope."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pymmcore_plus import CMMCorePlus

from rmz_acq.acquisition import AdaptiveScan, ScanPlan, ScanSettings
from rmz_acq.acquisition.policies import (
    POLICIES,
    STATIC_POLICIES,
    PlaneChoice,
    ScanState,
    choosable_planes,
    make_policy,
    static_order,
)
from rmz_acq.errors import InvalidValueError, StageSafetyError
from rmz_acq.io import read_zstack
from rmz_acq.model.weights import LoadedModel
from rmz_acq.training.data import TrainingSampler

WORM_CANDIDATES = tuple(3.0 + 1.5 * i for i in range(9))  # the nuclei preset's default
WORM_GRID = tuple(np.round(np.arange(0.0, 18.0001, 0.2), 6).tolist())
BISECTION = ScanPlan.build(WORM_GRID, candidates_um=WORM_CANDIDATES).candidates_um


def _walk(name: str, *, signal_at: float | None = None, change_at: float | None = None) -> list:
    """Every plane a policy takes on the worm plan, fed a made-up volume."""
    policy = make_policy(name)
    planes = np.linspace(0.0, 18.0, 11)
    state = ScanState(candidates_um=BISECTION, choosable_um=choosable_planes(BISECTION, WORM_GRID))
    choices = []
    while (choice := policy.choose(state)) is not None:
        choices.append(choice)
        bump = lambda at: None if at is None else np.exp(-(((planes - at) / 1.0) ** 2))  # noqa: E731
        signal = bump(signal_at) if signal_at is not None else np.ones_like(planes)
        change = bump(change_at) if change_at is not None else np.ones_like(planes)
        state = state.after(choice.z_um, planes, change if state.taken_um else None, signal)
        if len(choices) > 200:
            raise AssertionError(f"{name} never runs out of planes")
    return choices


@pytest.mark.parametrize("name", list(POLICIES))
def test_every_policy_stays_on_allowed_planes_and_never_repeats(name: str) -> None:
    choices = _walk(name)
    allowed = set(choosable_planes(BISECTION, WORM_GRID))
    z = [c.z_um for c in choices]
    assert set(z) <= allowed
    assert len(set(z)) == len(z)
    assert min(z) >= 3.0 and max(z) <= 15.0
    if name == "bisection":
        assert tuple(z) == BISECTION  # the plan's order, candidates only
    elif name == "sweeps":
        assert sorted(z) == sorted(BISECTION)  # candidates only
    else:  # continuous z: the output planes in between are choosable too
        assert len(z) == len(allowed)


ORDERS = [
    ("bisection", [9.0, 3.0, 15.0, 6.0, 12.0, 4.5, 7.5, 10.5, 13.5]),
    ("sweeps", [3.0, 9.0, 15.0, 6.0, 12.0, 4.5, 7.5, 10.5, 13.5]),
]


@pytest.mark.parametrize(("name", "expected"), ORDERS, ids=[o[0] for o in ORDERS])
def test_static_orders_on_the_worm_candidates(name: str, expected: list[float]) -> None:
    assert static_order(name, BISECTION, 9) == expected
    assert static_order(name, BISECTION, 4) == expected[:4]


def test_even_spacing_is_even_whenever_the_planes_allow() -> None:
    z = [c.z_um for c in _walk("even")]
    assert z[:3] == [3.0, 9.0, 15.0]  # the first sweep, upwards
    assert sorted(z[:5]) == [3.0, 6.0, 9.0, 12.0, 15.0]  # even again at five

    def unevenness(planes: list[float]) -> float:
        return float(np.sqrt(np.mean((np.sort(planes) - np.linspace(3, 15, len(planes))) ** 2)))

    bisection = list(BISECTION)
    for m in range(3, 9):  # never less even than bisection before all nine, better on average
        assert unevenness(z[:m]) <= unevenness(bisection[:m]) + 0.05
    assert np.mean([unevenness(z[:m]) for m in range(3, 9)]) < np.mean(
        [unevenness(bisection[:m]) for m in range(3, 9)]
    )


@pytest.mark.parametrize(
    ("name", "weighted"),
    [("structure", {"signal_at": 13.0}), ("settle", {"change_at": 13.0})],
)
def test_model_driven_policies_look_where_their_figure_is_high(
    name: str, weighted: dict[str, float]
) -> None:
    """With the ends and centre taken, the next plane goes to the weighted depth's side."""
    z = [c.z_um for c in _walk(name, **weighted)]
    assert z[:3] == [3.0, 9.0, 15.0]
    assert 11.0 <= z[3] <= 14.0  # between 9 and 15, near 13, not at 6 (same gap, no weight)
    flat = [c.z_um for c in _walk(name)]
    assert flat[3] == pytest.approx(6.0, abs=0.2)  # no preference: the lower of two equal gaps


def test_unknown_and_volume_dependent_names_are_refused() -> None:
    with pytest.raises(InvalidValueError, match="'zigzag' is not known; choose one of bisection"):
        make_policy("zigzag")
    with pytest.raises(ValueError, match="'zigzag' is not known"):
        ScanSettings(next_plane="zigzag")
    with pytest.raises(InvalidValueError, match="depends on the volume"):
        static_order("settle", BISECTION, 3)
    assert set(STATIC_POLICIES) < set(POLICIES)


def test_training_draws_scan_orders_of_the_chosen_policy() -> None:
    sampler = TrainingSampler([], 6.0, scan_order_fraction=1.0, scan_policies=("sweeps",))
    rng = np.random.default_rng(0)
    for _ in range(20):
        z = sampler.input_planes(rng, 4, (0.0, 18.0))
        # lowest, centre, highest, then a midpoint between two of them
        assert z[0] < z[1] < z[2] and z[0] < z[3] < z[2]
        assert abs(z[1] - (z[0] + z[2]) / 2) < 0.4 * 6.0


# --- driving a scan -------------------------------------------------------------------


OUTPUT = np.round(np.arange(0.0, 4.01, 0.25), 6)
CANDIDATES = [0.5, 1.5, 2.5, 3.5]


@pytest.mark.parametrize("name", ["sweeps", "settle"])
def test_a_scan_goes_where_its_policy_says_and_reports_why(
    small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path, name: str
) -> None:
    plan = ScanPlan.build(OUTPUT, candidates_um=CANDIDATES)
    scan = AdaptiveScan(
        small_core, tiny_model, plan, ScanSettings(epsilon=0.0, next_plane=name), tmp_path / "r"
    )
    report = scan.run()
    taken = [f.commanded_z_um for f in report.frames]
    assert len(taken) == len(CANDIDATES)  # as many frames as candidates, at most
    if name == "sweeps":
        assert taken == static_order("sweeps", plan.candidates_um, 4)
    else:  # continuous z: output planes between the candidates may be chosen
        assert set(taken) <= set(choosable_planes(plan.candidates_um, plan.output_planes_um))
        assert taken[:3] == [0.5, 2.0, 3.5]  # the first sweep on the 0.25 um grid
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["next_plane"] == name
    assert all(f["plane_reason"] for f in data["frames"])
    frames = read_zstack(tmp_path / "r" / "frames.ome.tif")
    assert frames.z_um is not None
    np.testing.assert_allclose(frames.z_um, taken, atol=0.05)


class _Astray:
    name = "astray"

    def __init__(self, z: float) -> None:
        self.z = z

    def choose(self, state: ScanState) -> PlaneChoice | None:
        if state.taken_um:
            return PlaneChoice(self.z, None, "a bad policy")
        return PlaneChoice(state.candidates_um[0], None, "first")


@pytest.mark.parametrize("z", [4.9, 1.5, 0.3], ids=["beyond-the-plan", "taken-again", "off-grid"])
def test_a_policy_that_goes_astray_is_stopped_before_the_stage_moves(
    small_core: CMMCorePlus, tiny_model: LoadedModel, tmp_path: Path, z: float
) -> None:
    plan = ScanPlan.build(OUTPUT, candidates_um=[1.5, 0.5, 2.5, 3.5])
    scan = AdaptiveScan(
        small_core,
        tiny_model,
        plan,
        ScanSettings(epsilon=0.0),
        tmp_path / "r",
        policy=_Astray(z),
    )
    with pytest.raises((StageSafetyError, Exception), match="astray"):
        scan.run()
    assert small_core.getPosition() == pytest.approx(1.5, abs=0.05)  # never went to z
    assert scan.report is not None and len(scan.report.frames) == 1
    assert scan.report.stop_reason.value == "error"
