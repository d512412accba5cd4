"""The full output grid, brought up to date on a worker thread while the stage moves.

A scan decides on a few output planes (`decision_plane_indices`) as each
frame arrives; every plane is completed here, from the same frames in the
same order with the same weights, so the final volume is exactly the one a
single full session (and ``rmz-acq reconstruct``) gives.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from numpy.typing import NDArray

from ..session import PushResult, ReconstructionSession
from .judge import GridChange

__all__ = ["Completion"]


class Completion:
    """Push frames into ``session`` on a worker thread, in the order submitted.

    ``on_pushed(index, result)`` runs on the worker thread after each push.
    A failure stops the pushing; it is kept in ``error`` and raised by
    `finish`.  Subclasses push elsewhere (`rmz_acq.cluster.RemoteCompletion`:
    on a Dask worker) by overriding `_push` and `volume`.
    """

    def __init__(
        self,
        session: ReconstructionSession | None,
        on_pushed: Callable[[int, PushResult], None],
    ) -> None:
        self.session = session
        self.error: BaseException | None = None
        self._on_pushed = on_pushed
        # frame index -> the full grid's change, for `changes`
        self._changes: dict[int, GridChange] = {}
        self._pushed = threading.Condition()
        self._queue: queue.Queue[tuple[int, NDArray[Any], float] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="rmz-acq-completion", daemon=True)
        self._thread.start()

    def submit(self, index: int, frame: NDArray[Any], z_um: float) -> None:
        """Queue frame ``index`` (taken at ``z_um``); returns at once."""
        self._queue.put((index, frame, z_um))

    @property
    def pending(self) -> int:
        """Frames submitted and not yet pushed (about)."""
        return self._queue.qsize()

    def _push(self, frame: NDArray[Any], z_um: float) -> PushResult:
        assert self.session is not None
        return self.session.push(frame, z_um)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.error is not None:
                continue  # after a failure, only drain
            index, frame, z_um = item
            try:
                result = self._push(frame, z_um)
                with self._pushed:
                    self._changes[index] = GridChange.of(result)
                    self._pushed.notify_all()
                self._on_pushed(index, result)
            except BaseException as exc:  # raised again by finish()
                with self._pushed:
                    self.error = exc
                    self._pushed.notify_all()

    def changes(
        self, index: int, cancelled: Callable[[], bool] = lambda: False
    ) -> GridChange | None:
        """The full grid's change from frame ``index``.

        Waits until the worker has pushed that frame (and every one before
        it); ``None`` when ``cancelled()`` turns true first.  Raises the
        worker's error if it failed.
        """
        with self._pushed:
            while index not in self._changes:
                if self.error is not None:
                    raise self.error
                if cancelled():
                    return None
                self._pushed.wait(0.1)
            return self._changes[index]

    def finish(self) -> None:
        """Wait until every submitted frame is pushed; raise the worker's error."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def volume(self) -> NDArray[Any] | None:
        """The full grid's volume (after `finish`: from every frame)."""
        assert self.session is not None
        return self.session.volume
