"""``rmz-acq evaluate``: a reconstruction and baselines against a ground truth."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import RmzError
from ..io import read_zstack
from ..model.normalization import IntensityNormalization
from ..model.weights import LoadedModel
from .baselines import linear_interpolation, nearest_plane, single_input_propagation
from .beads import find_isolated_beads, fwhm_histogram_kl, measure_bead_widths
from .metrics import nrmse, psnr, ssim

__all__ = [
    "DISTANCE_BINS_UM",
    "Evaluation",
    "Scale",
    "distance_cell",
    "distance_label",
    "evaluate_arrays",
    "evaluate_files",
    "plot_evaluation",
    "widths_by_distance",
]

# Beads are grouped by their distance to the nearest input frame: within a
# depth of field of an input a bead only needs denoising, further away it has
# to be refocused from a defocus ring.
DISTANCE_BINS_UM = (0.0, 0.5, 1.0, 1.5, math.inf)


def widths_by_distance(
    fwhm_um: list[float | None], distance_um: list[float]
) -> list[dict[str, float]]:
    """Share of beads fitted and their mean FWHM, per distance to the nearest input."""
    fwhm = np.array([math.nan if v is None else v for v in fwhm_um], np.float64)
    distance = np.asarray(distance_um, np.float64)
    rows = []
    for lo, hi in pairwise(DISTANCE_BINS_UM):
        inside = fwhm[(distance >= lo) & (distance < hi)]
        fitted = inside[np.isfinite(inside)]
        rows.append(
            {
                "from_um": lo,
                "to_um": hi,
                "beads": int(inside.size),
                "fitted_fraction": float(fitted.size / inside.size) if inside.size else math.nan,
                "mean_fwhm_um": float(fitted.mean()) if fitted.size else math.nan,
            }
        )
    return rows


def distance_label(row: dict[str, float]) -> str:
    """``"0.5-1 um (34)"``: a distance bin of `widths_by_distance` and its bead count."""
    hi = "" if math.isinf(row["to_um"]) else f"{row['to_um']:g}"
    return f"{row['from_um']:g}-{hi} um ({row['beads']:g})"


def distance_cell(row: dict[str, float]) -> str:
    """``"94% 0.342"``: the share fitted and their mean FWHM (um) in one bin."""
    if not row["beads"]:
        return "-"
    fitted = f"{100 * row['fitted_fraction']:.0f}%"
    return fitted if math.isnan(row["mean_fwhm_um"]) else f"{fitted} {row['mean_fwhm_um']:.3f}"


@dataclass
class Evaluation:
    """Per-plane scores of every method, their means, and bead statistics."""

    planes_um: list[float]
    input_planes: list[bool]
    scores: dict[str, dict[str, list[float]]]
    frames_z_um: list[float]
    beads: dict[str, Any] = field(default_factory=dict)

    def means(self, non_input_only: bool = True) -> dict[str, dict[str, float]]:
        keep = (
            [not i for i in self.input_planes] if non_input_only else [True] * len(self.planes_um)
        )
        out: dict[str, dict[str, float]] = {}
        for method, metrics in self.scores.items():
            out[method] = {
                name: float(np.mean([v for v, k in zip(values, keep, strict=True) if k]))
                if any(keep)
                else math.nan
                for name, values in metrics.items()
            }
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "planes_um": self.planes_um,
            "input_planes": self.input_planes,
            "frames_z_um": self.frames_z_um,
            "per_plane": self.scores,
            "mean_non_input_planes": self.means(True),
            "mean_all_planes": self.means(False),
            "beads": self.beads,
        }


Scale = Literal["truth", "per_volume"]
"""How volumes are put on one scale before scoring: ``truth`` maps every
volume with the ground truth's statistics (intensity errors count);
``per_volume`` normalises each volume by its own (the paper's section 4.1:
background mean to 0, the foreground's 99th percentile to 1), so only the
structure counts."""


def truth_normalisation(truth: NDArray[np.floating]) -> IntensityNormalization:
    # One scale for every volume, from the ground truth (background 0,
    # foreground 1): all volumes are in the camera's units, so a shared
    # affine map keeps intensity errors visible, and PSNR / NRMSE (relative
    # to the truth's range) do not depend on it.
    return IntensityNormalization.from_frame(np.asarray(truth).max(axis=0))


def evaluate_arrays(
    volume: NDArray[np.floating],
    planes_um: NDArray[np.floating],
    truth: NDArray[np.floating],
    truth_z_um: NDArray[np.floating],
    frames: NDArray[np.floating],
    frames_z_um: NDArray[np.floating],
    *,
    pixel_um: float,
    model: LoadedModel | None = None,
    beads: bool = False,
    device: str | None = None,
    precision: str = "float32",
    scale: Scale = "truth",
) -> Evaluation:
    """Score ``volume`` and the baselines plane by plane against ``truth`` (see `Scale`)."""
    planes = np.asarray(planes_um, np.float64)
    truth_z = np.asarray(truth_z_um, np.float64)
    if volume.shape[1:] != truth.shape[1:] or volume.shape[1:] != frames.shape[1:]:
        raise RmzError(
            f"lateral sizes differ: volume {volume.shape[1:]}, ground truth {truth.shape[1:]}, "
            f"frames {frames.shape[1:]}"
        )
    step = float(np.median(np.diff(np.sort(truth_z)))) if len(truth_z) > 1 else 1.0
    matches = [int(np.argmin(np.abs(truth_z - p))) for p in planes]
    usable = [abs(truth_z[m] - p) <= 0.51 * step for m, p in zip(matches, planes, strict=True)]
    if not any(usable):
        raise RmzError("no output plane lies on a ground-truth plane; check both z ranges")
    planes = planes[usable]
    matched = np.asarray(matches)[usable]
    methods: dict[str, NDArray[np.float32]] = {
        "recurrent_mz": np.asarray(volume, np.float32)[usable],
        "nearest_plane": nearest_plane(frames, frames_z_um, planes),
        "linear_interpolation": linear_interpolation(frames, frames_z_um, planes),
    }
    if model is not None:
        methods["single_input"] = single_input_propagation(
            model, frames, frames_z_um, planes, device, precision
        )
    truth_planes = np.asarray(truth, np.float32)[matched]
    norm = truth_normalisation(truth_planes)
    if scale == "per_volume":
        norm = IntensityNormalization.from_frame(truth_planes)
    reference = norm.apply(truth_planes)
    scores: dict[str, dict[str, list[float]]] = {}
    for name, estimate in methods.items():
        own = IntensityNormalization.from_frame(estimate) if scale == "per_volume" else norm
        normalised = own.apply(estimate)
        scores[name] = {
            "psnr": [psnr(a, b) for a, b in zip(normalised, reference, strict=True)],
            "nrmse": [nrmse(a, b) for a, b in zip(normalised, reference, strict=True)],
            "ssim": [ssim(a, b) for a, b in zip(normalised, reference, strict=True)],
        }
    frame_z = np.asarray(frames_z_um, np.float64)
    out_step = float(np.median(np.diff(planes))) if len(planes) > 1 else step
    is_input = [bool(np.any(np.abs(frame_z - p) < 0.5 * out_step)) for p in planes]
    evaluation = Evaluation(
        planes_um=[float(p) for p in planes],
        input_planes=is_input,
        scores=scores,
        frames_z_um=[float(z) for z in frame_z],
    )
    if beads:
        found = find_isolated_beads(truth_planes, planes, pixel_um)
        truth_widths = measure_bead_widths(truth_planes, planes, found, pixel_um)
        distance = np.abs(found[:, :1] - frame_z[None, :]).min(axis=1)
        stats: dict[str, Any] = {
            "isolated_beads": len(found),
            "nearest_input_um": [float(d) for d in distance],
        }
        for name, estimate in {"ground_truth": truth_planes, **methods}.items():
            widths = measure_bead_widths(estimate, planes, found, pixel_um)
            fwhm = [None if math.isnan(v) else v for v in widths.fwhm_um.tolist()]
            stats[name] = {
                "fitted": widths.n_fitted,
                "fitted_fraction": widths.fitted_fraction,
                "mean_fwhm_um": widths.mean_um,
                "kl_to_ground_truth": fwhm_histogram_kl(truth_widths, widths)
                if name != "ground_truth"
                else 0.0,
                "fwhm_um": fwhm,
                "by_input_distance": widths_by_distance(fwhm, stats["nearest_input_um"]),
            }
        evaluation.beads = stats
    return evaluation


def evaluate_files(
    volume_path: str | Path,
    truth_path: str | Path,
    frames_path: str | Path,
    *,
    model: LoadedModel | None = None,
    beads: bool = False,
    device: str | None = None,
    precision: str = "float32",
) -> Evaluation:
    """Read the three OME-TIFFs and call `evaluate_arrays`."""
    from ..reconstruct import read_frames

    volume = read_zstack(volume_path)
    truth = read_zstack(truth_path)
    frames = read_frames(frames_path)
    for path, stack in ((volume_path, volume), (truth_path, truth)):
        if stack.z_um is None:
            raise RmzError(f"{path} carries no per-plane z (OME PositionZ)")
    assert volume.z_um is not None and truth.z_um is not None
    pixel = volume.pixel_size_um or truth.pixel_size_um or frames.pixel_size_um
    if pixel is None:
        raise RmzError("none of the files states its pixel size (OME PhysicalSizeX)")
    return evaluate_arrays(
        volume.data,
        volume.z_um,
        truth.data,
        truth.z_um,
        frames.frames,
        frames.z_um,
        pixel_um=pixel,
        model=model,
        beads=beads,
        device=device,
        precision=precision,
    )


def plot_evaluation(evaluation: Evaluation, path: str | Path) -> Path:
    """PSNR against z for every method, with the input planes marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for name, metrics in evaluation.scores.items():
        ax.plot(evaluation.planes_um, metrics["psnr"], label=name.replace("_", " "))
    for z in evaluation.frames_z_um:
        ax.axvline(z, color="0.6", linestyle="--", linewidth=0.8)
    ax.set_xlabel("z (µm); dashed: input planes")
    ax.set_ylabel("PSNR (dB)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def write_json(evaluation: Evaluation, path: str | Path) -> Path:
    """The evaluation as strict JSON (a score that is not finite becomes ``null``)."""
    from ..io.jsonfile import write_json_file

    return write_json_file(path, evaluation.to_json())


def plot_bead_histograms(evaluation: Evaluation, path: str | Path) -> Path:
    """Histograms of the fitted lateral bead FWHM of every volume (paper Fig. 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    volumes = {k: v for k, v in evaluation.beads.items() if isinstance(v, dict)}
    fig, axes = plt.subplots(1, len(volumes), figsize=(3 * len(volumes), 3), dpi=110, sharex=True)
    edges = np.linspace(0.1, 0.8, 29)
    for ax, (name, stats) in zip(np.atleast_1d(axes), volumes.items(), strict=True):
        values = [v for v in stats["fwhm_um"] if v is not None]
        ax.hist(values, bins=edges, color="tab:blue" if name != "ground_truth" else "0.4")
        ax.set_title(f"{name.replace('_', ' ')}\nmean {stats['mean_fwhm_um']:.3f} µm", fontsize=8)
        ax.set_xlabel("lateral FWHM (µm)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
