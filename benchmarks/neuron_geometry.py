"""What the real neuron stack's own shapes say about its sampling.

    python benchmarks/neuron_geometry.py

The ``flowdec`` wheel's Purkinje neuron (``pip install --no-deps
flowdec==1.1.0``) stores no pixel size or z step; `generalisation.py`
scores it as if its pixels were the preset's 0.1 um and its 50 planes
spread over the preset's 18 um. This prints what the stack itself says
about that choice, measured on its structures rather than assumed:

- the soma: the saturated region's equivalent diameter in its widest
  plane (pixels) and its extent along z at its centre (planes);
- the dendrites (pixels 40+ px from the soma, peak 30-170 above the
  background, not saturated): the full width at half maximum of their
  axial profiles (planes) and of their lateral profiles (pixels);
- the arbour's extent (1st-99th percentile of pixels 15 above the
  background in the maximum projection).

Each figure is printed in the benchmark's units beside what wide-field
optics at the preset's NA 1.4, 519 nm would give for the thinnest
structures (lateral FWHM 0.51 lambda / NA, axial 2 n lambda / NA^2), and the
voxel aspect a round soma implies.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from rmz_acq.evaluation.generalisation import flowdec_stack

PIXEL_UM = 0.1  # what the benchmark assumes
DEPTH_UM = 18.0  # the preset's depth, over which the benchmark spreads the planes
NA, WAVELENGTH_UM, IMMERSION = 1.4, 0.519, 1.515


def _half_max_run(profile: np.ndarray, at: int) -> int | None:
    """Samples in the contiguous run at or above half of ``profile[at]``; None at an edge."""
    half = profile[at] / 2
    lo = hi = at
    while lo > 0 and profile[lo - 1] >= half:
        lo -= 1
    while hi < len(profile) - 1 and profile[hi + 1] >= half:
        hi += 1
    return None if lo == 0 or hi == len(profile) - 1 else hi - lo + 1


def main() -> None:
    stack = flowdec_stack("neuron").astype(np.float64)
    planes = stack.shape[0]
    plane_um = DEPTH_UM / (planes - 1)
    background = float(np.median(stack))
    saturated = stack >= stack.max() - 0.5

    widest = int(np.argmax(saturated.sum(axis=(1, 2))))
    labels, count = ndi.label(saturated[widest])
    areas = ndi.sum(saturated[widest], labels, range(1, count + 1))
    soma = labels == int(np.argmax(areas)) + 1
    cy, cx = (float(c.mean()) for c in np.nonzero(soma))
    soma_px = 2 * np.sqrt(float(areas.max()) / np.pi)
    soma_planes = int(saturated[:, round(cy), round(cx)].sum())

    peak, peak_z = stack.max(axis=0), stack.argmax(axis=0)
    ys, xs = np.nonzero((peak > background + 30) & (peak < background + 170))
    far = np.hypot(ys - cy, xs - cx) > 40
    axial, lateral = [], []
    for y, x in zip(ys[far], xs[far], strict=True):
        column = stack[:, y, x] - background
        if (run := _half_max_run(column, int(column.argmax()))) is not None:
            axial.append(run)
        row = stack[peak_z[y, x], y] - background
        local_peak = 0 < x < row.size - 1 and row[x] >= max(row[x - 1], row[x + 1])
        if local_peak and (run := _half_max_run(row, int(x))) is not None:
            lateral.append(run)

    bright = np.nonzero(peak > background + 15)
    extent = [float(np.ptp(np.percentile(c, [1, 99]))) for c in bright]

    axial_fwhm, lateral_fwhm = float(np.median(axial)), float(np.median(lateral))
    na_lateral = 0.51 * WAVELENGTH_UM / NA
    na_axial = 2 * IMMERSION * WAVELENGTH_UM / NA**2
    print(f"flowdec neuron: {stack.shape} (z, y, x), background {background:.1f}")
    print(f"benchmark geometry: {PIXEL_UM} um pixels, {plane_um:.3f} um planes")
    print("                               measured    in um as scored   NA 1.4 optics")
    print(
        f"soma diameter (saturated)   {soma_px:7.1f} px  {soma_px * PIXEL_UM:8.2f} um"
        f"   (a Purkinje soma: ~20 um)"
    )
    print(f"soma along z (saturated)    {soma_planes:7d} pl  {soma_planes * plane_um:8.2f} um")
    print(
        f"arbour extent (y, x)       {extent[0]:4.0f}, {extent[1]:.0f} px"
        f"  {extent[0] * PIXEL_UM:5.1f}, {extent[1] * PIXEL_UM:.1f} um"
    )
    print(
        f"dendrite lateral FWHM       {lateral_fwhm:7.1f} px  {lateral_fwhm * PIXEL_UM:8.2f} um"
        f"   {na_lateral:.2f} um  ({len(lateral)} profiles)"
    )
    print(
        f"dendrite axial FWHM         {axial_fwhm:7.1f} pl  {axial_fwhm * plane_um:8.2f} um"
        f"   {na_axial:.2f} um  ({len(axial)} profiles)"
    )
    print(
        f"a round soma puts one plane at {soma_px / soma_planes:.2f} px, "
        f"{soma_px / soma_planes * PIXEL_UM:.3f} um at the assumed pixel "
        f"(the benchmark: {plane_um / PIXEL_UM:.2f} px)"
    )


if __name__ == "__main__":
    main()
