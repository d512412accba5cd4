"""A linear filter calibrated on the user's own z-stacks, blended with the network.

Wide-field imaging is linear and, over a field, shift-invariant, so at each
spatial frequency an output plane is best predicted, among linear methods,
by some weighted sum of the frames' Fourier coefficients.  Which weights are
best depends on the specimen and the optics only through the stack's
*cross-spectra in z*: for every pair of planes ``(i, j)`` and every ring of
spatial frequency, the sum over the ring of ``conj(F_i) F_j``.  A full
z-stack of the user's specimen gives those directly, and from them the
least-squares weights of any set of frame positions and any output plane
(the normal equations are entries of that matrix), so one stack calibrates
the filter for every scan, whatever planes the scan chooses.

A recorded stack is noisy, but the noise of different planes is
independent: it adds to the frames' power (as it will in a scan) and
nothing to their correlation with another plane, so the weights fitted on
a noisy stack are those for the noise-free specimen.  At a plane that is
itself a frame that no longer holds, so the filter is used only between
frames, never at a measured plane.

``benchmarks/linear_oracle.py`` measured what this family of filters holds:
fitted on other specimens of the same family it beats the network on packed
nuclei, and half of each beats both.  `rmz_acq.calibration` fits the
cross-spectra on the training parts of the user's stacks (two or more
fields: one field's filter need not carry to another), chooses the share of
the network by cross-fitting stack against stack, and stores both in the
calibrated weights; `ReconstructionSession` applies them to every volume.

Positions: the calibration stack's planes are kept as offsets from the
middle of its range, and a scan's frames and output planes as offsets from the
middle of the scan's output range (``centre_um``): calibrate on stacks that
span the specimen as your scans will.  Output planes and frames outside the
calibrated range get the network alone.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from .errors import RmzError

__all__ = [
    "BLEND_KEY",
    "RINGS",
    "TENSOR_KEY",
    "LinearBlend",
    "LinearFilter",
    "cross_spectra",
    "rings_of",
]

RINGS = 16  # rings of spatial frequency, one weight per frame each
BLEND_KEY = "linear_blend"  # metadata key of the weights file
TENSOR_KEY = "linear_blend.cross_spectra"  # tensor of the weights file, beside the network's
_RIDGE = 1e-6  # of the frames' mean power in a ring: keeps near-equal frames solvable


def rings_of(shape: tuple[int, int], n_rings: int = RINGS) -> NDArray[np.intp]:
    """Ring index of every coefficient of a real FFT of ``shape``; the mean (DC) is -1.

    Rings split the radius in normalised frequency evenly, so the same ring
    is the same band of spatial frequency whatever the field's size.
    """
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    radius = np.hypot(fy, fx) / np.hypot(0.5, 0.5)
    rings = np.minimum((radius * n_rings).astype(np.intp), n_rings - 1)
    rings[0, 0] = -1
    return rings


def cross_spectra(planes: NDArray[np.floating], n_rings: int = RINGS) -> NDArray[np.complex128]:
    """``(rings, P, P)``: per ring, the sum of ``conj(F_i) F_j`` over its coefficients.

    ``planes`` is a ``(P, height, width)`` stack; the mean of each plane
    (DC) is left out.
    """
    data = np.asarray(planes, np.float64)
    spectra = np.fft.rfft2(data).reshape(data.shape[0], -1)
    ring = rings_of(data.shape[1:], n_rings).ravel()
    out = np.zeros((n_rings, data.shape[0], data.shape[0]), np.complex128)
    for r in range(n_rings):
        band = spectra[:, ring == r]
        out[r] = np.conj(band) @ band.T
    return out


@dataclass(frozen=True)
class LinearBlend:
    """Cross-spectra of calibration stacks and the network's share of the blend.

    ``spectra`` is ``(rings, P, P)``, each stack's scaled to the same total
    power and summed; ``offsets_um`` the ``P`` calibration planes, relative
    to the middle of the stack's range; ``weight`` the network's share (the filter's is
    ``1 - weight``); ``source`` what the stacks were, in words (empty: a
    user's calibration stacks).
    """

    spectra: NDArray[np.complex128]
    offsets_um: NDArray[np.float64]
    weight: float
    stacks: int = 1
    source: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise RmzError(
                f"the network's share of a linear blend must be in 0..1, got {self.weight}"
            )
        n = len(self.offsets_um)
        if self.spectra.ndim != 3 or self.spectra.shape[1:] != (n, n):
            raise RmzError(
                f"linear blend spectra of shape {self.spectra.shape} do not match its {n} planes"
            )

    @classmethod
    def fit(
        cls,
        stacks: Sequence[tuple[NDArray[np.floating], NDArray[np.floating]]],
        weight: float = 1.0,
        n_rings: int = RINGS,
    ) -> LinearBlend:
        """Cross-spectra of ``(planes, z_um)`` stacks on the first one's z grid.

        Every stack is centred on the middle of its range; the others contribute at
        the first stack's offsets their nearest planes (within a third of
        its step), so stacks of one z step combine over their common range.

        Raises
        ------
        RmzError
            No stack, fewer than three planes, unsorted or uneven z, or a
            stack whose z step is not the first's.
        """
        if not stacks:
            raise RmzError("a linear blend needs at least one calibration stack")
        grid = _offsets(stacks[0][1])
        step = float(np.median(np.diff(grid)))
        total = np.zeros((n_rings, len(grid), len(grid)), np.complex128)
        count = np.zeros((len(grid), len(grid)))
        for planes, z in stacks:
            offsets = _offsets(z)
            own = float(np.median(np.diff(offsets)))
            if abs(own - step) > 0.05 * step:
                raise RmzError(
                    f"calibration stacks of different z steps ({step:g} and {own:g} um): give "
                    "stacks of one z step"
                )
            index = [int(np.argmin(np.abs(offsets - g))) for g in grid]
            present = np.abs(offsets[index] - grid) <= step / 3
            spectra = cross_spectra(np.asarray(planes)[index], n_rings)
            size = float(np.trace(spectra, axis1=1, axis2=2).real.sum())
            if not size > 0:
                continue  # a flat stack holds nothing to fit
            mask = np.outer(present, present)
            total += spectra / size * mask
            count += mask
        if not count.any():
            raise RmzError("the calibration stacks are flat (no structure to fit a filter on)")
        keep = np.diag(count) > 0
        spectra = total[:, keep][:, :, keep] / np.maximum(count[keep][:, keep], 1)
        return cls(spectra, grid[keep], float(weight), len(stacks))

    def with_weight(self, weight: float) -> LinearBlend:
        return dataclasses.replace(self, weight=float(weight))

    def with_source(self, source: str) -> LinearBlend:
        return dataclasses.replace(self, source=source)

    @property
    def step_um(self) -> float:
        return float(np.median(np.diff(self.offsets_um))) if len(self.offsets_um) > 1 else 0.0

    def index(self, offset_um: float) -> int | None:
        """The calibration plane at ``offset_um`` (within half a step), or None."""
        i = int(np.argmin(np.abs(self.offsets_um - offset_um)))
        return i if abs(self.offsets_um[i] - offset_um) <= 0.5 * self.step_um + 1e-9 else None

    # on disk -----------------------------------------------------------------

    def to_disk(self) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
        """Metadata and tensor for a safetensors file (`save_weights`)."""
        record = {
            "weight": self.weight,
            "offsets_um": [float(o) for o in self.offsets_um],
            "rings": int(self.spectra.shape[0]),
            "stacks": self.stacks,
            "source": self.source,
        }
        pairs = np.ascontiguousarray(
            np.stack([self.spectra.real, self.spectra.imag], axis=-1), np.float32
        )
        return {BLEND_KEY: json.dumps(record)}, {TENSOR_KEY: torch.from_numpy(pairs).contiguous()}

    @classmethod
    def from_disk(cls, metadata: dict[str, str], tensor: torch.Tensor) -> LinearBlend:
        """The blend `to_disk` wrote.

        Raises
        ------
        RmzError
            The record is not JSON or does not match the tensor.
        """
        try:
            record = json.loads(metadata[BLEND_KEY])
            pairs = tensor.to(torch.float64).numpy()
            return cls(
                pairs[..., 0] + 1j * pairs[..., 1],
                np.asarray(record["offsets_um"], np.float64),
                float(record["weight"]),
                int(record.get("stacks", 1)),
                str(record.get("source", "")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RmzError(f"the weights' linear blend record is damaged: {exc}") from exc

    def describe(self) -> str:
        """E.g. ``blend of 0.50 x the network and 0.50 x a linear ring filter ...``."""
        source = self.source or f"{self.stacks} calibration stack(s)"
        return (
            f"blend of {self.weight:.2f} x the network and {1 - self.weight:.2f} x a linear "
            f"ring filter ({self.spectra.shape[0]} rings) fitted on {source}, "
            f"over {self.offsets_um[0]:+.2f} to {self.offsets_um[-1]:+.2f} um of the scan's "
            "middle"
        )


def _offsets(z_um: NDArray[np.floating]) -> NDArray[np.float64]:
    z = np.asarray(z_um, np.float64)
    if z.size < 3:
        raise RmzError(f"a calibration stack needs 3 or more planes, got {z.size}")
    step = np.diff(z)
    if not (step > 0).all():
        raise RmzError("a calibration stack's z must increase plane by plane; sort it first")
    if step.max() > 1.5 * step.min():
        raise RmzError(
            f"a calibration stack's z steps range {step.min():g}-{step.max():g} um; give an "
            "evenly spaced stack"
        )
    return z - 0.5 * (z[0] + z[-1])


class LinearFilter:
    """The calibrated filter applied to the frames of one scan, as they arrive.

    Holds each frame's spectrum; `planes` gives the filter's estimate of
    output planes from every frame so far, and which planes it covers.
    """

    def __init__(self, blend: LinearBlend, centre_um: float) -> None:
        self.blend = blend
        self.centre_um = float(centre_um)
        self._spectra = np.zeros((0, 0), np.complex128)  # (frames, coefficients)
        self._means: list[float] = []
        self._z: list[float] = []
        self._index: list[int] = []
        self._shape: tuple[int, int] | None = None
        self._rings: NDArray[np.intp] | None = None

    def add(self, frame: NDArray[np.floating], z_um: float) -> None:
        """One frame at ``z_um``; frames outside the calibrated range are kept out."""
        index = self.blend.index(z_um - self.centre_um)
        values = np.asarray(frame, np.float64)
        if index is None:
            return
        if self._shape is None:
            self._shape = (values.shape[0], values.shape[1])
            self._rings = rings_of(self._shape, self.blend.spectra.shape[0])
        spectrum = np.fft.rfft2(values).ravel()  # double: the gains can be large
        self._spectra = np.concatenate([self._spectra.reshape(-1, spectrum.size), [spectrum]])
        self._means.append(float(values.mean()))
        self._z.append(float(z_um))
        self._index.append(index)

    def covers(self, planes_um: Sequence[float] | NDArray[np.floating]) -> NDArray[np.bool_]:
        """Which planes the filter estimates: inside the calibrated range, not at a frame."""
        out = []
        for z in np.asarray(planes_um, np.float64):
            index = self.blend.index(z - self.centre_um)
            out.append(bool(self._index) and index is not None and index not in self._index)
        return np.asarray(out, bool)

    def planes(self, planes_um: Sequence[float] | NDArray[np.floating]) -> NDArray[np.float32]:
        """The filter's estimate of ``planes_um`` (zeros where `covers` is False)."""
        planes = np.asarray(planes_um, np.float64)
        if self._shape is None or self._rings is None:
            raise RmzError("the linear filter has no frame in its calibrated range yet")
        height, width = self._shape
        out = np.zeros((len(planes), height, width), np.float32)
        covered = self.covers(planes)
        if not covered.any():
            return out
        ring = np.maximum(self._rings.ravel(), 0)
        source = np.asarray(self._index)
        gram = self.blend.spectra[:, source][:, :, source]  # (rings, n, n)
        scale = np.trace(gram, axis1=1, axis2=2).real / len(source)
        gram = gram + (_RIDGE * scale + 1e-30)[:, None, None] * np.eye(len(source))
        wanted = np.flatnonzero(covered)
        # covered planes are inside the calibrated range: none is None
        targets = np.array([self.blend.index(planes[k] - self.centre_um) for k in wanted], np.intp)
        rhs = self.blend.spectra[:, source][:, :, targets]  # (rings, n, planes)
        weights = np.linalg.solve(gram, rhs)  # every plane's at once
        # the plane's mean (DC) is linear interpolation's: no offset of the calibration
        order = np.argsort(self._z)
        z, means = np.asarray(self._z)[order], np.asarray(self._means)[order]
        for j, k in enumerate(wanted):
            spectrum = np.einsum("nk,kn->k", self._spectra, weights[ring, :, j])
            spectrum[0] = np.interp(planes[k], z, means) * height * width
            out[k] = np.fft.irfft2(spectrum.reshape(height, -1), s=(height, width))
        return out
