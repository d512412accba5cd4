"""A ready Micro-Manager core from any ``.cfg``: simulated or real hardware.

Simulated configs load pure-Python devices (``#py pyDevice`` lines) into
pymmcore-plus's `UniMMCore`.  Real configs load Micro-Manager's C++ device
adapters, which must be installed (``mmcore install``, or an existing
Micro-Manager folder named by ``MICROMANAGER_PATH``).  Everything after
loading uses only the core API that both kinds of core share.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymmcore_plus import CMMCorePlus

from .errors import ConfigError

__all__ = [
    "MicroscopeSummary",
    "connect_on_runner_thread",
    "focus_limits_um",
    "light_path_open",
    "load_core",
    "loaded_python_device",
    "summarize",
    "xy_limits_um",
]

_PY_PREFIX = "#py "


@contextlib.contextmanager
def _quiet_pymmcore_logs() -> Iterator[None]:
    """Silence pymmcore-plus's log while loading: we report errors ourselves.

    Importing or creating a core logs an ERROR when no Micro-Manager
    installation is found, which is expected (and harmless) for simulated
    configs, and device initialisation failures are logged with a traceback
    before we re-raise them with a short message.
    """
    # "pymmcore-plus" is the package's own logger; the Python-device layer
    # (unicore) logs under its module name, "pymmcore_plus...".
    loggers = [logging.getLogger(name) for name in ("pymmcore-plus", "pymmcore_plus")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _needs_cpp_adapters(text: str) -> list[str]:
    """The C++ adapter names a config loads (``Device,label,Adapter,Name``)."""
    adapters = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Device,"):
            fields = line.split(",")
            if len(fields) >= 3:
                adapters.append(fields[2])
    return adapters


def load_core(config: str | Path) -> CMMCorePlus:
    """Load a Micro-Manager configuration and return the initialised core.

    Parameters
    ----------
    config
        Path of a ``.cfg`` file.  Python devices (``#py`` lines) need no
        installation; C++ device adapters need Micro-Manager installed.

    Raises
    ------
    ConfigError
        The file is missing, a line is invalid (the message names the line),
        a device failed to initialise, or C++ adapters are needed but no
        Micro-Manager installation is found.
    """
    path = Path(config).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"configuration file {str(path)!r} does not exist; give the path of a "
            "Micro-Manager .cfg (simulated ones are in device_configs/)"
        )
    text = path.read_text(errors="replace")
    has_python_devices = any(line.lstrip().startswith(_PY_PREFIX) for line in text.splitlines())
    adapters = _needs_cpp_adapters(text)

    with _quiet_pymmcore_logs():
        from pymmcore_plus import find_micromanager

        mm_path = find_micromanager() if adapters else None
        if adapters and not mm_path:
            raise ConfigError(
                f"{path.name} uses Micro-Manager device adapters "
                f"({', '.join(sorted(set(adapters)))}) but no Micro-Manager installation "
                "was found; install one with `mmcore install` or set MICROMANAGER_PATH "
                "to an existing Micro-Manager folder"
            )
        core: CMMCorePlus
        if has_python_devices:
            from pymmcore_plus.experimental.unicore import UniMMCore

            core = UniMMCore()
        else:
            core = CMMCorePlus()
        if mm_path:
            core.setDeviceAdapterSearchPaths([str(mm_path)])
        try:
            core.loadSystemConfiguration(str(path.resolve()))
        except Exception as exc:  # pymmcore raises RuntimeError or its own types
            message = " ".join(str(exc).split())
            raise ConfigError(f"cannot load {path.name}: {message}") from exc
        _raise_on_failed_python_devices(core, path)
    _detach_callbacks_at_exit(core)
    return core


def _detach_callbacks_at_exit(core: CMMCorePlus) -> None:
    # A core still alive when the interpreter shuts down can have its C++ side
    # call the Python callback relay mid-finalisation, which aborts the process
    # ("FATAL: exception not rethrown", exit 134) about a third of the time.
    # Unregistering the relay while Python is still whole prevents it.
    ref = weakref.ref(core)

    def detach() -> None:
        alive = ref()
        if alive is not None:
            with contextlib.suppress(Exception):
                super(CMMCorePlus, alive).registerCallback(None)

    atexit.register(detach)


def _raise_on_failed_python_devices(core: CMMCorePlus, path: Path) -> None:
    # UniMMCore logs (rather than raises) a Python device whose initialize()
    # failed; the error is kept on the device.
    manager = getattr(core, "_pydevices", None)
    if manager is None:
        return
    for label in core.getLoadedDevices():
        if not core.isPyDevice(label):  # type: ignore[attr-defined]
            continue
        state = manager[label]._initialized_
        if isinstance(state, BaseException):
            raise ConfigError(f"cannot load {path.name}: device {label!r}: {state}")


@dataclass(frozen=True)
class MicroscopeSummary:
    """What a scan needs to know about the loaded hardware."""

    camera: str
    focus: str
    shutter: str
    pixel_size_um: float
    image_shape: tuple[int, int]
    focus_limits_um: tuple[float, float] | None
    bit_depth: int | None = None  # the camera's, where it reports one


def summarize(core: CMMCorePlus, *, require_shutter: bool = True) -> MicroscopeSummary:
    """Check that the core has a camera, a focus stage (and a shutter).

    Raises
    ------
    ConfigError
        A device is missing, or the pixel size is not calibrated.
    """
    camera = core.getCameraDevice()
    focus = core.getFocusDevice()
    shutter = core.getShutterDevice()
    missing = [what for what, label in (("camera", camera), ("focus stage", focus)) if not label]
    if require_shutter and not shutter:
        missing.append("shutter")
    if missing:
        raise ConfigError(
            f"the configuration defines no {' and no '.join(missing)}; set "
            "Core,Camera / Core,Focus / Core,Shutter in the .cfg "
            "(e.g. 'Property,Core,Focus,Z')"
        )
    pixel = float(core.getPixelSizeUm())
    if not pixel > 0:
        raise ConfigError(
            "the configuration has no pixel size calibration; add a pixel size "
            "preset (ConfigPixelSize / PixelSize_um lines) for the objective in use"
        )
    shape = (int(core.getImageHeight()), int(core.getImageWidth()))
    try:
        bit_depth: int | None = int(core.getImageBitDepth()) or None
    except RuntimeError:  # an adapter that cannot say: saturation is then found by its pile-up
        bit_depth = None
    return MicroscopeSummary(camera, focus, shutter, pixel, shape, focus_limits_um(core), bit_depth)


def focus_limits_um(core: CMMCorePlus) -> tuple[float, float] | None:
    """Travel limits of the focus stage, if the device states them.

    Simulated stages have ``LowerLimitUm`` / ``UpperLimitUm`` properties; a
    real stage whose ``Position`` property has limits gives those.  ``None``
    means unknown: a scan then needs limits from the user.
    """
    focus = core.getFocusDevice()
    if not focus:
        return None
    if core.hasProperty(focus, "LowerLimitUm") and core.hasProperty(focus, "UpperLimitUm"):
        return (
            float(core.getProperty(focus, "LowerLimitUm")),
            float(core.getProperty(focus, "UpperLimitUm")),
        )
    if core.hasProperty(focus, "Position") and core.hasPropertyLimits(focus, "Position"):
        return (
            float(core.getPropertyLowerLimit(focus, "Position")),
            float(core.getPropertyUpperLimit(focus, "Position")),
        )
    return None


def xy_limits_um(
    core: CMMCorePlus,
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Travel limits ``((x_lo, x_hi), (y_lo, y_hi))`` of the XY stage, if it states them.

    Simulated XY stages have ``LowerLimitXUm`` ... ``UpperLimitYUm``
    properties; Micro-Manager has no standard way for a real one to report
    its travel, so ``None`` (unknown) asks the user for limits.
    """
    stage = core.getXYStageDevice()
    names = ("LowerLimitXUm", "UpperLimitXUm", "LowerLimitYUm", "UpperLimitYUm")
    if not stage or not all(core.hasProperty(stage, n) for n in names):
        return None
    xlo, xhi, ylo, yhi = (float(core.getProperty(stage, n)) for n in names)
    return (xlo, xhi), (ylo, yhi)


def _is_python_device(core: CMMCorePlus, label: str) -> bool:
    is_py = getattr(core, "isPyDevice", None)
    return bool(is_py is not None and label and is_py(label))


@contextlib.contextmanager
def light_path_open(core: CMMCorePlus) -> Iterator[None]:
    """Make sure exposures see light for the duration of a scan.

    With C++ shutters, Micro-Manager's auto-shutter opens and closes the
    shutter around every exposure, and that is left alone.  UniMMCore does not
    auto-open a Python shutter, so the shutter is held open for the scan
    instead.  Either way the shutter is closed and auto-shutter restored on
    exit, also after an error.
    """
    shutter = core.getShutterDevice()
    if not _is_python_device(core, shutter):
        try:
            yield
        finally:
            if shutter:
                with contextlib.suppress(Exception):
                    core.setShutterOpen(False)
        return
    auto = core.getAutoShutter()
    core.setAutoShutter(False)
    core.setShutterOpen(True)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            core.setShutterOpen(False)
        core.setAutoShutter(auto)


def connect_on_runner_thread(signal: Any, slot: Any) -> None:
    """Connect an MDA signal so ``slot`` runs on the runner's thread, with or without Qt.

    pymmcore-plus picks Qt signals for a core created once a QApplication
    exists; those reach a slot through the GUI thread's event loop: late, or
    never if that loop has stopped (a frame lost).  A direct connection
    delivers on the thread that snapped the frame, as psygnal does.
    """
    if type(signal).__module__.startswith("psygnal"):
        signal.connect(slot)
        return
    try:
        from qtpy.QtCore import Qt

        signal.connect(slot, Qt.ConnectionType.DirectConnection)
    except (ImportError, TypeError):
        signal.connect(slot)


def loaded_python_device(core: CMMCorePlus, label: str) -> object | None:
    """The Python object behind a simulated device (for tests and the simulator)."""
    manager = getattr(core, "_pydevices", None)
    if manager is None or not _is_python_device(core, label):
        return None
    return manager[label]
