"""The worker-beside-window loop behind ``--view`` (offscreen Qt)."""

from __future__ import annotations

import signal

import pytest

from rmz_acq.cli._qt import run_beside_window


def test_work_runs_beside_the_window_and_its_failure_comes_back(qtbot: object) -> None:
    done: list[str] = []
    cancelled: list[bool] = []
    received = [int(signal.SIGINT)]  # a signal came: the loop ends once the work has ended
    run_beside_window(lambda: done.append("ran"), lambda: cancelled.append(True), received)
    assert done == ["ran"] and not cancelled

    def broken() -> None:
        raise ValueError("camera fell over")

    with pytest.raises(ValueError, match="camera fell over"):
        run_beside_window(broken, lambda: cancelled.append(True), received)
