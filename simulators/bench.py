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
import time
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


class XYSource(Protocol):
    """What the bench needs from an XY stage."""

    def position_um(self) -> tuple[float, float]: ...


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
    drift_xy_um_per_min: tuple[float, float] = (0.0, 0.0)  # the sample's own slow motion


# With an XY stage or lateral drift, stacks are kept for regions this much
# wider than the field of view on each side, one per region visited (a few).
TILE_MARGIN_PX = 64
TILES_KEPT = 4


@dataclass(eq=False)
class Bench:
    name: str
    setup: OpticalSetup | None = None
    stage: FocusSource | None = None
    shutter: LightGate | None = None
    xy_stage: XYSource | None = None
    _sample_key: tuple[Any, ...] | None = None
    _stacks: dict[tuple[Any, ...], FocalStack] = field(default_factory=dict)
    _sample: Sample | None = None
    _origin_s: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def focal_stack(
        self, fov_shape: tuple[int, int], centre_px: tuple[int, int] = (0, 0), margin_px: int = 0
    ) -> FocalStack:
        """The (cached) focal stack for the current setup, stage travel and view region."""
        setup, stage = self._require()
        travel = stage.travel_range_um()
        with self._lock:
            depth = setup.sample.depth_um
            max_defocus = max(travel[1], depth - travel[0], depth)
            periodic = setup.sample.kind != "tiff"
            field_px = field_size_px(
                setup.optics, max(fov_shape) + 2 * margin_px, max_defocus, periodic
            )
            sample_key = (setup.sample, setup.optics, field_px)
            if self._sample is None or self._sample_key != sample_key:
                self._sample = make_sample(setup.sample, field_px, setup.optics.pixel_size_um)
                self._sample_key = sample_key
                self._stacks.clear()
            key = (setup, fov_shape, travel, centre_px, margin_px)
            stack = self._stacks.pop(key, None)
            if stack is None:
                stack = FocalStack(
                    self._sample,
                    setup.optics,
                    fov_shape,
                    travel,
                    centre_px=centre_px,
                    margin_px=margin_px,
                )
            self._stacks[key] = stack  # most recently used last
            while len(self._stacks) > TILES_KEPT:
                self._stacks.pop(next(iter(self._stacks)))
            return stack

    def view_offset_px(self) -> tuple[int, int]:
        """``(y, x)`` of the field of view's centre on the sample, in pixels."""
        setup, _ = self._require()
        x, y = self.xy_stage.position_um() if self.xy_stage is not None else (0.0, 0.0)
        minutes = (time.monotonic() - self._origin_s) / 60.0
        x += setup.drift_xy_um_per_min[0] * minutes
        y += setup.drift_xy_um_per_min[1] * minutes
        pixel = setup.optics.pixel_size_um
        return round(y / pixel), round(x / pixel)

    def restart_clock(self) -> None:
        """Lateral drift counts from now."""
        self._origin_s = time.monotonic()

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
        if self.xy_stage is None and setup.drift_xy_um_per_min == (0.0, 0.0):
            image = self.focal_stack(fov_shape).image_at(stage.true_position_um())
        else:
            dy, dx = self.view_offset_px()
            tile = (
                round(dy / TILE_MARGIN_PX) * TILE_MARGIN_PX,
                round(dx / TILE_MARGIN_PX) * TILE_MARGIN_PX,
            )
            stack = self.focal_stack(fov_shape, tile, TILE_MARGIN_PX)
            image = stack.image_at(stage.true_position_um(), (dy - tile[0], dx - tile[1]))
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
