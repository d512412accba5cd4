"""Running a scan or an experiment on a worker thread while a Qt window runs on this one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..errors import RmzError

__all__ = ["qt_application", "run_beside_window"]


def qt_application() -> Any:
    """The (one) QApplication, with a clear error when the viewer extra is missing."""
    try:
        from qtpy.QtWidgets import QApplication
    except ImportError as exc:
        raise RmzError(
            f"--view needs the viewer extra: pip install 'rmz_acq[view]' ({exc})"
        ) from None
    return QApplication.instance() or QApplication([])


def run_beside_window(
    work: Callable[[], object], cancel: Callable[[], None], received: list[int]
) -> None:
    """Run ``work`` on a worker thread until it ends or the window is closed.

    ``received`` fills with the signals (Ctrl-C, SIGTERM) caught meanwhile:
    ``work`` then stops and writes its files, and the window closes.  A
    window closed early calls ``cancel`` (everything taken is kept).
    ``work``'s exception, if any, is raised here.
    """
    from qtpy.QtCore import QTimer

    qt_app = qt_application()
    failures: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as exc:  # raised again on this thread
            failures.append(exc)

    worker = threading.Thread(target=guarded, name="rmz-acq-worker", daemon=True)
    worker.start()

    def watch() -> None:  # Python runs signal handlers only between Qt events
        if received and not worker.is_alive():
            qt_app.quit()

    timer = QTimer()
    timer.timeout.connect(watch)
    timer.start(200)
    qt_app.exec()  # returns when the window is closed
    timer.stop()
    if worker.is_alive():  # closed early: stop the microscope, keep what was taken
        cancel()
        worker.join()
    if failures:
        raise failures[0]
