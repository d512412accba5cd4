"""Optical image formation: the sample seen through the wide-field PSF.

`FocalStack` computes, once per sample and optics, the noise-free image
(photons per second per unit flux) at every focus position on the sample's z
grid across a focus range, cropped to the camera's field of view.  A frame at
any continuous focus z is then a linear interpolation between the two
neighbouring grid planes (image formation is linear in the OTF, so this is the
same as interpolating the OTF; the grid step is well below the axial FWHM).

The whole stack is one pass in the lateral Fourier domain: for each spatial
frequency, the image along focus is the sample along z correlated with the
OTF along defocus, done as an FFT along z.  The lateral field is periodic and
at least twice the largest blur radius wide, so defocused light never wraps
onto its own source.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from .optics import Optics, blur_radius_um, otf_planes
from .samples import Sample

__all__ = ["FocalStack", "field_size_px"]

_FREQUENCY_CHUNK = 16384
_WORKERS = -1  # scipy.fft threads: all cores


def field_size_px(optics: Optics, fov_px: int, max_defocus_um: float, periodic: bool) -> int:
    """Lateral size of the computation field for a given field of view."""
    radius_px = blur_radius_um(optics, max_defocus_um) / optics.pixel_size_um
    need = max(fov_px, 2 * radius_px) if periodic else fov_px + 2 * radius_px
    return int(scipy.fft.next_fast_len(int(np.ceil(need)), real=True))


class FocalStack:
    """Noise-free wide-field images of one sample over a range of focus z.

    Parameters
    ----------
    sample
        The fluorophore density.  Its lateral field must already be the size
        returned by `field_size_px` (generated samples) or smaller (isolated
        samples are zero-padded here).
    optics
        Objective and emission settings; ``optics.pixel_size_um`` must equal
        ``sample.voxel_xy_um``.
    fov_shape
        Camera field of view ``(height, width)`` in pixels, cut from the field
        centre.
    focus_range_um
        ``(lowest, highest)`` focus z the stack must cover.
    centre_px
        ``(y, x)`` of the kept region's centre from the field centre, in
        pixels (an XY stage's position; the field wraps around).
    margin_px
        Kept beyond the field of view on every side, so that `image_at` can
        shift the view by up to this much without a new stack.
    """

    def __init__(
        self,
        sample: Sample,
        optics: Optics,
        fov_shape: tuple[int, int],
        focus_range_um: tuple[float, float],
        *,
        centre_px: tuple[int, int] = (0, 0),
        margin_px: int = 0,
    ) -> None:
        if not np.isclose(sample.voxel_xy_um, optics.pixel_size_um):
            raise ValueError(
                f"sample voxel {sample.voxel_xy_um} um differs from the pixel size "
                f"{optics.pixel_size_um} um; build the sample at the pixel size"
            )
        lo, hi = focus_range_um
        if not hi >= lo:
            raise ValueError(f"focus range {focus_range_um} is empty; give (low, high)")
        dz = sample.voxel_z_um
        z0 = sample.z_origin_um
        nz = sample.density.shape[0]
        j_lo = int(np.floor((lo - z0) / dz))
        j_hi = max(int(np.ceil((hi - z0) / dz)), j_lo + 1)
        self.focus_um = z0 + dz * np.arange(j_lo, j_hi + 1)
        self.fov_shape = fov_shape
        self.centre_px = centre_px
        self.margin_px = margin_px
        self.step_um = dz
        max_defocus = max(abs(hi - z0), abs(lo - (z0 + dz * (nz - 1))), dz)

        density = sample.density
        field = max(density.shape[1], density.shape[2])
        need = field_size_px(optics, max(fov_shape), max_defocus, sample.periodic)
        if sample.periodic:
            if field < need - 1 or density.shape[1] != density.shape[2]:
                raise ValueError(
                    f"periodic sample field {density.shape[1:]} is smaller than the "
                    f"{need} px the blur at {max_defocus:.1f} um defocus needs"
                )
            shape = (density.shape[1], density.shape[2])
        else:
            shape = (need, need)
        self.field_shape = shape
        self.stack = self._compute(density, optics, shape, j_lo, j_hi)

    def _compute(
        self,
        density: NDArray[np.float32],
        optics: Optics,
        shape: tuple[int, int],
        j_lo: int,
        j_hi: int,
    ) -> NDArray[np.float32]:
        nz = density.shape[0]
        n_focus = j_hi - j_lo + 1
        # Offsets m = k - j (sample plane minus focus plane), all that occur.
        m_min, m_max = -j_hi, nz - 1 - j_lo
        offsets = np.arange(m_min, m_max + 1)
        otf = otf_planes(optics, shape, offsets * self.step_um)
        spectrum = np.zeros((nz, shape[0], shape[1] // 2 + 1), np.complex64)
        pad_y, pad_x = (shape[0] - density.shape[1]) // 2, (shape[1] - density.shape[2]) // 2
        for k in range(nz):
            plane = np.zeros(shape, np.float32)
            plane[pad_y : pad_y + density.shape[1], pad_x : pad_x + density.shape[2]] = density[k]
            spectrum[k] = scipy.fft.rfft2(plane, workers=_WORKERS)

        # image_j(f) = sum_k S_k(f) * OTF_{k-j}(f): a correlation along z.  With
        # h_m stored at index m - m_min, it is a convolution of S with the
        # reversed kernel; FFT length covers the full linear result.
        length = int(scipy.fft.next_fast_len(nz + len(offsets) - 1))
        flat_spectrum = spectrum.reshape(nz, -1)
        flat_otf = otf.reshape(len(offsets), -1)
        images = np.empty((n_focus, flat_spectrum.shape[1]), np.complex64)
        for start in range(0, flat_spectrum.shape[1], _FREQUENCY_CHUNK):
            sl = slice(start, start + _FREQUENCY_CHUNK)
            s_f = scipy.fft.fft(flat_spectrum[:, sl], n=length, axis=0, workers=_WORKERS)
            h_f = scipy.fft.fft(flat_otf[::-1, sl], n=length, axis=0, workers=_WORKERS)
            full = scipy.fft.ifft(s_f * h_f, axis=0, workers=_WORKERS)
            # conv index c = k + (m_max - m) = k - m + m_max = j + m_max
            images[:, sl] = full[j_lo + m_max : j_hi + m_max + 1]
        planes = images.reshape(n_focus, shape[0], shape[1] // 2 + 1)

        fy, fx = self.fov_shape[0] + 2 * self.margin_px, self.fov_shape[1] + 2 * self.margin_px
        if fy > shape[0] or fx > shape[1]:
            raise ValueError(
                f"the field of view with its margin ({fy} x {fx} px) is larger than the "
                f"sample's field ({shape[0]} x {shape[1]} px)"
            )
        cy, cx = (shape[0] - fy) // 2, (shape[1] - fx) // 2
        rows = (np.arange(cy, cy + fy) + self.centre_px[0]) % shape[0]
        cols = (np.arange(cx, cx + fx) + self.centre_px[1]) % shape[1]
        stack = np.empty((n_focus, fy, fx), np.float32)
        for j in range(n_focus):
            image = scipy.fft.irfft2(planes[j], s=shape, workers=_WORKERS)
            stack[j] = image[np.ix_(rows, cols)]
        np.clip(stack, 0.0, None, out=stack)  # FFT round-off below zero
        return stack

    @property
    def focus_range_um(self) -> tuple[float, float]:
        return float(self.focus_um[0]), float(self.focus_um[-1])

    def image_at(
        self, focus_z_um: float, offset_px: tuple[int, int] = (0, 0)
    ) -> NDArray[np.float32]:
        """Noise-free image at a continuous focus z (linear between grid planes).

        ``offset_px``: ``(y, x)`` shift of the view from ``centre_px``, at
        most ``margin_px`` either way.
        """
        m = self.margin_px
        dy, dx = offset_px
        if abs(dy) > m or abs(dx) > m:
            raise ValueError(f"view offset {offset_px} px is beyond the stack's margin of {m} px")
        fy, fx = self.fov_shape
        view = (slice(m + dy, m + dy + fy), slice(m + dx, m + dx + fx))
        lo, hi = self.focus_range_um
        if not lo - 1e-9 <= focus_z_um <= hi + 1e-9:
            raise ValueError(
                f"focus z {focus_z_um:.3f} um is outside the simulated range "
                f"[{lo:.3f}, {hi:.3f}] um"
            )
        position = (focus_z_um - lo) / self.step_um
        j = min(int(np.floor(position)), len(self.focus_um) - 2)
        j = max(j, 0)
        t = np.float32(position - j)
        return (1 - t) * self.stack[j][view] + t * self.stack[j + 1][view]
