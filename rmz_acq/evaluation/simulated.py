"""Scores of a model on held-out simulated volumes (what the model cards report).

Volumes are drawn with seeds from `EVALUATION_SEED` up, which training and
validation never use.  The ground truth is the mechanical scan a real
experiment would record (noisy frames at every output plane); scores against
the noise-free optical image are reported beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simulators.optics import PsfModel

from ..model.normalization import fixed_normalization
from ..model.weights import LoadedModel
from ..session import ReconstructionSession
from ..training.conditions import ImagingConditions
from ..training.data import SampleVariety, make_simulated_volume
from ..training.trainer import EVALUATION_SEED
from .report import Evaluation, evaluate_arrays, widths_by_distance

__all__ = ["SimulatedScore", "score_on_simulated"]


def _mean_fitted(fwhm_um: list[float | None]) -> float:
    fitted = [v for v in fwhm_um if v is not None]
    return float(np.mean(fitted)) if fitted else float("nan")


@dataclass(frozen=True)
class SimulatedScore:
    noisy_truth: list[Evaluation]
    clean_truth: list[Evaluation]

    def summary(self) -> dict[str, Any]:
        def mean_of(evaluations: list[Evaluation]) -> dict[str, dict[str, float]]:
            methods = evaluations[0].scores.keys()
            return {
                m: {
                    metric: float(np.mean([e.means()[m][metric] for e in evaluations]))
                    for metric in ("psnr", "nrmse", "ssim")
                }
                for m in methods
            }

        out: dict[str, Any] = {
            "volumes": len(self.noisy_truth),
            "vs_noisy_scan": mean_of(self.noisy_truth),
            "vs_noise_free": mean_of(self.clean_truth),
        }
        if self.noisy_truth[0].beads:
            beads: dict[str, Any] = {}
            for e in self.clean_truth:
                for name, stats in e.beads.items():
                    if not isinstance(stats, dict):
                        continue
                    entry = beads.setdefault(
                        name, {"fwhm": [], "fitted": 0, "total": 0, "kl": [], "distance": []}
                    )
                    entry["fwhm"] += stats["fwhm_um"]
                    entry["distance"] += e.beads["nearest_input_um"]
                    entry["fitted"] += stats["fitted"]
                    entry["total"] += e.beads["isolated_beads"]
                    entry["kl"].append(stats["kl_to_ground_truth"])
            out["beads_vs_noise_free"] = {
                name: {
                    "fitted_fraction": v["fitted"] / max(v["total"], 1),
                    "mean_fwhm_um": _mean_fitted(v["fwhm"]),
                    "mean_kl": float(np.mean(v["kl"])),
                    "beads": v["total"],
                    "by_input_distance": widths_by_distance(v["fwhm"], v["distance"]),
                }
                for name, v in beads.items()
            }
        return out


def score_on_simulated(
    model: LoadedModel,
    conditions: ImagingConditions,
    input_planes_um: list[float],
    output_planes_um: NDArray[np.floating],
    *,
    n_volumes: int = 4,
    fov_px: int = 256,
    beads: bool = False,
    device: str | None = None,
    psf_model: PsfModel = "scalar",
    sample_variety: SampleVariety = "standard",
    sample_settings: Mapping[str, Any] | None = None,
    normalization: str = "first",
) -> SimulatedScore:
    """Recurrent-MZ and the baselines on ``n_volumes`` held-out simulated volumes.

    ``normalization``: the frames scaled by the first frame's intensity
    statistics (``"first"``, a stream, the cards' tables) or by all of
    theirs together (``"all"``, as ``rmz-acq reconstruct`` scales a z-stack).
    """
    noisy: list[Evaluation] = []
    clean: list[Evaluation] = []
    planes = np.asarray(output_planes_um, np.float64)
    for i in range(n_volumes):
        volume = make_simulated_volume(
            conditions,
            EVALUATION_SEED + i,
            fov_px,
            (psf_model,),
            (sample_variety,),
            sample_settings,
        )
        rng = np.random.default_rng(EVALUATION_SEED + i)
        frames = np.stack([volume.frame(z, rng) for z in input_planes_um])
        scan = np.stack([volume.frame(float(z), rng) for z in planes])
        truth = np.stack([volume.target(float(z)) for z in planes])
        fixed = fixed_normalization(frames, model.model.config.intensity, normalization)
        session = ReconstructionSession(model, planes, device=device, normalization=fixed)
        result = session.run(list(frames), input_planes_um)
        reconstruction = result.volume.copy()
        for store, reference in ((noisy, scan), (clean, truth)):
            store.append(
                evaluate_arrays(
                    reconstruction,
                    planes,
                    reference,
                    planes,
                    frames,
                    np.asarray(input_planes_um),
                    pixel_um=conditions.pixel_size_um,
                    model=model,
                    beads=beads,
                    device=device,
                )
            )
    return SimulatedScore(noisy, clean)
