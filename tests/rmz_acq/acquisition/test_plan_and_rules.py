from __future__ import annotations

import numpy as np
import pytest

from rmz_acq.acquisition import (
    FrobeniusChange,
    MaxFrames,
    PlaneOrder,
    RelativeChange,
    ScanPlan,
    ScanProgress,
    ScanSettings,
    StopReason,
    TimeBudget,
    first_stop,
    order_planes,
)
from rmz_acq.acquisition.judge import within_margin
from rmz_acq.acquisition.plan import decision_plane_indices
from rmz_acq.acquisition.policies import static_order
from rmz_acq.acquisition.stop_rules import (
    STRUCTURE_WEIGHT,
    evenly_spaced,
    relative_change,
    replayed_stop,
)
from rmz_acq.errors import RmzError, StageSafetyError
from rmz_acq.model.weights import load_model

ORDERS = [
    ("as given", [6, 0, 3], PlaneOrder.AS_GIVEN, [6, 0, 3]),
    ("centre out", [0, 2, 4, 6, 8], PlaneOrder.CENTRE_OUT, [4, 2, 6, 0, 8]),
    ("bisection", [0, 1, 2, 3, 4, 5, 6, 7, 8], PlaneOrder.BISECTION, [4, 0, 8, 2, 6, 1, 3, 5, 7]),
    ("bisection, paper planes first", [3, 6, 9, 12, 15], PlaneOrder.BISECTION, [9, 3, 15, 6, 12]),
]


@pytest.mark.parametrize(("name", "planes", "order", "expected"), ORDERS)
def test_plane_orders(
    name: str, planes: list[float], order: PlaneOrder, expected: list[float]
) -> None:
    assert order_planes(planes, order) == pytest.approx(expected), name


def test_plan_from_a_spacing_and_its_checks() -> None:
    plan = ScanPlan.build([0.0, 0.5, 1.0, 1.5, 2.0], candidate_step_um=1.0)
    assert sorted(plan.candidates_um) == [0.0, 1.0, 2.0]
    plan.check_stage_limits((-1.0, 3.0))
    with pytest.raises(StageSafetyError, match="outside the focus travel"):
        plan.check_stage_limits((0.5, 3.0))
    with pytest.raises(StageSafetyError, match="--z-limits"):
        plan.check_stage_limits(None)
    assert "candidates (bisection order)" in plan.describe()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"candidates_um": []}, "empty"),
        ({"candidates_um": [1.0, 1.0]}, "repeats"),
        ({"candidates_um": [1.0], "reach_um": 2.0}, "more than 2 um"),
        ({"candidate_step_um": -1.0}, "positive"),
    ],
)
def test_bad_plans(kwargs: dict, fragment: str) -> None:
    with pytest.raises(RmzError, match=fragment):
        ScanPlan.build([0.0, 5.0, 10.0], **kwargs)


def _progress(
    frames: int, change: float | None, relative: float | None, t: float = 0.0
) -> ScanProgress:
    return ScanProgress(frames, change, relative, t, candidates_left=5)


RULES = [
    ("absolute above", FrobeniusChange(10.0), _progress(3, 12.0, 0.1), None),
    ("absolute below", FrobeniusChange(10.0), _progress(3, 9.0, 0.1), StopReason.CONVERGED),
    ("absolute, first frame", FrobeniusChange(10.0), _progress(1, None, None), None),
    ("relative below", RelativeChange(0.05), _progress(3, 99.0, 0.04), StopReason.CONVERGED),
    ("relative above", RelativeChange(0.05), _progress(3, 1.0, 0.06), None),
    ("max frames", MaxFrames(3), _progress(3, 1.0, 1.0), StopReason.MAX_FRAMES),
    ("time budget", TimeBudget(5.0), _progress(2, 1.0, 1.0, t=5.5), StopReason.TIME_BUDGET),
    ("epsilon zero never converges", FrobeniusChange(0.0), _progress(9, 1e-9, 1e-9), None),
]


@pytest.mark.parametrize(("name", "rule", "progress", "expected"), RULES, ids=[r[0] for r in RULES])
def test_stop_rules(
    name: str, rule: object, progress: ScanProgress, expected: StopReason | None
) -> None:
    assert rule.check(progress) is expected  # type: ignore[attr-defined]


def test_first_stop_honours_min_frames_and_running_out() -> None:
    rules = [RelativeChange(0.5), MaxFrames(10)]
    assert first_stop(rules, _progress(2, 1.0, 0.1), min_frames=3) is None
    assert first_stop(rules, _progress(3, 1.0, 0.1), min_frames=3) is StopReason.CONVERGED
    done = ScanProgress(4, 1.0, 0.9, 0.0, candidates_left=0)
    assert first_stop(rules, done) is StopReason.MAX_FRAMES


