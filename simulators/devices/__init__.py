"""Simulated Micro-Manager devices, loadable from a ``.cfg`` with ``#py pyDevice``.

#py pyDevice,Microscope,simulators.devices,SimulatedMicroscope
#py pyDevice,Camera,simulators.devices,SimulatedCamera
#py pyDevice,Z,simulators.devices,SimulatedFocusStage
#py pyDevice,Shutter,simulators.devices,SimulatedShutter
#py pyDevice,XY,simulators.devices,SimulatedXYStage
"""

from .camera import SimulatedCamera
from .focus_stage import SimulatedFocusStage, StageLimitError
from .microscope import SimulatedMicroscope
from .shutter import SimulatedShutter
from .xy_stage import SimulatedXYStage

__all__ = [
    "SimulatedCamera",
    "SimulatedFocusStage",
    "SimulatedMicroscope",
    "SimulatedShutter",
    "SimulatedXYStage",
    "StageLimitError",
]
