"""Where results go: nothing overwritten silently, one scan per run folder.

- An output file that is one of the inputs is always refused; any other
  existing output is refused unless the user asks for ``overwrite``.
- A run folder that already holds files is refused unless ``overwrite``,
  which deletes what a run writes (`RUN_FILES`) and nothing else.
- A run folder is locked for the length of a scan (``.rmz_acq.lock``, an OS
  file lock that dies with the process, so a killed scan leaves no stale
  lock): a second scan into the same folder is refused.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import OutputExistsError, RmzError, RunLockedError
from .run_folder import FRAMES, PREVIEW, REPORT, UNUSED_FRAMES, VOLUME, VOLUME_AFTER_PATTERN

__all__ = [
    "LOCK_NAME",
    "RUN_FILES",
    "VALIDATION_FILES",
    "RunFolder",
    "check_output_file",
    "check_writable",
]

LOCK_NAME = ".rmz_acq.lock"

# What `rmz-acq acquire` writes into a run folder (and `--overwrite` deletes).
RUN_FILES = (
    FRAMES,
    UNUSED_FRAMES,
    VOLUME,
    VOLUME_AFTER_PATTERN,
    REPORT,
    PREVIEW,
    "*.partial",
    "snapshots/frame_*.png",
)

# What `rmz-acq validate` writes into its folder.
VALIDATION_FILES = ("stack.ome.tif", VOLUME, REPORT, "validation.png", "*.partial")


def check_writable(path: Path) -> None:
    """Refuse ``path`` unless the nearest folder that exists above it is writable."""
    folder = path.parent if not path.is_dir() else path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder.exists() and not folder.is_dir():
        raise RmzError(f"cannot write {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RmzError(f"cannot write {path}: the folder {folder} is not writable")


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_output_file(
    path: str | Path,
    *,
    inputs: Iterable[str | Path] = (),
    overwrite: bool = False,
    flag: str = "-o",
) -> Path:
    """Refuse an output file that is an input, is a folder, or exists (unless ``overwrite``).

    Raises
    ------
    RmzError
        The output is one of ``inputs`` (always), a folder, or not writable.
    OutputExistsError
        It exists and ``overwrite`` is false.
    """
    path = Path(path)
    for source in inputs:
        if _same_file(path, Path(source)):
            raise RmzError(
                f"{flag} {path} is the input {source}; writing it would destroy the input. "
                "Choose another output file"
            )
    if path.is_dir():
        raise RmzError(f"{flag} {path} is a folder; give a file name, e.g. {path}/volume.ome.tif")
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{flag} {path} already exists; choose another name or add --overwrite to replace it"
        )
    check_writable(path)
    return path


class RunFolder:
    """The folder one scan writes: checked, cleared on request, locked while in use."""

    def __init__(self, path: str | Path, files: tuple[str, ...] = RUN_FILES) -> None:
        self.path = Path(path)
        self.files = files  # what this kind of folder holds (glob patterns)
        self._lock_fd: int | None = None

    def contents(self) -> list[Path]:
        """Everything in the folder but the lock."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if p.name != LOCK_NAME)

    def run_files(self) -> list[Path]:
        """The files in the folder that a run writes (``files``, e.g. `RUN_FILES`)."""
        found: list[Path] = []
        for pattern in self.files:
            found.extend(p for p in self.path.glob(pattern) if p.is_file())
        return sorted(set(found))

    def check(self, *, overwrite: bool = False) -> None:
        """Refuse a file in the folder's place, an unwritable place, or earlier results.

        Raises
        ------
        RmzError
            The path is a file or cannot be written.
        OutputExistsError
            The folder holds files and ``overwrite`` is false.
        """
        if self.path.exists() and not self.path.is_dir():
            raise RmzError(f"-o {self.path} is a file; give a folder for the run")
        check_writable(self.path / REPORT)
        held = self.contents()
        if held and not overwrite:
            shown = ", ".join(p.name for p in held[:4]) + (", ..." if len(held) > 4 else "")
            raise OutputExistsError(
                f"run folder {self.path} is not empty ({shown}); choose a new folder, or add "
                "--overwrite to delete the files an earlier run wrote there"
            )

    def clear(self) -> list[Path]:
        """Delete what an earlier run wrote (``files``); other files stay."""
        removed = self.run_files()
        for path in removed:
            path.unlink(missing_ok=True)
        snapshots = self.path / "snapshots"
        if snapshots.is_dir() and not any(snapshots.iterdir()):
            snapshots.rmdir()
        return removed

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunFolder]:
        """Hold the folder's lock (creating the folder) for the ``with`` block.

        Raises
        ------
        RunLockedError
            Another scan, in this process or another, holds it.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK_NAME
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_file(fd)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"run folder {self.path} is in use by another scan (process {holder}); wait "
                "for it to finish or choose another -o"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        try:
            yield self
        finally:
            self._lock_fd = None
            with contextlib.suppress(OSError):
                lock.unlink()
            os.close(fd)  # closing releases the lock


def _lock_file(fd: int) -> None:
    """An exclusive, non-blocking OS lock on ``fd``; ``OSError`` if held elsewhere."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
