"""Reading a useq MDASequence as an experiment: what is honoured, what is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import useq

from rmz_acq.errors import InvalidValueError
from rmz_acq.experiment import load_sequence, plan_experiment

POSITIONS = [{"x": 0, "y": 0, "z": 2, "name": "a"}, {"x": 30, "y": 5, "name": "b"}]

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("channels", {"channels": ["DAPI"]}, "channels: an experiment takes one channel"),
    (
        "autofocus",
        {"autofocus_plan": {"autofocus_device_name": "Z", "axes": ["t"]}},
        "autofocus_plan",
    ),
    ("absolute-z-plan", {"z_plan": {"top": 4, "bottom": 0, "step": 1}}, "only a relative z plan"),
    (
        "position-sub-sequence",
        {"stage_positions": [{"x": 0, "y": 0, "sequence": {"z_plan": {"range": 2, "step": 1}}}]},
        "stage_positions[0].sequence",
    ),
    (
        "shutter-across",
        {"keep_shutter_open_across": ["z"]},
        "keep_shutter_open_across",
    ),
    (
        "positions-before-time",
        {
            "stage_positions": POSITIONS,
            "time_plan": {"interval": 1, "loops": 2},
            "axis_order": "ptz",
        },
        "axis_order",
    ),
]


@pytest.mark.parametrize(("case", "fields", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_what_cannot_be_honoured_is_refused_by_name(
    case: str, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidValueError, match="cannot be run as given") as info:
        plan_experiment(useq.MDASequence(**fields))
    assert message in str(info.value)


PLANS: list[tuple[str, dict[str, Any], list[str], list[float], tuple[float, ...] | None]] = [
    ("nothing", {}, ["p000"], [0.0], None),
    (
        "positions-and-loops",
        {"stage_positions": POSITIONS, "time_plan": {"interval": 2, "loops": 3}},
        ["a", "b"],
        [0.0, 2.0, 4.0],
        None,
    ),
    (
        "duration",
        {"stage_positions": POSITIONS[:1], "time_plan": {"interval": 5, "duration": 10}},
        ["a"],
        [0.0, 5.0, 10.0],
        None,
    ),
    (
        "grid-around-each-position",
        {
            "stage_positions": POSITIONS,
            "grid_plan": {"rows": 1, "columns": 2, "fov_width": 6.4, "fov_height": 6.4},
        },
        ["a_g000", "a_g001", "b_g000", "b_g001"],
        [0.0],
        None,
    ),
    (
        "relative-z-plan",
        {"stage_positions": POSITIONS[:1], "z_plan": {"range": 4, "step": 2}},
        ["a"],
        [0.0],
        (-2.0, 0.0, 2.0),
    ),
]


@pytest.mark.parametrize(
    ("case", "fields", "names", "times", "offsets"), PLANS, ids=[p[0] for p in PLANS]
)
def test_positions_time_points_and_candidates(
    case: str,
    fields: dict[str, Any],
    names: list[str],
    times: list[float],
    offsets: tuple[float, ...] | None,
) -> None:
    plan = plan_experiment(useq.MDASequence(**fields))
    assert [p.name for p in plan.positions] == names
    assert list(plan.time_points_s) == pytest.approx(times)
    assert plan.candidate_offsets_um == offsets
    assert plan.volumes == len(names) * len(times)
    assert [p.index for p in plan.positions] == list(range(len(names)))


def test_grid_positions_are_where_useq_puts_them() -> None:
    fields = {
        "stage_positions": POSITIONS,
        "grid_plan": {"rows": 1, "columns": 2, "fov_width": 6.4, "fov_height": 6.4},
    }
    sequence = useq.MDASequence(**fields)
    plan = plan_experiment(sequence)
    expected = {(e.x_pos, e.y_pos) for e in sequence.iter_events() if e.index.get("z", 0) == 0}
    assert {(p.x_um, p.y_um) for p in plan.positions} == expected
    assert plan.positions[0].z_um == 2.0 and plan.positions[2].z_um is None


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing.yaml", None, "no such file"),
        ("seq.txt", "time_plan: {interval: 1, loops: 2}", ".yaml, .yml or .json"),
        ("bad.yaml", "time_plan: {interval: 1, loops: -2}", "is not a valid MDASequence"),
        ("broken.json", "{not json", "Invalid JSON"),
        ("broken.yaml", "time_plan: [interval", "could not be read"),
    ],
)
def test_sequence_files_with_problems_get_clear_errors(
    tmp_path: Path, name: str, text: str | None, message: str
) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(InvalidValueError, match="--sequence") as info:
        load_sequence(path)
    assert message in str(info.value)


def test_yaml_and_json_give_the_same_experiment(tmp_path: Path) -> None:
    sequence = useq.MDASequence(stage_positions=POSITIONS, time_plan={"interval": 2, "loops": 2})
    (tmp_path / "s.json").write_text(sequence.model_dump_json())
    (tmp_path / "s.yaml").write_text(sequence.yaml())
    from_json = plan_experiment(load_sequence(tmp_path / "s.json"))
    from_yaml = plan_experiment(load_sequence(tmp_path / "s.yaml"))
    assert from_json.positions == from_yaml.positions
    assert from_json.time_points_s == from_yaml.time_points_s == (0.0, 2.0)
