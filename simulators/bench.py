"""The optical bench that ties the simulated devices together.

Micro-Manager devices cannot see one another, but a camera has to know where
the focus stage really is, whether the shutter is open and what sample sits
under the objective.  Each simulated device names a bench (its ``Bench``
property, ``"default"`` unless set) and attaches itself to it when it is
initialised; the camera asks the bench for the expected photon image.

A bench is also keyed by the core that loaded its devices, so two cores alive
in one process (two tests, two GUIs) never see each other's stage.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from .optics import Optics
from .rendering import FocalStack, field_size_px
from .samples import Sample, SampleSpec, make_sample

if TYPE_CHECKING:
    from pymmcore_plus.experimental.unicore import Device

__all__ = ["Bench", "OpticalSetup", "bench_for"]


class FocusSource(Protocol):
    """What the bench needs from a focus stage."""

    def true_position_um(self) -> float: ...
    def travel_range_um(self) -> tuple[float, float]: ...


class LightGate(Protocol):
    """What the bench needs from a shutter."""

    def get_open(self) -> bool: ...


@dataclass(frozen=True)
class OpticalSetup:
    """Everything that decides the noise-free image: sample, optics, light."""

    sample: SampleSpec
    optics: Optics
    photon_flux_per_s: float
    background_photons_per_s: float


@dataclass(eq=False)
class Bench:
    name: str
    setup: OpticalSetup | None = None
    stage: FocusSource | None = None
    shutter: LightGate | None = None
    _cache_key: tuple[Any, ...] | None = None
    _stack: FocalStack | None = None
    _sample: Sample | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def focal_stack(self, fov_shape: tuple[int, int]) -> FocalStack:
        """The (cached) focal stack for the current setup and stage travel."""
        setup, stage = self._require()
        travel = stage.travel_range_um()
        key = (setup, fov_shape, travel)
        with self._lock:
            if self._stack is None or self._cache_key != key:
                depth = setup.sample.depth_um
                max_defocus = max(travel[1], depth - travel[0], depth)
                periodic = setup.sample.kind != "tiff"
                field_px = field_size_px(setup.optics, max(fov_shape), max_defocus, periodic)
                self._sample = make_sample(setup.sample, field_px, setup.optics.pixel_size_um)
                self._stack = FocalStack(self._sample, setup.optics, fov_shape, travel)
                self._cache_key = key
            return self._stack

    @property
    def sample(self) -> Sample | None:
        """The sample of the last computed stack (ground truth for tests)."""
        return self._sample

    def expected_photons(
        self, fov_shape: tuple[int, int], exposure_ms: float
    ) -> NDArray[np.float32]:
        """Expected photons per pixel for one exposure at the stage's true z."""
        setup, stage = self._require()
        exposure_s = exposure_ms / 1000.0
        if self.shutter is None or not self.shutter.get_open():
            return np.zeros(fov_shape, np.float32)
        image = self.focal_stack(fov_shape).image_at(stage.true_position_um())
        image = image * np.float32(setup.photon_flux_per_s * exposure_s)
        return image + np.float32(setup.background_photons_per_s * exposure_s)

    def _require(self) -> tuple[OpticalSetup, FocusSource]:
        if self.setup is None:
            raise RuntimeError(
                f"bench {self.name!r} has no SimulatedMicroscope: load one "
                "(#py pyDevice,Microscope,simulators.devices,SimulatedMicroscope)"
            )
        if self.stage is None:
            raise RuntimeError(
                f"bench {self.name!r} has no SimulatedFocusStage: load one "
                "(#py pyDevice,Z,simulators.devices,SimulatedFocusStage)"
            )
        return self.setup, self.stage


_BENCHES: dict[tuple[str, int], Bench] = {}
_REGISTRY_LOCK = threading.Lock()


def _core_key(device: Device) -> int:
    # Devices only see a restricted proxy of their core, but every device of
    # one core shares the core's signal instances: their identity names the core.
    try:
        return id(device.core.events.propertyChanged)
    except AttributeError:  # not loaded into a core (plain Python use)
        return 0


def bench_for(device: Device, name: str) -> Bench:
    """The bench called ``name`` in ``device``'s core, created on first use."""
    key = (name, _core_key(device))
    with _REGISTRY_LOCK:
        bench = _BENCHES.get(key)
        if bench is None:
            bench = _BENCHES[key] = Bench(name)
        return bench
