"""Incremental reconstruction: one recurrent state per output plane.

`ReconstructionSession.push(frame, measured_z_um)` advances the recurrent
state of *every* output plane by one step (planes in batches), decodes the
new volume V_M and reports ``||V_M - V_(M-1)||_F``.  A push costs the same
whatever M is: nothing is recomputed from earlier frames.

Memory: the state is kept per plane in ``state_dtype`` (float16 by default:
GRU states are bounded in (-1, 1), so half precision loses nothing that shows)
and computed in float32.  Large frames are processed in lateral tiles whose
halo is at least the network's one-step receptive radius; because the state
of the previous step is stored for the whole frame, a tile's core is then
exactly what the untiled computation gives.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from .compute import resolve_device
from .errors import RmzError
from .fidelity import blend_measured, noise_variance_map
from .linear_blend import LinearFilter
from .model.network import RecurrentMZ, RecurrentState
from .model.normalization import IntensityNormalization
from .model.weights import LoadedModel

__all__ = ["PRECISIONS", "PushResult", "ReconstructionSession", "compute_dtype"]

# What ``--precision`` accepts: the dtype the convolutions run in.
PRECISIONS: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def compute_dtype(precision: str) -> torch.dtype:
    """The compute dtype for a ``--precision`` name, with an error naming the choices."""
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}") from None


def centred_norm(squared_norm: float, total: float, voxels: int) -> float:
    """``||V - mean(V)||_F`` from ``sum(V**2)``, ``sum(V)`` and the voxel count."""
    return float(np.sqrt(max(squared_norm - total * total / max(voxels, 1), 0.0)))


@dataclass(frozen=True, slots=True)
class PushResult:
    """What one frame did to the volume.

    ``volume`` is the session's live ``(Z, H, W)`` float32 array in the input
    frames' units: copy it to keep V_M after the next push.  The changes are
    ``None`` for the first frame (there is no V_0).
    """

    volume: NDArray[np.float32]
    frame_index: int
    frobenius_change: float | None
    relative_change: float | None
    reconstruction_s: float
    plane_changes: NDArray[np.float64] | None = None  # ||V_M - V_(M-1)||_F per output plane
    centred_norm: float | None = None  # ||V_M - mean(V_M)||_F: the structure, offset-free
    voxels: int = 0  # of the volume the norms are over


@dataclass(frozen=True, slots=True)
class _Tile:
    """A core region (written back) inside an extended region (computed)."""

    outer: tuple[slice, slice]
    core: tuple[slice, slice]  # in full-frame coordinates
    inner: tuple[slice, slice]  # the core's position inside ``outer``


# Pixels per batched step (planes x tile area) when plane_batch is not given.
_BATCH_PIXELS_CPU = 4 * 256 * 256
_BATCH_PIXELS_GPU = 32 * 256 * 256


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def measured_plane_tolerance_um(planes_um: NDArray[np.floating]) -> float:
    """How near a frame's z must be to an output plane to count as measuring it.

    Half an output step, and never farther than 0.1 um (a fifth of the axial
    FWHM at NA 1.4): stage error, not another plane.
    """
    steps = np.diff(np.sort(np.asarray(planes_um, np.float64)))
    steps = steps[steps > 0]
    return min(0.5 * float(steps.min()) if steps.size else 0.1, 0.1)


class ReconstructionSession:
    """Streaming Recurrent-MZ reconstruction of a fixed output grid.

    Parameters
    ----------
    model
        A `RecurrentMZ` or a `LoadedModel` (preset or weights file).
    output_planes_um
        The z of every output plane, micrometres, in the frames' z coordinates.
    device
        ``"cpu"``, ``"cuda"``; default: CUDA when available.
    state_dtype
        Storage precision of the recurrent state.
    compute_dtype
        ``torch.float32`` (default) or ``torch.bfloat16``: convolutions under
        bfloat16 autocast, about 1.5-2x faster on CPUs with native bfloat16
        (AVX512-BF16 / AMX) and on recent GPUs, at 1-2 % of the output's
        range in the largest pixel difference (``benchmarks/bench_session.py
        throughput``); slower on CPUs without it.
    plane_batch
        Output planes advanced together; default: as many as keep one batch
        near 4 x 256 x 256 pixels on the CPU (larger batches fall out of the
        cache and run slower per plane: ``benchmarks/bench_session.py
        throughput``), 32 x 256 x 256 on a GPU.
    tile_px
        Core size of lateral tiles; ``None`` tiles frames larger than 768 px
        with 512 px cores, ``0`` never tiles.
    normalization
        Fixed intensity normalisation; default: from the first frame, by the
        method the model was trained with (``model.config.intensity``).
    keep_measured
        At an output plane within half an output step (at most 0.1 µm) of a
        frame's z, shrink
        the network's estimate towards that frame where the two disagree by
        more than the frame's noise (`rmz_acq.fidelity`), so the volume at a
        measured plane is no further from the specimen than the measurement
        itself.  ``False`` gives the network's output alone.
    plane_tolerance_um
        How near a frame must be to an output plane to measure it (default:
        `measured_plane_tolerance_um` of ``output_planes_um``); a session
        over part of a grid passes the whole grid's.
    blend_centre_um
        For weights that carry a linear blend (`rmz_acq.linear_blend`, written
        by ``rmz-acq calibrate``): the z that the middle of the calibration
        stacks stands for; default: the middle of ``output_planes_um``.  A
        session over part of a grid passes the whole grid's middle.  The
        blend adds a term to a push that grows with the frames pushed (their
        spectra, weighed at every plane between them); the network's part
        stays flat in M.
    """

    def __init__(
        self,
        model: RecurrentMZ | LoadedModel,
        output_planes_um: Sequence[float] | NDArray[np.floating],
        *,
        device: str | torch.device | None = None,
        state_dtype: torch.dtype = torch.float16,
        compute_dtype: torch.dtype = torch.float32,
        plane_batch: int | None = None,
        tile_px: int | None = None,
        normalization: IntensityNormalization | None = None,
        keep_measured: bool = True,
        plane_tolerance_um: float | None = None,
        blend_centre_um: float | None = None,
    ) -> None:
        network = model.model if isinstance(model, LoadedModel) else model
        self.linear_blend = model.linear_blend if isinstance(model, LoadedModel) else None
        planes = np.asarray(output_planes_um, dtype=np.float64).ravel()
        if planes.size == 0:
            raise ValueError("the output grid has no planes; give at least one output z")
        if not np.isfinite(planes).all():
            raise ValueError("output plane z values must be finite numbers")
        if compute_dtype not in PRECISIONS.values():
            raise ValueError(
                f"compute_dtype {compute_dtype} is not supported; use one of "
                + ", ".join(f"torch.{name}" for name in PRECISIONS)
            )
        if plane_batch is not None and plane_batch < 1:
            raise ValueError(f"plane_batch must be >= 1, got {plane_batch}")
        self.device = resolve_device(device)
        # Channels-last convolutions run 1.5-2x faster on the CPU here
        # (benchmarks/bench_session.py throughput); the weights are unchanged.
        network.to(self.device)
        network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = network.eval()
        self.output_planes_um = planes
        self.state_dtype = state_dtype
        self.compute_dtype = compute_dtype
        self.plane_batch = plane_batch
        self.tile_px = tile_px
        self._fixed_normalization = normalization
        self.keep_measured = keep_measured
        self._plane_tolerance_um = (
            plane_tolerance_um
            if plane_tolerance_um is not None
            else measured_plane_tolerance_um(planes)
        )
        self._blend_centre_um = (
            float(blend_centre_um)
            if blend_centre_um is not None
            else 0.5 * float(planes.min() + planes.max())
        )
        self.reset()

    # state -------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every frame: the next push starts a new volume."""
        self.normalization: IntensityNormalization | None = self._fixed_normalization
        self._hidden: list[torch.Tensor] | None = None
        self._volume: NDArray[np.float32] | None = None
        self._frame_shape: tuple[int, int] | None = None
        self._padded_shape: tuple[int, int] = (0, 0)
        self._tiles: list[_Tile] = []
        self._batch = 1
        self._filter = (
            None
            if self.linear_blend is None
            else LinearFilter(self.linear_blend, self._blend_centre_um)
        )
        self.frames_z_um: list[float] = []
        # output plane index -> (sum of the frames measured there, their count,
        # summed noise variance maps), for `keep_measured`
        self._measured: dict[int, tuple[NDArray[np.float64], int, NDArray[np.float64]]] = {}

    @property
    def planes_per_step(self) -> int:
        """Output planes advanced together (fixed at the first frame when automatic)."""
        return self._batch

    @property
    def n_frames(self) -> int:
        return len(self.frames_z_um)

    @property
    def volume(self) -> NDArray[np.float32] | None:
        """V_M (live array), or ``None`` before the first frame."""
        return self._volume

    @property
    def state_nbytes(self) -> int:
        """Bytes held by the recurrent state of all output planes."""
        if self._hidden is None:
            return 0
        return sum(h.numel() * h.element_size() for h in self._hidden)

    def state_nbytes_for(self, height: int, width: int) -> int:
        """Bytes the state will take for frames of ``height x width``."""
        m = self.model.multiple
        hp, wp = _round_up(height, m), _round_up(width, m)
        per_plane = sum(c * (hp >> k) * (wp >> k) for k, c in enumerate(self.model.channels))
        return (
            per_plane
            * len(self.output_planes_um)
            * torch.empty(0, dtype=self.state_dtype).element_size()
        )

    def filter_nbytes_for(self, height: int, width: int, frames: int) -> int:
        """Bytes a linear blend's filter keeps for ``frames`` frames (0 without a blend).

        Each frame's half spectrum, complex128 (`LinearFilter`).
        """
        if self.linear_blend is None:
            return 0
        return frames * height * (width // 2 + 1) * 16

    def check_memory(
        self, height: int, width: int, *, extra_host_bytes: int = 0, frames: int = 0
    ) -> None:
        """Refuse (`RmzError`) frames of ``height x width`` whose volume will not fit.

        The recurrent state lives on ``self.device``, the volume (float32)
        in host memory; ``extra_host_bytes`` is anything else the caller
        will hold beside them; ``frames``, the most frames the session will
        be pushed (their spectra, for weights with a linear blend).
        """
        from .safety import check_memory

        n = len(self.output_planes_um)
        state = {"recurrent state": self.state_nbytes_for(height, width)}
        host = {"volume": n * height * width * 4}
        if extra_host_bytes:
            host["kept volumes"] = extra_host_bytes
        fix = "Use a larger step between output planes (--z-range) or a shorter range."
        spectra = self.filter_nbytes_for(height, width, frames)
        if spectra:
            host["linear blend's frame spectra"] = spectra
            fix += " Fewer frames, or weights without a linear blend, keep fewer spectra."
        what = f"{n} output planes of {height} x {width} px"
        if self.device.type == "cpu":
            check_memory(state | host, what=what, fix=fix)
        else:
            check_memory(state, device=self.device, what=what, fix=fix)
            check_memory(host, what=what, fix=fix)

    def plane_batch_that_fits(
        self, height: int, width: int, *, extra_host_bytes: int = 0, frames: int = 0
    ) -> int | None:
        """``None`` when the whole grid's state fits in memory (stream frame by frame);
        otherwise how many planes at a time do (`rmz_acq.plane_batches`).

        Raises
        ------
        RmzError
            Not even one plane's state fits beside the volume (the message of
            `check_memory`).
        """
        from .safety import MEMORY_SHARE, available_memory_bytes

        try:
            self.check_memory(height, width, extra_host_bytes=extra_host_bytes, frames=frames)
            return None
        except RmzError as refused:
            n = len(self.output_planes_um)
            per_plane = max(1, self.state_nbytes_for(height, width) // n)
            host = (
                n * height * width * 4
                + extra_host_bytes
                + self.filter_nbytes_for(height, width, frames)
            )
            free = available_memory_bytes(self.device)
            if free is None:
                raise
            budget = MEMORY_SHARE * free - (host if self.device.type == "cpu" else 0)
            if self.device.type != "cpu":
                host_free = available_memory_bytes("cpu")
                if host_free is not None and host > MEMORY_SHARE * host_free:
                    raise refused from None
            if budget < per_plane:
                raise refused from None
            return int(budget // per_plane)

    def _allocate(self, height: int, width: int) -> None:
        m = self.model.multiple
        hp, wp = _round_up(height, m), _round_up(width, m)
        self._frame_shape = (height, width)
        self._padded_shape = (hp, wp)
        n = len(self.output_planes_um)
        self._hidden = [
            torch.zeros(n, c, hp >> k, wp >> k, dtype=self.state_dtype, device=self.device)
            for k, c in enumerate(self.model.channels)
        ]
        self._volume = np.zeros((n, height, width), np.float32)
        self._tiles = list(self._make_tiles(hp, wp))
        largest = max(
            (t.outer[0].stop - t.outer[0].start) * (t.outer[1].stop - t.outer[1].start)
            for t in self._tiles
        )
        budget = _BATCH_PIXELS_CPU if self.device.type == "cpu" else _BATCH_PIXELS_GPU
        self._batch = self.plane_batch or max(1, min(n, budget // largest))

    def _make_tiles(self, height: int, width: int) -> Iterator[_Tile]:
        m = self.model.multiple
        core = self.tile_px
        if core is None:
            core = 512 if max(height, width) > 768 else 0
        if core <= 0 or (core >= height and core >= width):
            yield _Tile(
                (slice(0, height), slice(0, width)),
                (slice(0, height), slice(0, width)),
                (slice(0, height), slice(0, width)),
            )
            return
        core = _round_up(core, m)
        halo = _round_up(self.model.receptive_radius(), m)
        for y0 in range(0, height, core):
            y1 = min(y0 + core, height)
            for x0 in range(0, width, core):
                x1 = min(x0 + core, width)
                oy0, ox0 = max(0, y0 - halo), max(0, x0 - halo)
                oy1, ox1 = min(height, y1 + halo), min(width, x1 + halo)
                yield _Tile(
                    (slice(oy0, oy1), slice(ox0, ox1)),
                    (slice(y0, y1), slice(x0, x1)),
                    (slice(y0 - oy0, y1 - oy0), slice(x0 - ox0, x1 - ox0)),
                )

    # the work ----------------------------------------------------------------

    def _check_frame(self, frame: NDArray[np.number], measured_z_um: float) -> NDArray[np.float64]:
        array = np.asarray(frame)
        if array.ndim != 2:
            raise ValueError(f"a frame must be 2D (height, width), got shape {array.shape}")
        if self._frame_shape is not None and array.shape != self._frame_shape:
            raise ValueError(
                f"frame {self.n_frames} has shape {array.shape}, but this volume's frames are "
                f"{self._frame_shape}; call reset() to start a volume of another size"
            )
        if not np.isfinite(measured_z_um):
            raise ValueError(f"measured z must be a finite number, got {measured_z_um}")
        values = array.astype(np.float64, copy=False)
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).sum())
            raise ValueError(f"frame has {bad} NaN or infinite pixels; fix or mask them first")
        return values

    def push(self, frame: NDArray[np.number], measured_z_um: float) -> PushResult:
        """Add one frame taken with the focus at ``measured_z_um``; update every plane."""
        values = self._check_frame(frame, measured_z_um)
        started = time.perf_counter()
        if self._hidden is None:
            self._allocate(*values.shape)
        if self.normalization is None:
            self.normalization = IntensityNormalization.from_frame(
                values, method=self.model.config.intensity
            )
        assert self._hidden is not None and self._volume is not None
        norm = self.normalization
        height, width = values.shape
        hp, wp = self._padded_shape
        padded = np.zeros((hp, wp), np.float32)  # background is 0 once normalised
        padded[:height, :width] = norm.apply(values)
        image = torch.from_numpy(padded).to(self.device)

        if self.keep_measured:
            self._remember_measured(values, float(measured_z_um))
        if self._filter is not None:
            self._filter.add(values, float(measured_z_um))
        first = self.n_frames == 0
        squared_changes = np.zeros(len(self.output_planes_um), np.float64)
        squared_norm = value_sum = 0.0
        planes = torch.from_numpy(self.output_planes_um).to(self.device, torch.float32)
        with torch.inference_mode():
            for p0 in range(0, len(planes), self._batch):
                p1 = min(p0 + self._batch, len(planes))
                dpm = planes[p0:p1] - float(measured_z_um)
                decoded = self._advance(image, dpm, p0, p1)
                new = norm.invert(decoded[:, :height, :width])
                for j in range(p0, p1):
                    if j in self._measured:
                        total, count, variance = self._measured[j]
                        new[j - p0] = blend_measured(
                            new[j - p0], total / count, variance / count**2
                        )
                self._blend_linear(new, p0, p1)
                old = self._volume[p0:p1]
                if not first:
                    squared_changes[p0:p1] = np.sum(
                        (new.astype(np.float64) - old) ** 2, axis=(1, 2)
                    )
                squared_norm += float(np.sum(new.astype(np.float64) ** 2))
                value_sum += float(np.sum(new, dtype=np.float64))
                old[...] = new
        self.frames_z_um.append(float(measured_z_um))
        if not np.isfinite(squared_norm):  # any NaN or inf in the volume
            raise RmzError(
                f"the volume after frame {self.n_frames} (z {measured_z_um:g} um) holds "
                "non-finite values (NaN or inf): the network's weights are damaged or the "
                "frame is far outside what it was trained on; nothing was written from it"
            )
        change = None if first else float(np.sqrt(squared_changes.sum()))
        relative = None if change is None else change / max(float(np.sqrt(squared_norm)), 1e-30)
        return PushResult(
            volume=self._volume,
            frame_index=self.n_frames - 1,
            frobenius_change=change,
            relative_change=relative,
            reconstruction_s=time.perf_counter() - started,
            plane_changes=None if first else np.sqrt(squared_changes),
            centred_norm=centred_norm(squared_norm, value_sum, self._volume.size),
            voxels=self._volume.size,
        )

    def _blend_linear(self, new: NDArray[np.float32], p0: int, p1: int) -> None:
        """Mix the calibrated linear filter into planes ``p0:p1`` it covers (in place)."""
        if self._filter is None or self.linear_blend is None:
            return
        planes = self.output_planes_um[p0:p1]
        covered = self._filter.covers(planes) & np.array(
            [j not in self._measured for j in range(p0, p1)], bool
        )
        if not covered.any():
            return
        share = self.linear_blend.weight
        linear = self._filter.planes(planes)
        new[covered] = share * new[covered] + (1 - share) * linear[covered]

    def _remember_measured(self, frame: NDArray[np.float64], z_um: float) -> None:
        j = int(np.argmin(np.abs(self.output_planes_um - z_um)))
        if abs(self.output_planes_um[j] - z_um) > self._plane_tolerance_um:
            return
        zero = np.zeros_like(frame)
        total, count, variance = self._measured.get(j, (zero, 0, zero))
        self._measured[j] = (total + frame, count + 1, variance + noise_variance_map(frame))

    def _advance(
        self, image: torch.Tensor, dpm: torch.Tensor, p0: int, p1: int
    ) -> NDArray[np.float32]:
        """One step for planes ``p0:p1`` over every tile; returns normalised output."""
        assert self._hidden is not None
        batch = p1 - p0
        hp, wp = self._padded_shape
        out = torch.empty(batch, hp, wp, dtype=torch.float32, device=self.device)
        # Tiles read the previous state in their halo, so the new state is
        # written back only after every tile of this batch has been computed.
        updates = []
        for tile in self._tiles:
            (oy, ox), (cy, cx), (iy, ix) = tile.outer, tile.core, tile.inner
            fast = torch.channels_last
            frame = image[oy, ox].expand(batch, 1, -1, -1).contiguous(memory_format=fast)
            state = RecurrentState(
                tuple(
                    h[p0:p1, :, oy.start >> k : oy.stop >> k, ox.start >> k : ox.stop >> k]
                    .float()
                    .contiguous(memory_format=fast)
                    for k, h in enumerate(self._hidden)
                )
            )
            with torch.autocast(
                self.device.type,
                dtype=torch.bfloat16,
                enabled=self.compute_dtype == torch.bfloat16,
            ):
                state = self.model.step(frame, dpm, state)
                out[:, cy, cx] = self.model.decode(state)[:, 0, iy, ix].float()
            cores = [
                fresh[:, :, iy.start >> k : iy.stop >> k, ix.start >> k : ix.stop >> k].to(
                    self.state_dtype
                )
                for k, fresh in enumerate(state.hidden)
            ]
            updates.append((cy, cx, cores))
        for cy, cx, cores in updates:
            for k, (stored, core) in enumerate(zip(self._hidden, cores, strict=True)):
                stored[p0:p1, :, cy.start >> k : cy.stop >> k, cx.start >> k : cx.stop >> k] = core
        return out.cpu().numpy()

    def run(self, frames: Sequence[NDArray[np.number]], z_um: Sequence[float]) -> PushResult:
        """Push a whole sequence; returns the last result."""
        if len(frames) == 0:
            raise ValueError("no frames to reconstruct from; give at least one")
        if len(frames) != len(z_um):
            raise ValueError(f"{len(frames)} frames but {len(z_um)} z positions")
        result = None
        for frame, z in zip(frames, z_um, strict=True):
            result = self.push(frame, z)
        assert result is not None
        return result
