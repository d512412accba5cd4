"""Ctrl-C and ``kill`` (SIGINT, SIGTERM) as a clean cancel of a scan.

The first signal asks the scan to stop before its next move; the frames,
volume and report are written as for any cancel, and the command exits
with 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM).  A second
signal interrupts at once (``KeyboardInterrupt``), for a scan stuck in a
device call.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import typer

__all__ = ["CANCEL_SIGNALS", "exit_cancelled", "exit_status", "signal_name", "stop_on_signals"]

CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[list[int]]:
    """Call ``stop()`` on the first SIGINT or SIGTERM; yields the signals received.

    ``stop`` runs inside a signal handler: it must only set a flag (no locks).
    Outside the main thread (where handlers cannot be set) nothing changes.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if received:  # asked twice: stop waiting for the scan
            raise KeyboardInterrupt
        received.append(signum)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in CANCEL_SIGNALS}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def exit_status(signum: int) -> int:
    """The shell's status for a command ended by ``signum`` (130, 143)."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_cancelled(signum: int, what: str) -> typer.Exit:
    """Say ``cancelled by SIGNAME: what`` on stderr; the exit to raise (128 + signum)."""
    typer.echo(f"cancelled by {signal_name(signum)}: {what}", err=True)
    return typer.Exit(exit_status(signum))