SEVENTEEN = [3.0 + 0.75 * i for i in range(17)]  # candidates every 0.75 um, 3 to 15


def test_evenly_spaced_planes_are_those_of_complete_sweeps() -> None:
    sweeps = static_order("sweeps", SEVENTEEN, 17)
    even = [m for m in range(1, 18) if evenly_spaced(sweeps[:m], 3.0, 15.0)]
    assert even == [3, 5, 9, 17]
    assert not evenly_spaced([3.0, 15.0, 9.0][:1], 3.0, 15.0)  # one plane is no spacing
    assert not evenly_spaced([3.0, 9.0], 3.0, 15.0)  # an end missing
    # moved to the nearest plane of a 0.2 um stack (a replay on a z-stack) still counts
    assert evenly_spaced([3.0, 6.0, 9.0, 12.2, 15.0], 3.0, 15.0)
    assert not evenly_spaced([3.0, 6.0, 9.0, 13.0, 15.0], 3.0, 15.0)


def test_stop_at_even_lets_convergence_stop_only_on_evenly_spaced_planes() -> None:
    rules = [RelativeChange(0.5), MaxFrames(6)]
    uneven = ScanProgress(4, 1.0, 0.1, 0.0, candidates_left=5, evenly_spaced=False)
    even = ScanProgress(5, 1.0, 0.1, 0.0, candidates_left=4, evenly_spaced=True)
    assert first_stop(rules, uneven) is StopReason.CONVERGED  # "any", the default
    assert first_stop(rules, uneven, stop_at="even") is None
    assert first_stop(rules, even, stop_at="even") is StopReason.CONVERGED
    # the frame limit and running out end the scan wherever it is
    limit = ScanProgress(6, 1.0, 0.1, 0.0, candidates_left=3, evenly_spaced=False)
    assert first_stop(rules, limit, stop_at="even") is StopReason.MAX_FRAMES
    # replayed through every candidate: the first evenly spaced frame under epsilon
    sweeps = static_order("sweeps", SEVENTEEN, 17)
    changes = [None, 0.2, 0.1, 0.04, 0.06, 0.05, 0.04, 0.03, 0.045] + [0.01] * 8
    assert replayed_stop(changes, sweeps, (3.0, 15.0), 0.05) == 4
    assert replayed_stop(changes, sweeps, (3.0, 15.0), 0.05, stop_at="even") == 9
    assert replayed_stop(changes, sweeps, (3.0, 15.0), 0.001, stop_at="even") == 17


def test_where_to_stop_and_the_volume_order_are_settings_with_model_defaults() -> None:
    plain = ScanSettings()
    assert plain.stop_at == "any" and plain.volume_order == "as-taken"
    given = ScanSettings.for_model("beads", stop_at="even", volume_order="z")
    assert given.stop_at == "even" and given.volume_order == "z"
    with pytest.raises(ValueError, match="stop_at"):
        ScanSettings(stop_at="anywhere")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="volume_order"):
        ScanSettings(volume_order="random")  # type: ignore[arg-type]


def test_the_change_relative_to_structure_and_noise_ignores_offset_and_gain() -> None:
    rng = np.random.default_rng(1)
    before = rng.gamma(2.0, 50.0, (6, 16, 16))
    after = before + rng.normal(0, 5.0, before.shape)

    def change(gain: float, offset: float, noise: float, relative_to: str) -> float:
        old, new = gain * before + offset, gain * after + offset
        value = relative_change(
            float(np.linalg.norm(new - old)),
            norm=float(np.linalg.norm(new)),
            centred_norm=float(np.linalg.norm(new - new.mean())),
            voxels=new.size,
            noise_rms=gain * noise,
            relative_to=relative_to,  # type: ignore[arg-type]
        )
        assert value is not None
        return value

    base = change(1.0, 0.0, 3.0, "structure-noise")
    assert change(7.0, 500.0, 3.0, "structure-noise") == pytest.approx(base)
    # the plain relative change falls as the offset grows; this one does not
    assert change(1.0, 500.0, 3.0, "volume") < change(1.0, 0.0, 3.0, "volume") / 3
    # noisier frames loosen it: four times the noise, 4**(1 - STRUCTURE_WEIGHT) less
    loosened = base / 4 ** (1 - STRUCTURE_WEIGHT)
    assert change(1.0, 0.0, 12.0, "structure-noise") == pytest.approx(loosened)
    # noise-free frames do not make every change look infinite
    assert base < change(1.0, 0.0, 0.0, "structure-noise") < 10 * base
    assert relative_change(None, norm=1, centred_norm=1, voxels=1, noise_rms=1,
                           relative_to="structure-noise") is None  # fmt: skip
    with pytest.raises(ValueError, match="needs the centred norm"):
        relative_change(1.0, norm=1, centred_norm=None, voxels=1, noise_rms=1,
                        relative_to="structure-noise")  # fmt: skip
    assert ScanSettings().relative_to == "volume"
    assert ScanSettings.for_model("nuclei", relative_to="structure-noise").relative_to == (
        "structure-noise"
    )
    with pytest.raises(ValueError, match="relative_to"):
        ScanSettings(relative_to="frames")  # type: ignore[arg-type]


