"""``rmz-acq reconstruct``, ``reconstruct-runs``, ``evaluate`` and ``train``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, cast, get_args

import typer

from ..errors import RmzError
from ._app import Precision, app, fail


@app.command()
def reconstruct(
    frames: Annotated[Path, typer.Argument(help="Input frames (OME-TIFF with PositionZ).")],
    z_range: Annotated[
        str, typer.Option("--z-range", help="Output planes START:STOP:STEP in um, STOP included.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output volume .ome.tif.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Preset (beads, nuclei) or weights file.")
    ] = "nuclei",
    z: Annotated[
        str | None,
        typer.Option("--z", help="Frame z list in um (overrides PositionZ), e.g. 3,9,15."),
    ] = None,
    pixel_size_um: Annotated[
        float | None, typer.Option("--pixel-size-um", help="If the frames do not state it.")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda.")] = None,
    precision: Precision = "float32",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the output file if it exists.")
    ] = False,
) -> None:
    """Reconstruct a volume from M frames at arbitrary z."""
    from ..reconstruct import reconstruct_file
    from ..session import PushResult, compute_dtype
    from ..zgrid import parse_z_list, parse_z_range

    try:
        compute_dtype(precision)
        planes = parse_z_range(z_range).planes_um()
        z_list = parse_z_list(z) if z is not None else None

        def report(result: PushResult) -> None:
            change = (
                "-" if result.frobenius_change is None else f"{result.relative_change:.4f} relative"
            )
            typer.echo(
                f"frame {result.frame_index + 1}: {result.reconstruction_s:.2f} s, change {change}",
                err=True,
            )

        path = reconstruct_file(
            frames,
            output,
            planes,
            model,
            z_override=z_list,
            pixel_size_um=pixel_size_um,
            device=device,
            precision=precision,
            on_push=report,
            overwrite=overwrite,
        )
    except (RmzError, ValueError) as exc:
        raise fail(exc) from None
    typer.echo(f"wrote {path}: {len(planes)} planes from {planes[0]:g} to {planes[-1]:g} um")


@app.command("reconstruct-runs")
def reconstruct_runs(
    folder: Annotated[Path, typer.Argument(help="Folder of runs (RUN_DIR/frames.ome.tif).")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Preset (beads, nuclei) or weights file.")
    ] = "nuclei",
    z_range: Annotated[
        str | None,
        typer.Option(
            "--z-range",
            help="Output planes START:STOP:STEP in um (default: each run's report.json).",
        ),
    ] = None,
    output_name: Annotated[
        str, typer.Option("--output-name", help="Volume file written in each run folder.")
    ] = "volume.ome.tif",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace volumes that are already there.")
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            help="Local Dask workers, runs reconstructed at once (default: one per core).",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="A running Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: this machine).",
        ),
    ] = None,
    pixel_size_um: Annotated[
        float | None,
        typer.Option("--pixel-size-um", help="For frames that do not state it."),
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda.")] = None,
    precision: Precision = "float32",
) -> None:
    """Reconstruct every run in a folder, several at once (locally or on a Dask cluster)."""
    from ..batch import RunResult, find_runs, worker_split
    from ..batch import reconstruct_runs as run_batch
    from ..session import compute_dtype
    from ..zgrid import parse_z_range

    try:
        compute_dtype(precision)
        planes = parse_z_range(z_range).planes_um() if z_range is not None else None
        if pixel_size_um is not None and not pixel_size_um > 0:
            raise RmzError(f"--pixel-size-um must be positive, got {pixel_size_um:g}")
        runs, skipped, unusable = find_runs(
            folder,
            planes,
            output_name=output_name,
            overwrite=overwrite,
            pixel_size_um=pixel_size_um,
        )
        for path in skipped:
            typer.echo(f"skipped {path}: already there (--overwrite replaces it)", err=True)
        for run_dir, reason in unusable:
            typer.echo(f"skipped {run_dir}: {reason}", err=True)
        if not runs:
            typer.echo("nothing to do")
            if unusable:
                raise fail(f"{len(unusable)} run(s) could not be reconstructed (see above)")
            return
        processes, threads = worker_split(len(runs), jobs)
        if scheduler is not None:
            typer.echo(f"{len(runs)} runs, on the Dask cluster at {scheduler}", err=True)
        elif processes > 1:
            typer.echo(
                f"{len(runs)} runs on a local Dask cluster of {processes} workers with "
                f"{threads} threads each",
                err=True,
            )
        else:
            typer.echo(f"{len(runs)} runs, one at a time with {threads} threads", err=True)

        def report(result: RunResult, done: int, total: int) -> None:
            status = "ok" if result.ok else f"FAILED: {result.error}"
            typer.echo(
                f"[{done}/{total}] {result.run.output} {result.seconds:.1f} s {status}", err=True
            )

        results = run_batch(
            runs,
            model,
            jobs=jobs,
            scheduler=scheduler,
            device=device,
            precision=precision,
            on_done=report,
        )
    except (RmzError, ValueError) as exc:
        raise fail(exc) from None
    failed = [r for r in results if not r.ok]
    typer.echo(f"reconstructed {len(results) - len(failed)} of {len(results)} runs")
    if unusable:
        raise fail(
            f"{len(unusable)} run(s) skipped for lack of an output grid: "
            + ", ".join(str(p) for p, _ in unusable)
        )
    if failed:
        raise fail(f"{len(failed)} runs failed: " + ", ".join(str(r.run.frames) for r in failed))


@app.command()
def evaluate(
    volume: Annotated[Path, typer.Argument(help="Reconstructed volume (OME-TIFF).")],
    ground_truth: Annotated[
        Path, typer.Option("--ground-truth", "-g", help="Mechanically scanned z-stack.")
    ],
    frames: Annotated[Path, typer.Option("--frames", "-f", help="The input frames used.")],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model for the single-input baseline (preset or file)."),
    ] = None,
    beads: Annotated[
        bool, typer.Option("--beads/--no-beads", help="Also fit bead widths (FWHM).")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="JSON report (default: beside volume).")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PSNR-vs-z PNG (default: beside volume).")
    ] = None,
    device: Annotated[str | None, typer.Option("--device")] = None,
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

    try:
        loaded = load_model(model, device or "cpu") if model is not None else None
        result = evaluate_files(
            volume, ground_truth, frames, model=loaded, beads=beads, device=device
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


def _choices(flag: str, given: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """The comma-separated names of ``given``, each one of ``known``."""
    names = tuple(n.strip() for n in given.split(",") if n.strip())
    if not names or any(n not in known for n in names):
        raise RmzError(
            f"{flag} {given!r}: give one or more of {', '.join(known)}, "
            f"comma-separated, e.g. {flag} {','.join(known)}"
        )
    return names


@app.command()
def train(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Run folder (checkpoints, log, weights).")
    ],
    preset: Annotated[
        str, typer.Option("--preset", help="Imaging conditions: beads or nuclei.")
    ] = "nuclei",
    stacks: Annotated[
        Path | None,
        typer.Option("--stacks", help="Folder of your own OME-TIFF z-stacks (default: simulate)."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Optimiser steps.")] = 3000,
    crop_px: Annotated[int, typer.Option("--crop", help="Training crop size (px).")] = 128,
    batch_items: Annotated[
        int, typer.Option("--batch", help="Crops per batch (each with its own inputs).")
    ] = 4,
    targets_per_item: Annotated[
        int, typer.Option("--targets", help="Target planes per crop (batch = --batch x this).")
    ] = 2,
    volumes: Annotated[int, typer.Option("--volumes", help="Simulated volumes to draw from.")] = 24,
    fov_px: Annotated[int, typer.Option("--fov", help="Simulated field of view (px).")] = 256,
    base_channels: Annotated[int, typer.Option("--base-channels")] = 8,
    depth: Annotated[int, typer.Option("--depth")] = 4,
    learning_rate: Annotated[float, typer.Option("--lr")] = 1e-3,
    foreground_weight: Annotated[
        float, typer.Option("--foreground-weight", help="Extra BerHu weight of bright pixels.")
    ] = 0.0,
    focus_fraction: Annotated[
        float,
        typer.Option(
            "--focus-fraction",
            help="Share of targets drawn where the crop is in focus (0-1; helps sparse beads).",
        ),
    ] = 0.0,
    max_inputs: Annotated[
        int,
        typer.Option(
            "--max-inputs",
            help="Longest input sequence drawn, M = 1..this (cover the frames your scans take).",
        ),
    ] = 4,
    scan_order_fraction: Annotated[
        float,
        typer.Option(
            "--scan-order-fraction",
            help="Share of sequences drawn in an adaptive scan's coarse-to-fine plane order (0-1).",
        ),
    ] = 0.0,
    scan_policies: Annotated[
        str,
        typer.Option(
            "--scan-policies",
            help="Next-plane policies whose orders --scan-order-fraction draws "
            "(bisection, sweeps, even; comma-separated).",
        ),
    ] = "bisection",
    adversarial_weight: Annotated[
        float,
        typer.Option(
            "--adversarial-weight",
            help="Weight of the adversarial term of eq. 7 (paper 0.5; 0: no discriminator).",
        ),
    ] = 0.0,
    psf_models: Annotated[
        str,
        typer.Option(
            "--psf-models",
            help="PSF models of the simulated volumes, comma-separated: scalar, vectorial "
            "(each volume draws one; both make a model that does not rely on one spot shape).",
        ),
    ] = "scalar",
    sample_varieties: Annotated[
        str,
        typer.Option(
            "--sample-variety",
            help="Sample varieties of the simulated volumes, comma-separated: standard (the "
            "preset's stated sample), wide (nuclei 1.5-7 um, denser or filling the field, "
            "chromatin texture; beads denser), structures (mixtures of the structure "
            "families: see --families); each volume draws one.",
        ),
    ] = "standard",
    families: Annotated[
        str,
        typer.Option(
            "--families",
            help="Structure families the 'structures' variety draws from, comma-separated: "
            "nuclei, cells, filaments, membranes, puncta, tissue (default: all; leave one out "
            "to judge the model on it).",
        ),
    ] = "nuclei,cells,filaments,membranes,puncta,tissue",
    optics_varieties: Annotated[
        str,
        typer.Option(
            "--optics",
            help="Optics of the simulated volumes, comma-separated: ideal, realistic "
            "(spherical aberration, focal shift, haze, x0.1-10 flux); each volume draws one.",
        ),
    ] = "ideal",
    intensity: Annotated[
        str,
        typer.Option(
            "--intensity",
            help="How frames are normalised: energy (frame mean and dark floor; the same "
            "whichever frame comes first) or triangle (the paper's; the first presets').",
        ),
    ] = "energy",
    input_plane_fraction: Annotated[
        float,
        typer.Option(
            "--input-plane-fraction",
            help="Share of targets at the z of an input frame (0-1), so the volume there "
            "keeps what the frame saw.",
        ),
    ] = 0.1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    resume: Annotated[bool, typer.Option("--resume/--no-resume")] = True,
    stop_after: Annotated[
        int | None,
        typer.Option("--stop-after", help="Stop with a checkpoint after N steps; resume later."),
    ] = None,
    time_limit_min: Annotated[
        float | None,
        typer.Option(
            "--time-limit", help="Stop with a checkpoint after this many minutes; resume later."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Processes simulating volumes and drawing batches (0: none; helps on a GPU).",
        ),
    ] = 0,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every")] = 250,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init",
            help="Start from these weights (fine-tune); a larger --depth grows them.",
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu or cuda (default: best).")
    ] = None,
) -> None:
    """Train Recurrent-MZ on simulated volumes or your own z-stacks."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
    )

    from simulators.optics import PsfModel
    from simulators.samples import STRUCTURE_FAMILIES, StructureFamily

    from ..acquisition.policies import STATIC_POLICIES
    from ..model.normalization import INTENSITY_METHODS, IntensityMethod
    from ..training.conditions import PRESET_CONDITIONS
    from ..training.data import OpticsVariety, SampleVariety, load_stack_volumes
    from ..training.distributed import Ranks
    from ..training.trainer import TrainingSettings
    from ..training.trainer import train as run_training

    try:
        if preset not in PRESET_CONDITIONS:
            raise RmzError(f"unknown --preset {preset!r}; choose {', '.join(PRESET_CONDITIONS)}")
        models = _choices("--psf-models", psf_models, get_args(PsfModel))
        varieties = _choices("--sample-variety", sample_varieties, get_args(SampleVariety))
        allowed = _choices("--families", families, STRUCTURE_FAMILIES)
        optics = _choices("--optics", optics_varieties, get_args(OpticsVariety))
        method = _choices("--intensity", intensity, INTENSITY_METHODS)
        if len(method) != 1:
            raise RmzError(f"--intensity takes one of {', '.join(INTENSITY_METHODS)}")
        settings = TrainingSettings(
            steps=steps,
            crop_px=crop_px,
            batch_items=batch_items,
            targets_per_item=targets_per_item,
            n_volumes=volumes,
            fov_px=fov_px,
            base_channels=base_channels,
            depth=depth,
            learning_rate=learning_rate,
            foreground_weight=foreground_weight,
            focus_fraction=focus_fraction,
            max_inputs=max_inputs,
            scan_order_fraction=scan_order_fraction,
            scan_policies=_choices("--scan-policies", scan_policies, STATIC_POLICIES),
            adversarial_weight=adversarial_weight,
            psf_models=cast(tuple[PsfModel, ...], models),
            sample_varieties=cast(tuple[SampleVariety, ...], varieties),
            structure_families=cast(tuple[StructureFamily, ...], allowed),
            optics_varieties=cast(tuple[OpticsVariety, ...], optics),
            intensity=cast(IntensityMethod, method[0]),
            input_plane_fraction=input_plane_fraction,
            seed=seed,
            checkpoint_every=checkpoint_every,
            validate_every=checkpoint_every,
        )
        own = load_stack_volumes(stacks) if stacks is not None else None
        main = Ranks.from_environment().main  # under torchrun, rank 0 alone reports
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            disable=not sys.stderr.isatty() or not main,
        ) as progress:
            tasks: dict[str, TaskID] = {}

            def show(phase: str, done: int, total: int, metrics: dict[str, float]) -> None:
                if not main:
                    return
                if phase not in tasks:
                    tasks[phase] = progress.add_task(phase, total=total, info="")
                info = " ".join(f"{k}={v:.3g}" for k, v in metrics.items())
                progress.update(tasks[phase], completed=done, info=info)
                # Without a terminal (logs, CI, nohup) print a line now and then.
                if not sys.stderr.isatty() and (
                    done == total or done % max(1, total // 20) == 0 or "psnr" in metrics
                ):
                    typer.echo(f"{phase} {done}/{total} {info}", err=True)

            summary = run_training(
                output,
                PRESET_CONDITIONS[preset],
                settings,
                name=preset,
                stacks=own,
                device=device,
                resume=resume,
                stop_after=stop_after,
                init_from=init,
                time_limit_s=None if time_limit_min is None else 60.0 * time_limit_min,
                workers=workers,
                on_progress=show,
            )
    except (RmzError, ValueError) as exc:
        raise fail(exc) from None
    if not main:
        return
    scores = " ".join(f"{k}={v:.3f}" for k, v in summary.last_validation.items())
    if summary.weights is None:
        typer.echo(f"stopped after {summary.steps} steps; run again to resume ({scores})")
        return
    typer.echo(
        f"wrote {summary.weights} after {summary.steps} steps ({summary.seconds:.0f} s); {scores}"
    )
