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

The shipped presets carry a *bank* besides (`SpectraBank`): the
cross-spectra of each training stack kept apart.  A specimen of one kind
resembles some stacks of the training mixture more than others, and the
frames of a scan measure which: their own cross-spectra (between the frames'
planes, per ring) are matched by a non-negative mixture of the members' and
one white-noise power, pulled toward equal weights, and the filter is
solved from that mixture.  Calibrating on your own stacks fits their mean,
with no bank.

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
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.optimize import nnls

from .errors import RmzError

__all__ = [
    "BLEND_KEY",
    "RINGS",
    "TENSOR_KEY",
    "LinearBlend",
    "LinearFilter",
    "SpectraBank",
    "cross_spectra",
    "rings_of",
]

RINGS = 16  # rings of spatial frequency, one weight per frame each
BLEND_KEY = "linear_blend"  # metadata key of the weights file
TENSOR_KEY = "linear_blend.cross_spectra"  # tensor of the weights file, beside the network's
_RIDGE = 1e-6  # of the frames' mean power in a ring: keeps near-equal frames solvable
BANK_KEY = "linear_blend.bank"  # tensor of the weights file: the bank's members
BANK_SCALE_KEY = "linear_blend.bank_scale"  # and each member's scale per ring
BANK_FLOOR_KEY = "linear_blend.bank_floor"  # and its white floor per ring
BANK_COMPONENTS = 8  # eigenvectors kept per member and ring
BANK_RIDGE = 0.01  # pull of the members' weights toward equal (see SpectraBank.weigh)


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
    return _ring_sums(spectra, rings_of(data.shape[1:], n_rings).ravel(), n_rings)


def _ring_sums(
    spectra: NDArray[np.complex128], ring: NDArray[np.intp], n_rings: int
) -> NDArray[np.complex128]:
    """`cross_spectra` of ``(P, coefficients)`` half spectra whose ring indices are ``ring``."""
    out = np.zeros((n_rings, spectra.shape[0], spectra.shape[0]), np.complex128)
    for r in range(n_rings):
        band = spectra[:, ring == r]
        out[r] = np.conj(band) @ band.T
    return out


def _pairs(spectra: NDArray[np.complex128]) -> NDArray[np.float64]:
    """The independent numbers of Hermitian ``(..., n, n)`` blocks as one real vector each.

    Real parts of the upper triangle with the diagonal, imaginary parts
    above it.
    """
    n = spectra.shape[-1]
    upper = np.triu_indices(n)
    above = np.triu_indices(n, 1)
    return np.concatenate(
        [spectra[..., upper[0], upper[1]].real, spectra[..., above[0], above[1]].imag], -1
    )


def _nnls(design: NDArray[np.float64], target: NDArray[np.float64]) -> NDArray[np.float64]:
    """Non-negative least squares with every column scaled to unit length first.

    The members' numbers and the frames' can be many decades apart; scipy's
    tolerance is absolute, so unscaled columns that small read as zero.
    """
    norms = np.linalg.norm(design, axis=0)
    norms = np.where(norms > 0, norms, 1.0)
    solution, _ = nnls(design / norms, target, maxiter=50 * design.shape[1])
    return np.asarray(solution / norms, np.float64)


