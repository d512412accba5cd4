"""The paper's experiments (Figs. 2-7), repeated on simulated volumes.

    python benchmarks/paper_results.py beads      [--volumes 3]
    python benchmarks/paper_results.py worm       [--volumes 3]
    python benchmarks/paper_results.py robustness [--trials 50]
    python benchmarks/paper_results.py all

beads (Fig. 3): M = 3 frames at 3, 6, 9 um, 101 output planes every 0.1 um;
    lateral FWHM of the isolated beads in the noise-free ground truth, the
    Recurrent-MZ volume and single-input propagation (the paper's Deep-Z
    comparison: each plane from its nearest frame), pooled over the volumes;
    fitted share, mean FWHM and KL divergence of each histogram from the
    ground truth's.  Figure: benchmarks/figures/paper_beads.png.
worm (Figs. 2, 4): nuclei, uniform inputs (3, 9, 15 um) and the paper's
    non-uniform example (3, 7.8, 13.6 um); PSNR and NRMSE per plane against
    the mechanical scan, with linear interpolation and single-input
    propagation.  Figure: benchmarks/figures/paper_worm.png.
robustness (Figs. 5-7): nuclei, inputs at 3, 9, 15 um, 19 output planes
    every 1 um; NRMSE against Gaussian noise of sigma 0-1 um added to each
    frame's z (``--trials`` random draws per sigma), all 6 input orders,
    and repeated inputs.  Figure: benchmarks/figures/paper_robustness.png.

Volumes are held-out simulated ones (seeds from 20000, never trained on).
Adaptive stopping against fixed M is ``benchmarks/bench_adaptive.py --fixed-m``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rmz_acq.evaluation.beads import BeadWidths, fwhm_histogram_kl
from rmz_acq.evaluation.metrics import nrmse
from rmz_acq.evaluation.simulated import score_on_simulated
from rmz_acq.model.normalization import IntensityNormalization
from rmz_acq.model.weights import LoadedModel, load_model
from rmz_acq.session import ReconstructionSession
from rmz_acq.training.conditions import PRESET_CONDITIONS
from rmz_acq.training.data import make_simulated_volume
from rmz_acq.training.trainer import EVALUATION_SEED

FIGURES = Path(__file__).resolve().parent / "figures"
NAMES = {
    "ground_truth": "ground truth",
    "recurrent_mz": "Recurrent-MZ",
    "single_input": "single-input (Deep-Z-like)",
    "nearest_plane": "nearest input plane",
    "linear_interpolation": "linear interpolation",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def beads(n_volumes: int) -> None:
    model = load_model("beads")
    planes = np.round(np.arange(0, 10.0001, 0.1), 4)
    score = score_on_simulated(
        model, PRESET_CONDITIONS["beads"], [3.0, 6.0, 9.0], planes, n_volumes=n_volumes, beads=True
    )
    pooled: dict[str, list[float]] = {}
    for evaluation in score.clean_truth:
        for name, stats in evaluation.beads.items():
            if isinstance(stats, dict):
                pooled.setdefault(name, []).extend(
                    np.nan if v is None else v for v in stats["fwhm_um"]
                )
    widths = {name: BeadWidths(np.asarray(v, np.float64)) for name, v in pooled.items()}
    truth = widths["ground_truth"]
    paper = {"ground_truth": (0.4428, 0.0), "recurrent_mz": (0.4401, 1.3373)}
    paper["single_input"] = (0.4185, 2.3334)
    print(f"\nbeads: {n_volumes} held-out volumes, inputs 3/6/9 um, {truth.n_beads} isolated beads")
    print(f"{'volume':<28}{'fitted':>8}{'FWHM um':>9}{'KL':>7}   paper: FWHM um, KL")
    for name in ("ground_truth", "recurrent_mz", "single_input", "nearest_plane"):
        w = widths[name]
        kl = fwhm_histogram_kl(truth, w)
        ref = paper.get(name)
        ref_text = f"{ref[0]:.4f}, {ref[1]:.4f}" if ref else "-"
        print(
            f"{NAMES[name]:<28}{100 * w.fitted_fraction:>7.0f}%{w.mean_um:>9.3f}{kl:>7.2f}"
            f"   {ref_text}"
        )
    plt = _pyplot()
    shown = ("ground_truth", "recurrent_mz", "single_input")
    fig, axes = plt.subplots(1, 3, figsize=(10, 3), dpi=110, sharex=True)
    edges = np.linspace(0.1, 0.8, 29)
    for ax, name in zip(axes, shown, strict=True):
        w = widths[name]
        ax.hist(
            w.fwhm_um[np.isfinite(w.fwhm_um)],
            bins=edges,
            color="0.4" if name == shown[0] else "tab:blue",
        )
        ax.set_title(
            f"{NAMES[name]}\n{w.n_fitted}/{w.n_beads} fitted, mean {w.mean_um:.3f} µm, "
            f"KL {fwhm_histogram_kl(truth, w):.2f}",
            fontsize=8,
        )
        ax.set_xlabel("lateral FWHM (µm)")
    axes[0].set_ylabel("beads")
    fig.tight_layout()
    fig.savefig(FIGURES / "paper_beads.png")
    plt.close(fig)
    print(f"figure: {FIGURES / 'paper_beads.png'}")


def worm(n_volumes: int) -> None:
    model = load_model("nuclei")
    conditions = PRESET_CONDITIONS["nuclei"]
    planes = np.round(np.arange(0, 18.0001, 0.2), 4)
    layouts = {"uniform": [3.0, 9.0, 15.0], "non-uniform": [3.0, 7.8, 13.6]}
    curves: dict[str, dict[str, NDArray[np.float64]]] = {}
    print(f"\nworm nuclei: {n_volumes} held-out volumes, mean over non-input planes")
    print(f"{'inputs':<13}{'method':<28}{'PSNR dB':>9}{'NRMSE %':>9}{'(vs noise-free)':>17}")
    for layout, inputs in layouts.items():
        score = score_on_simulated(model, conditions, inputs, planes, n_volumes=n_volumes)
        means = score.summary()
        for method in ("recurrent_mz", "linear_interpolation", "single_input"):
            curves[f"{layout} {method}"] = {
                metric: np.mean([e.scores[method][metric] for e in score.noisy_truth], axis=0)
                for metric in ("psnr", "nrmse")
            }
            noisy, clean = means["vs_noisy_scan"][method], means["vs_noise_free"][method]
            print(
                f"{layout:<13}{NAMES[method]:<28}{noisy['psnr']:>9.2f}{noisy['nrmse']:>9.2f}"
                f"{clean['psnr']:>9.2f} dB"
            )
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), dpi=110)
    styles = {
        "uniform recurrent_mz": ("tab:blue", "-", "Recurrent-MZ, inputs 3/9/15"),
        "non-uniform recurrent_mz": ("tab:red", "-", "Recurrent-MZ, inputs 3/7.8/13.6"),
        "uniform linear_interpolation": ("0.5", "--", "linear interpolation, 3/9/15"),
        "uniform single_input": ("tab:green", ":", "single-input, 3/9/15"),
    }
    for ax, metric, label in zip(axes, ("psnr", "nrmse"), ("PSNR (dB)", "NRMSE (%)"), strict=True):
        for key, (color, style, name) in styles.items():
            ax.plot(planes, curves[key][metric], color=color, linestyle=style, label=name)
        for z in layouts["uniform"]:
            ax.axvline(z, color="tab:blue", alpha=0.3, linewidth=0.8)
        for z in layouts["non-uniform"]:
            ax.axvline(z, color="tab:red", alpha=0.3, linewidth=0.8)
        ax.set_xlabel("z (µm); thin lines: input planes")
        ax.set_ylabel(label + " vs mechanical scan")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(FIGURES / "paper_worm.png")
    plt.close(fig)
    print(f"figure: {FIGURES / 'paper_worm.png'}")


class _Nrmse:
    """NRMSE per plane of reconstructions of one volume, on the truth's scale."""

    def __init__(self, model: LoadedModel, truth: NDArray[np.float32], planes: NDArray[np.float64]):
        self.model = model
        self.planes = planes
        self.norm = IntensityNormalization.from_frame(truth.max(axis=0))
        self.truth = self.norm.apply(truth)

    def per_plane(
        self, frames: list[NDArray[np.float32]], z_um: list[float]
    ) -> NDArray[np.float64]:
        session = ReconstructionSession(self.model, self.planes)
        volume = self.norm.apply(session.run(frames, z_um).volume)
        return np.array([nrmse(v, t) for v, t in zip(volume, self.truth, strict=True)])


