"""rmz_acq: adaptive volumetric wide-field imaging with Recurrent-MZ.

Move the focus to a few sparse planes, stream every frame into a recurrent
network that keeps the whole volume up to date, and stop as soon as another
plane no longer changes it.
"""

from __future__ import annotations

from .errors import AcquisitionError, ConfigError, RmzError, StageSafetyError
from .hardware import load_core, summarize
from .zgrid import ZRange, parse_z_range
from .zstack import acquire_zstack

__version__ = "0.1.0"

__all__ = [
    "AcquisitionError",
    "ConfigError",
    "RmzError",
    "StageSafetyError",
    "ZRange",
    "__version__",
    "acquire_zstack",
    "load_core",
    "parse_z_range",
    "summarize",
]