@dataclass(frozen=True)
class SpectraBank:
    """Cross-spectra of several stacks kept apart, weighed per scan by its own frames.

    Each member (one stack, scaled to a total power of 1) is kept per ring
    as its ``components`` strongest eigenvectors and the mean of the other
    eigenvalues (a white floor): ``spectra ~ factors @ factors^H + floor * I``.
    A stack's planes are strongly correlated in z, so a few components hold
    its structure (on the training mixture 8 of 91 lose nothing the filter
    uses; `BANK_COMPONENTS` keeps 8).  ``factors`` is ``(members, rings,
    P, components)`` on ``offsets_um`` (``P`` planes relative to the middle of
    the range), ``floor`` ``(members, rings)``.  Positions between planes are
    interpolated linearly in z.
    """

    factors: NDArray[np.complex128]
    floor: NDArray[np.float64]
    offsets_um: NDArray[np.float64]
    ridge: float = BANK_RIDGE

    def __post_init__(self) -> None:
        p = len(self.offsets_um)
        if (
            self.factors.ndim != 4
            or self.factors.shape[2] != p
            or self.floor.shape != self.factors.shape[:2]
            or p < 2
        ):
            raise RmzError(
                f"a spectra bank of factors {self.factors.shape} and floor {self.floor.shape} "
                f"does not match its {p} planes"
            )

    @classmethod
    def fit(
        cls,
        stacks: Sequence[tuple[NDArray[np.floating], NDArray[np.floating]]],
        components: int = BANK_COMPONENTS,
        n_rings: int = RINGS,
    ) -> SpectraBank:
        """One member per ``(planes, z_um)`` stack; every stack on the first one's planes.

        A flat stack is left out.

        Raises
        ------
        RmzError
            No stack with structure, stacks on different z grids, or more
            components than planes.
        """
        if not stacks:
            raise RmzError("a spectra bank needs at least one stack")
        grid = _offsets(stacks[0][1])
        if not 0 < components < len(grid):
            raise RmzError(
                f"a bank of {len(grid)}-plane stacks keeps 1 to {len(grid) - 1} components, "
                f"got {components}"
            )
        factors, floors = [], []
        for planes, z in stacks:
            offsets = _offsets(z)
            if offsets.shape != grid.shape or np.abs(offsets - grid).max() > 1e-6:
                raise RmzError("a spectra bank's stacks must share one z grid")
            spectra = cross_spectra(np.asarray(planes), n_rings)
            size = float(np.trace(spectra, axis1=1, axis2=2).real.sum())
            if not size > 0:
                continue
            values, vectors = np.linalg.eigh(spectra / size)  # ascending, per ring
            values = np.maximum(values, 0.0)
            factors.append(vectors[..., -components:] * np.sqrt(values[:, None, -components:]))
            floors.append(values[:, :-components].mean(-1))
        if not factors:
            raise RmzError("the bank's stacks are flat (no structure to fit a filter on)")
        return cls(np.asarray(factors), np.asarray(floors), grid)

    @property
    def members(self) -> int:
        return int(self.factors.shape[0])

    def _at(self, offsets_um: NDArray[np.floating]) -> tuple[NDArray[np.complex128], NDArray]:
        """Factors ``(members, rings, len(offsets), components)`` at ``offsets_um``, and the
        ``(len(offsets), P)`` interpolation weights."""
        grid = self.offsets_um
        where = np.clip(np.asarray(offsets_um, np.float64), grid[0], grid[-1])
        upper = np.clip(np.searchsorted(grid, where), 1, len(grid) - 1)
        fraction = (where - grid[upper - 1]) / (grid[upper] - grid[upper - 1])
        weights = np.zeros((len(where), len(grid)))
        rows = np.arange(len(where))
        weights[rows, upper - 1] = 1.0 - fraction
        weights[rows, upper] += fraction
        below, above = self.factors[:, :, upper - 1], self.factors[:, :, upper]
        factors = below * (1.0 - fraction)[:, None] + above * fraction[:, None]
        return factors, weights

    def blocks(
        self, rows_um: NDArray[np.floating], columns_um: NDArray[np.floating]
    ) -> NDArray[np.complex128]:
        """Every member's cross-spectra ``(members, rings, rows, columns)`` between planes."""
        left, left_w = self._at(rows_um)
        right, right_w = self._at(columns_um)
        out = np.einsum("krac,krbc->krab", left, np.conj(right))
        return out + self.floor[:, :, None, None] * (left_w @ right_w.T)

    def mixture(
        self,
        alpha: NDArray[np.float64],
        rows_um: NDArray[np.floating],
        columns_um: NDArray[np.floating],
    ) -> NDArray[np.complex128]:
        """``sum_k alpha_k`` member k's cross-spectra ``(rings, rows, columns)``."""
        used = np.flatnonzero(alpha > 0)
        left, left_w = self._at(rows_um)
        right, right_w = self._at(columns_um)
        out = np.einsum("k,krac,krbc->rab", alpha[used], left[used], np.conj(right[used]))
        return out + (alpha[used] @ self.floor[used])[:, None, None] * (left_w @ right_w.T)

    def weigh(
        self,
        observed: NDArray[np.complex128],
        frames_um: NDArray[np.floating],
        counts: NDArray[np.floating],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The members' weights and the white noise that best match the frames.

        ``observed`` is the frames' own ``(rings, n, n)`` cross-spectra,
        ``frames_um`` their offsets and ``counts`` the coefficients in each
        ring.  Non-negative least squares over the members' blocks between
        the frames and one white-noise power, each ring weighed by 1 / its
        observed power (so every band counts, not just the bright low
        frequencies), with a ridge of ``ridge`` toward equal member weights
        (without it a few members can fit three frames' numbers and carry a
        filter far from the specimen's).  Returns the members' weights, in
        the frames' units, and the noise power per ring to add to the
        frames' diagonal.
        """
        rings, n = observed.shape[0], observed.shape[1]
        blocks = self.blocks(frames_um, frames_um)
        ring_power = np.trace(observed, axis1=1, axis2=2).real
        # a floor below the faintest ring of real frames (the training mixture's reach 4e-6
        # of their brightest): rings of rounding error alone (noise-free data) must not steer
        weight = 1.0 / np.maximum(ring_power, 1e-6 * max(float(ring_power.max()), 1e-300))
        size = np.maximum(np.trace(blocks, axis1=2, axis2=3).real.sum(1), 1e-30)  # per member
        columns = (_pairs(blocks / size[:, None, None, None]) * weight[:, None]).reshape(
            self.members, -1
        )
        noise = np.zeros((1, rings, n, n), np.complex128)
        noise[0] += counts[:, None, None] * np.eye(n)
        noise_column = (_pairs(noise) * weight[:, None]).reshape(1, -1)
        target = (_pairs(observed) * weight[:, None]).ravel()
        design = np.concatenate([columns, noise_column]).T  # (numbers, members + 1)
        if self.ridge > 0:
            # equal weights first: their common level anchors the ridge
            plain = _nnls(np.stack([columns.sum(0), noise_column[0]], 1), target)
            level = max(float(plain[0]), 1e-30)
            pull = np.sqrt(self.ridge / self.members) * float(np.linalg.norm(target)) / level
            ridge_rows = np.concatenate(
                [pull * np.eye(self.members), np.zeros((self.members, 1))], 1
            )
            design = np.concatenate([design, ridge_rows])
            target = np.concatenate([target, np.full(self.members, pull * level)])
        solution = _nnls(design, target)
        return solution[: self.members] / size, solution[self.members] * counts

    def to_disk(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Record fields and tensors: factors at half precision, each member and ring scaled."""
        scale = np.abs(self.factors).max(axis=(2, 3))  # (members, rings)
        scale = np.where(scale > 0, scale, 1.0)
        unit = self.factors / scale[:, :, None, None]
        pairs = np.ascontiguousarray(np.stack([unit.real, unit.imag], -1), np.float16)
        record = {"bank_offsets_um": [float(o) for o in self.offsets_um], "bank_ridge": self.ridge}
        tensors = {
            BANK_KEY: torch.from_numpy(pairs).contiguous(),
            BANK_SCALE_KEY: torch.from_numpy(np.ascontiguousarray(scale, np.float32)),
            BANK_FLOOR_KEY: torch.from_numpy(np.ascontiguousarray(self.floor, np.float32)),
        }
        return record, tensors

    @classmethod
    def from_disk(cls, record: dict[str, Any], tensors: dict[str, torch.Tensor]) -> SpectraBank:
        pairs = tensors[BANK_KEY].to(torch.float64).numpy()
        scale = tensors[BANK_SCALE_KEY].to(torch.float64).numpy()
        factors = (pairs[..., 0] + 1j * pairs[..., 1]) * scale[:, :, None, None]
        floor = tensors[BANK_FLOOR_KEY].to(torch.float64).numpy()
        offsets = np.asarray(record["bank_offsets_um"], np.float64)
        return cls(factors, floor, offsets, float(record.get("bank_ridge", BANK_RIDGE)))


@dataclass(frozen=True)
class LinearBlend:
    """Cross-spectra of calibration stacks and the network's share of the blend.

    ``spectra`` is ``(rings, P, P)``, each stack's scaled to the same total
    power and summed; ``offsets_um`` the ``P`` calibration planes, relative
    to the middle of the stack's range; ``weight`` the network's share (the filter's is
    ``1 - weight``); ``source`` what the stacks were, in words (empty: a
    user's calibration stacks); ``bank`` the stacks kept apart, weighed per
    scan (`SpectraBank`; the presets'), or None for the mean alone.
    """

    spectra: NDArray[np.complex128]
    offsets_um: NDArray[np.float64]
    weight: float
    stacks: int = 1
    source: str = ""
    bank: SpectraBank | None = None

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

    def with_bank(self, bank: SpectraBank | None) -> LinearBlend:
        """This blend with ``bank`` weighed per scan (None: the mean alone).

        Raises
        ------
        RmzError
            The bank spans another range of planes than the blend.
        """
        if bank is not None and (
            abs(bank.offsets_um[0] - self.offsets_um[0]) > 1e-6
            or abs(bank.offsets_um[-1] - self.offsets_um[-1]) > 1e-6
        ):
            raise RmzError(
                f"a bank over {bank.offsets_um[0]:+g}..{bank.offsets_um[-1]:+g} um does not "
                f"match the blend's {self.offsets_um[0]:+g}..{self.offsets_um[-1]:+g} um"
            )
        return dataclasses.replace(self, bank=bank)

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
        tensors = {TENSOR_KEY: torch.from_numpy(pairs).contiguous()}
        if self.bank is not None:
            bank_record, bank_tensors = self.bank.to_disk()
            record.update(bank_record)
            tensors.update(bank_tensors)
        return {BLEND_KEY: json.dumps(record)}, tensors

    @classmethod
    def from_disk(cls, metadata: dict[str, str], tensors: dict[str, torch.Tensor]) -> LinearBlend:
        """The blend `to_disk` wrote, from the file's metadata and its blend tensors.

        Raises
        ------
        RmzError
            The record is not JSON or does not match the tensors.
        """
        try:
            record = json.loads(metadata[BLEND_KEY])
            pairs = tensors[TENSOR_KEY].to(torch.float64).numpy()
            bank = None
            if BANK_KEY in tensors:
                bank = SpectraBank.from_disk(record, tensors)
            blend = cls(
                pairs[..., 0] + 1j * pairs[..., 1],
                np.asarray(record["offsets_um"], np.float64),
                float(record["weight"]),
                int(record.get("stacks", 1)),
                str(record.get("source", "")),
            )
            return blend.with_bank(bank)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RmzError(f"the weights' linear blend record is damaged: {exc}") from exc

    def describe(self) -> str:
        """E.g. ``blend of 0.50 x the network and 0.50 x a linear ring filter ...``."""
        source = self.source or f"{self.stacks} calibration stack(s)"
        if self.bank is not None:
            source += f" (the mean) or a bank of {self.bank.members} weighed by the scan's frames"
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
        self._weighed: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None

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
        self._weighed = None  # the bank is weighed afresh with this frame

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
        wanted = np.flatnonzero(covered)
        if self.blend.bank is None:
            source = np.asarray(self._index)
            gram = self.blend.spectra[:, source][:, :, source]  # (rings, n, n)
            # covered planes are inside the calibrated range: none is None
            targets = np.array(
                [self.blend.index(planes[k] - self.centre_um) for k in wanted], np.intp
            )
            rhs = self.blend.spectra[:, source][:, :, targets]  # (rings, n, planes)
        else:
            gram, rhs = self._weighed_bank(planes[wanted])
        scale = np.trace(gram, axis1=1, axis2=2).real / len(self._index)
        gram = gram + (_RIDGE * scale + 1e-30)[:, None, None] * np.eye(len(self._index))
        weights = np.linalg.solve(gram, rhs)  # every plane's at once
        # the plane's mean (DC) is linear interpolation's: no offset of the calibration
        order = np.argsort(self._z)
        z, means = np.asarray(self._z)[order], np.asarray(self._means)[order]
        for j, k in enumerate(wanted):
            spectrum = np.einsum("nk,kn->k", self._spectra, weights[ring, :, j])
            spectrum[0] = np.interp(planes[k], z, means) * height * width
            out[k] = np.fft.irfft2(spectrum.reshape(height, -1), s=(height, width))
        return out

    def _weighed_bank(
        self, planes_um: NDArray[np.float64]
    ) -> tuple[NDArray[np.complex128], NDArray[np.complex128]]:
        """Gram ``(rings, n, n)`` and right-hand side ``(rings, n, planes)`` from the bank.

        The bank is weighed once per frame added (`SpectraBank.weigh`), on
        the frames' own cross-spectra; the fitted white noise joins the
        frames' diagonal.
        """
        bank = self.blend.bank
        assert bank is not None and self._rings is not None
        frames = np.asarray(self._z) - self.centre_um
        if self._weighed is None:
            flat = self._rings.ravel()
            n_rings = self.blend.spectra.shape[0]
            observed = _ring_sums(self._spectra, flat, n_rings)
            counts = np.bincount(flat[flat >= 0], minlength=n_rings).astype(np.float64)
            self._weighed = bank.weigh(observed, frames, counts)
        alpha, noise = self._weighed
        gram = bank.mixture(alpha, frames, frames) + noise[:, None, None] * np.eye(len(frames))
        return gram, bank.mixture(alpha, frames, planes_um - self.centre_um)