def robustness(trials: int) -> None:
    model = load_model("nuclei")
    conditions = PRESET_CONDITIONS["nuclei"]
    volume = make_simulated_volume(conditions, EVALUATION_SEED, 256)
    rng = np.random.default_rng(EVALUATION_SEED)
    z_in = [3.0, 9.0, 15.0]
    frames = [volume.frame(z, rng) for z in z_in]
    planes = np.arange(0, 18.0001, 1.0)
    truth = np.stack([volume.target(float(z)) for z in planes])
    score = _Nrmse(model, truth, planes)
    not_input = ~np.isin(planes, z_in)

    sigmas = (0.0, 0.25, 0.5, 0.75, 1.0)
    noise: dict[float, list[float]] = {}
    started = time.perf_counter()
    for sigma in sigmas:
        draws = 1 if sigma == 0 else trials
        noise[sigma] = [
            float(
                score.per_plane(frames, list(np.add(z_in, rng.normal(0, sigma, 3))))[
                    not_input
                ].mean()
            )
            for _ in range(draws)
        ]
    print(f"\nrobustness: nuclei volume {EVALUATION_SEED}, inputs 3/9/15 um, 19 planes every 1 um")
    print(f"DPM noise ({trials} trials per sigma, {time.perf_counter() - started:.0f} s)")
    print(f"{'sigma um':>9}{'NRMSE % median':>16}{'5-95 %':>16}")
    for sigma, values in noise.items():
        lo, hi = np.percentile(values, [5, 95])
        print(f"{sigma:>9.2f}{np.median(values):>16.2f}{f'{lo:.2f}-{hi:.2f}':>16}")

    orders = list(itertools.permutations(range(3)))
    per_order = np.stack(
        [score.per_plane([frames[i] for i in o], [z_in[i] for i in o]) for o in orders]
    )
    print("\ninput order (z um)        NRMSE %")
    for o, values in zip(orders, per_order, strict=True):
        print(f"{tuple(z_in[i] for i in o)!s:<26}{values[not_input].mean():>7.2f}")
    spread = per_order[:, not_input].std(axis=0).mean()
    print(f"mean over orders {per_order[:, not_input].mean():.2f}, per-plane std {spread:.2f}")

    i1, i2 = frames[1], frames[0]  # I1 at 9 um, I2 at 3 um (6 um apart, as trained)
    near = (planes >= 3) & (planes <= 9) & not_input
    sequences = {
        "V(I1)": ([i1], [9.0]),
        "V(I1,I1)": ([i1] * 2, [9.0] * 2),
        "V(I1 x4)": ([i1] * 4, [9.0] * 4),
        "V(I1 x6)": ([i1] * 6, [9.0] * 6),
        "V(I1,I2)": ([i1, i2], [9.0, 3.0]),
        "V(I2,I1)": ([i2, i1], [3.0, 9.0]),
    }
    repeated = {name: score.per_plane(*args)[near].mean() for name, args in sequences.items()}
    single = (score.per_plane([i1], [9.0]) + score.per_plane([i2], [3.0])) / 2
    repeated["mean of V(I1), V(I2)"] = single[near].mean()
    print("\nrepeated inputs, NRMSE % over the planes between 3 and 9 um")
    for name, value in repeated.items():
        print(f"{name:<22}{value:>7.2f}")

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=110)
    axes[0].boxplot([noise[s] for s in sigmas], tick_labels=[f"{s:g}" for s in sigmas])
    axes[0].set_xlabel("DPM noise sigma (µm)")
    axes[0].set_ylabel("NRMSE (%)")
    axes[0].set_title("Fig. 5: noise on every frame's z", fontsize=9)
    mean, std = per_order.mean(axis=0), per_order.std(axis=0)
    axes[1].plot(planes, per_order[0], color="tab:blue", label="sorted by z")
    axes[1].plot(planes, mean, color="tab:red", label="mean of 6 orders")
    axes[1].fill_between(planes, mean - std, mean + std, color="tab:red", alpha=0.25)
    axes[1].set_xlabel("z (µm)")
    axes[1].set_ylabel("NRMSE (%)")
    axes[1].set_title("Fig. 6: all input orders", fontsize=9)
    axes[1].legend(fontsize=7)
    axes[2].barh(list(repeated), list(repeated.values()), color="tab:blue")
    axes[2].invert_yaxis()
    axes[2].set_xlabel("NRMSE (%), planes 3-9 µm")
    axes[2].set_title("Fig. 7: repeated inputs (I1 at 9 µm, I2 at 3 µm)", fontsize=9)
    axes[2].tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(FIGURES / "paper_robustness.png")
    plt.close(fig)
    print(f"figure: {FIGURES / 'paper_robustness.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("beads", "worm", "robustness", "all"))
    parser.add_argument("--volumes", type=int, default=3)
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    FIGURES.mkdir(exist_ok=True)
    if args.what in ("beads", "all"):
        beads(args.volumes)
    if args.what in ("worm", "all"):
        worm(args.volumes)
    if args.what in ("robustness", "all"):
        robustness(args.trials)


if __name__ == "__main__":
    main()
