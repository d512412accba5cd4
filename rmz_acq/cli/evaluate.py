"""``rmz-acq evaluate``: a volume and the baselines against a full z-stack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import RmzError
from ._app import Device, Model, Precision, app, fail


@app.command()
def evaluate(
    volume: Annotated[Path, typer.Argument(help="Reconstructed volume (OME-TIFF).")],
    ground_truth: Annotated[
        Path, typer.Option("--ground-truth", "-g", help="Mechanically scanned z-stack.")
    ],
    frames: Annotated[Path, typer.Option("--frames", "-f", help="The input frames used.")],
    model: Model,
    beads: Annotated[
        bool, typer.Option("--beads/--no-beads", help="Also fit bead widths (FWHM).")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="JSON report (default: beside volume).")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PSNR-vs-z PNG (default: beside volume).")
    ] = None,
    device: Device = None,
    precision: Precision = "float32",
) -> None:
    """Score a volume and the baselines against ground truth, plane by plane."""
    from rich.console import Console
    from rich.table import Table

    from ..evaluation.report import (
        evaluate_files,
        plot_bead_histograms,
        plot_evaluation,
        write_json,
    )
    from ..model.weights import load_model
    from ..session import compute_dtype

    try:
        compute_dtype(precision)
        loaded = load_model(model, device or "cpu")
        result = evaluate_files(
            volume,
            ground_truth,
            frames,
            model=loaded,
            beads=beads,
            device=device,
            precision=precision,
        )
    except (RmzError, ValueError) as exc:
        raise fail(exc) from None
    stem = volume.name.removesuffix(".tif").removesuffix(".ome")
    json_path = write_json(result, output or volume.with_name(f"{stem}.evaluation.json"))
    png_path = plot_evaluation(result, plot or volume.with_name(f"{stem}.psnr.png"))
    if result.beads:
        plot_bead_histograms(result, volume.with_name(f"{stem}.fwhm.png"))
    table = Table(title="mean over non-input planes")
    for column in ("method", "PSNR dB", "NRMSE %", "SSIM"):
        table.add_column(column, justify="right" if column != "method" else "left")
    for method, scores in result.means().items():
        table.add_row(
            method, f"{scores['psnr']:.2f}", f"{scores['nrmse']:.2f}", f"{scores['ssim']:.3f}"
        )
    console = Console()
    console.print(table)
    if result.beads:
        bead_table = Table(title=f"{result.beads['isolated_beads']} isolated beads")
        for column in ("volume", "fitted", "mean FWHM um", "KL to truth"):
            bead_table.add_column(column, justify="right" if column != "volume" else "left")
        for name, stats in result.beads.items():
            if isinstance(stats, dict):
                bead_table.add_row(
                    name,
                    f"{stats['fitted']} ({100 * stats['fitted_fraction']:.0f}%)",
                    f"{stats['mean_fwhm_um']:.3f}",
                    f"{stats['kl_to_ground_truth']:.3f}",
                )
        console.print(bead_table)
        console.print(_distance_table(result.beads))
    typer.echo(f"wrote {json_path} and {png_path}")


def _distance_table(beads: dict[str, Any]) -> Any:
    """Fitted share and mean FWHM of the beads, by distance to the nearest input."""
    from rich.table import Table

    from ..evaluation.report import distance_cell, distance_label

    table = Table(title="beads by distance to the nearest input frame: fitted, mean FWHM um")
    table.add_column("volume")
    for row in beads["ground_truth"]["by_input_distance"]:
        table.add_column(distance_label(row), justify="right")
    for name, stats in beads.items():
        if isinstance(stats, dict):
            table.add_row(name, *(distance_cell(row) for row in stats["by_input_distance"]))
    return table
