from __future__ import annotations

import numpy as np
import pytest

from rmz_acq.zgrid import parse_z_list, parse_z_range

GOOD = [
    ("0:10:0.1", 101, 0.0, 10.0),
    ("3:9:3", 3, 3.0, 9.0),
    ("0:18:0.2", 91, 0.0, 18.0),
    ("-2:2:1.5", 3, -2.0, 1.0),  # stop not reached exactly: last plane below it
    ("5:5:1", 1, 5.0, 5.0),
]


@pytest.mark.parametrize(("text", "n", "first", "last"), GOOD)
def test_ranges_include_a_reachable_stop(text: str, n: int, first: float, last: float) -> None:
    planes = parse_z_range(text).planes_um()
    assert len(planes) == n
    assert planes[0] == pytest.approx(first)
    assert planes[-1] == pytest.approx(last)
    assert np.all(np.diff(planes) > 0)


BAD = [
    ("0:10", "START:STOP:STEP"),
    ("a:10:1", "not a number"),
    ("0:10:0", "STEP must be positive"),
    ("0:10:-1", "STEP must be positive"),
    ("10:0:1", "below start"),
    ("0:inf:1", "finite"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD)
def test_bad_ranges_say_how_to_fix_them(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_z_range(text)


def test_z_lists() -> None:
    assert parse_z_list("3,6,9") == [3.0, 6.0, 9.0]
    assert parse_z_list(" 1.5, -2 ") == [1.5, -2.0]
    for bad in ("", "1,x", ","):
        with pytest.raises(ValueError, match="z list"):
            parse_z_list(bad)