def test_negative_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="epsilon must be >= 0"):
        FrobeniusChange(-1.0)
    with pytest.raises(ValueError, match="max frames"):
        MaxFrames(0)


def test_defaults_come_from_the_model_in_python_as_on_the_command_line() -> None:
    nuclei, beads = load_model("nuclei"), load_model("beads")
    plan = ScanPlan.for_model(nuclei)
    assert plan.output_planes_um[0] == 0.0 and plan.output_planes_um[-1] == 18.0
    assert len(plan.output_planes_um) == 91
    assert sorted(plan.candidates_um) == pytest.approx([3.0 + 0.75 * i for i in range(17)])
    assert plan.candidates_um[0] == 9.0 and plan.order is PlaneOrder.BISECTION
    assert sorted(ScanPlan.for_model(beads).candidates_um) == pytest.approx(
        [1.5 + i for i in range(8)]
    )
    # each part can be given instead
    own = ScanPlan.for_model(nuclei, output_planes_um=[4.0, 5.0, 6.0], candidate_step_um=0.5)
    assert own.candidates_um == (5.0,)  # half an input spacing inside a 2 um range: the middle
    with pytest.raises(RmzError, match="positive"):
        ScanPlan.for_model(nuclei, candidate_step_um=0.0)
    default = ScanSettings.for_model(nuclei)
    assert default.relative_epsilon == 0.33 and default.next_plane == "sweeps"
    assert default.stop_at == "even" and default.volume_order == "z"
    assert default.relative_to == "structure-noise"
    # the rule is first heard after the nine-frame sweep; a lower frame limit
    # lowers that, and both can be given
    assert default.min_frames == 9 and ScanSettings.for_model(beads).min_frames == 2
    assert ScanSettings.for_model(nuclei, max_frames=5).min_frames == 5
    assert ScanSettings.for_model(nuclei, max_frames=12).min_frames == 9
    assert ScanSettings.for_model(nuclei, min_frames=3, max_frames=5).min_frames == 3
    with pytest.raises(ValueError, match="below min_frames"):
        ScanSettings.for_model(nuclei, min_frames=6, max_frames=5)
    assert ScanSettings.for_model(beads).stop_at == "any"
    assert ScanSettings.for_model(beads).relative_to == "volume"
    assert ScanSettings.for_model(beads).relative_epsilon == 0.02
    # eight candidates, fewer than the nine frames it was trained on: rebuilt sorted by z
    assert ScanSettings.for_model(beads).volume_order == "z"
    assert ScanSettings.for_model("my-model").relative_epsilon == 0.1
    paper = ScanSettings.for_model(nuclei, epsilon=3.0, max_frames=None)
    assert paper.epsilon == 3.0 and paper.relative_epsilon is None and paper.max_frames is None
    assert ScanSettings.for_model(nuclei).decision_planes == 11


def test_decision_planes_spread_over_the_grid() -> None:
    picked = decision_plane_indices(91)
    assert len(picked) == 11 and picked[0] == 0 and picked[-1] == 90
    assert np.ptp(np.diff(picked)) <= 1  # evenly spaced
    assert list(decision_plane_indices(7)) == list(range(7))


@pytest.mark.parametrize(
    ("value", "near"),
    [(0.05, True), (0.041, True), (0.062, True), (0.039, False), (0.063, False), (None, False)],
)
def test_within_margin_is_a_band_around_the_threshold(value: float | None, near: bool) -> None:
    # 25 % either side of 0.05: above 0.04 and below 0.0625
    assert within_margin(value, 0.05, 0.25) is near
    assert within_margin(value, 0.05, 0.0) is False  # no margin: never


def test_scans_defer_near_the_threshold_by_default() -> None:
    assert ScanSettings().decision_margin == 0.25
    with pytest.raises(ValueError, match="decision_margin"):
        ScanSettings(decision_margin=-0.1)
