"""``rmz-acq train``: Recurrent-MZ on simulated volumes or your own z-stacks.

Every default is `TrainingSettings`' own (read here, not restated).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal, cast, get_args

import typer

from ..errors import RmzError
from ..training.settings import LONG_FROM, TrainingSettings
from ._app import Device, Precision, app, fail

_DEFAULT = TrainingSettings()


def _choices(flag: str, given: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """The comma-separated names of ``given``, each one of ``known``."""
    names = tuple(n.strip() for n in given.split(",") if n.strip())
    if not names or any(n not in known for n in names):
        raise RmzError(
            f"{flag} {given!r}: give one or more of {', '.join(known)}, "
            f"comma-separated, e.g. {flag} {','.join(known)}"
        )
    return names


def default_sample_varieties(preset: str) -> str:
    """``--sample-variety`` when not given: widefield's own sample is the structure families."""
    return "structures" if preset == "widefield" else ",".join(_DEFAULT.sample_varieties)


@app.command()
def train(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Run folder (checkpoints, log, weights).")
    ],
    preset: Annotated[
        str,
        typer.Option(
            "--preset", help="Imaging conditions: beads, nuclei or widefield (nuclei's optics)."
        ),
    ] = "nuclei",
    stacks: Annotated[
        Path | None,
        typer.Option("--stacks", help="Folder of your own OME-TIFF z-stacks (default: simulate)."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Optimiser steps.")] = _DEFAULT.steps,
    crop_px: Annotated[
        int, typer.Option("--crop-px", "--crop", help="Training crop size (px).")
    ] = _DEFAULT.crop_px,
    batch_items: Annotated[
        int, typer.Option("--batch", help="Crops per batch (each with its own inputs).")
    ] = _DEFAULT.batch_items,
    targets_per_item: Annotated[
        int, typer.Option("--targets", help="Target planes per crop (batch = --batch x this).")
    ] = _DEFAULT.targets_per_item,
    volumes: Annotated[
        int, typer.Option("--volumes", help="Simulated volumes to draw from.")
    ] = _DEFAULT.n_volumes,
    fov_px: Annotated[
        int, typer.Option("--fov-px", "--fov", help="Simulated field of view (px).")
    ] = _DEFAULT.fov_px,
    base_channels: Annotated[
        int, typer.Option("--base-channels", help="Channels of the first level.")
    ] = _DEFAULT.base_channels,
    depth: Annotated[int, typer.Option("--depth", help="Encoder levels.")] = _DEFAULT.depth,
    learning_rate: Annotated[
        float, typer.Option("--lr", help="Peak learning rate (warm-up, cosine decay).")
    ] = _DEFAULT.learning_rate,
    foreground_weight: Annotated[
        float, typer.Option("--foreground-weight", help="Extra BerHu weight of bright pixels.")
    ] = _DEFAULT.foreground_weight,
    ssim_weight: Annotated[
        float,
        typer.Option(
            "--ssim-weight",
            help="Weight of (1 - MS-SSIM) beside 3 BerHu; 0 for noisy targets such as your "
            "own stacks (MS-SSIM rewards their noise's contrast).",
        ),
    ] = _DEFAULT.ssim_weight,
    focus_fraction: Annotated[
        float,
        typer.Option(
            "--focus-fraction",
            help="Share of targets drawn where the crop is in focus (0-1; helps sparse beads).",
        ),
    ] = _DEFAULT.focus_fraction,
    max_inputs: Annotated[
        int,
        typer.Option(
            "--max-inputs",
            help="Longest input sequence drawn, M = 1..this (cover the frames your scans take).",
        ),
    ] = _DEFAULT.max_inputs,
    long_share: Annotated[
        float | None,
        typer.Option(
            "--long-share",
            help=f"Share of sequences longer than {LONG_FROM} frames, the shorter ones weighed "
            f"as at --max-inputs {LONG_FROM} (default: every M above 4 as likely as M = 4).",
        ),
    ] = _DEFAULT.long_share,
    scan_order_fraction: Annotated[
        float,
        typer.Option(
            "--scan-order-fraction",
            help="Share of sequences drawn in an adaptive scan's coarse-to-fine plane order (0-1).",
        ),
    ] = _DEFAULT.scan_order_fraction,
    shuffle_fraction: Annotated[
        float,
        typer.Option(
            "--shuffle-fraction",
            help="Share of the sequences on a grid (not in a scan's order) pushed in a random "
            "order, the rest sorted by z; the quarter drawn anywhere come in random order "
            "(0-1; 1: every order of the frames as likely).",
        ),
    ] = _DEFAULT.shuffle_fraction,
    scan_policies: Annotated[
        str,
        typer.Option(
            "--scan-policies",
            help="Next-plane policies whose orders --scan-order-fraction draws "
            "(bisection, sweeps, even; comma-separated).",
        ),
    ] = ",".join(_DEFAULT.scan_policies),
    adversarial_weight: Annotated[
        float,
        typer.Option(
            "--adversarial-weight",
            help="Weight of the adversarial term of eq. 7 (paper 0.5; 0: no discriminator).",
        ),
    ] = _DEFAULT.adversarial_weight,
    psf_models: Annotated[
        str,
        typer.Option(
            "--psf-models",
            help="PSF models of the simulated volumes, comma-separated: scalar, vectorial "
            "(each volume draws one; both make a model that does not rely on one spot shape).",
        ),
    ] = ",".join(_DEFAULT.psf_models),
    sample_varieties: Annotated[
        str | None,
        typer.Option(
            "--sample-variety",
            help="Sample varieties of the simulated volumes, comma-separated: standard (the "
            "preset's stated sample), wide (nuclei 1.5-7 um, denser or filling the field, "
            "chromatin texture; beads denser), structures (mixtures of the structure "
            "families: see --families); each volume draws one. Default: structures for "
            f"widefield, {','.join(_DEFAULT.sample_varieties)} otherwise.",
        ),
    ] = None,
    families: Annotated[
        str,
        typer.Option(
            "--families",
            help="Structure families the 'structures' variety draws from, comma-separated: "
            "nuclei, cells, filaments, membranes, puncta, tissue (default: all; leave one out "
            "to judge the model on it; name one twice to draw it twice as often).",
        ),
    ] = ",".join(_DEFAULT.structure_families),
    optics_varieties: Annotated[
        str,
        typer.Option(
            "--optics",
            help="Optics of the simulated volumes, comma-separated: ideal, realistic "
            "(spherical aberration, focal shift, haze, x0.1-10 flux); each volume draws one.",
        ),
    ] = ",".join(_DEFAULT.optics_varieties),
    thin_fraction: Annotated[
        float,
        typer.Option(
            "--thin-fraction",
            help="Share of 'structures' volumes (0-1) whose specimen fills only a slab of "
            "15-60 % of the depth, so the network sees frames of empty depth above and below "
            "a thin specimen.",
        ),
    ] = _DEFAULT.thin_fraction,
    intensity: Annotated[
        str,
        typer.Option(
            "--intensity",
            help="How frames are normalised: energy (frame mean and dark floor; the same "
            "whichever frame comes first) or triangle (the paper's; the first presets').",
        ),
    ] = _DEFAULT.intensity,
    input_plane_fraction: Annotated[
        float,
        typer.Option(
            "--input-plane-fraction",
            help="Share of targets at the z of an input frame (0-1), so the volume there "
            "keeps what the frame saw.",
        ),
    ] = _DEFAULT.input_plane_fraction,
    between_fraction: Annotated[
        float,
        typer.Option(
            "--between-fraction",
            help="Share of the other targets drawn between two neighbouring input frames "
            "(0-1), where linear interpolation is hardest to beat.",
        ),
    ] = _DEFAULT.between_fraction,
    intensity_jitter: Annotated[
        float,
        typer.Option(
            "--intensity-jitter",
            help="Move half the training sequences' intensity statistics at random, as another "
            "first frame would set them: scale by up to this factor either way, shift by up "
            "to (factor - 1) / 2 scales (1 = none). Makes the volume depend less on which "
            "frame comes first.",
        ),
    ] = _DEFAULT.intensity_jitter,
    stack_statistics_fraction: Annotated[
        float,
        typer.Option(
            "--stack-statistics-fraction",
            help="Share of training sequences (0-1) normalised by all their frames' statistics "
            "together, as `reconstruct` scales a z-stack, instead of the first frame's.",
        ),
    ] = _DEFAULT.stack_statistics_fraction,
    saturated_fraction: Annotated[
        float,
        typer.Option(
            "--saturated-fraction",
            help="Share of training sequences (0-1) clipped at a camera ceiling that 0.01-2 % "
            "of their input pixels reach, frames and targets alike, so that an overexposed "
            "stack's clipped plateaus are carried between planes rather than dimmed.",
        ),
    ] = _DEFAULT.saturated_fraction,
    order_consistency: Annotated[
        float,
        typer.Option(
            "--order-consistency",
            help="Push every training sequence in a second frame order too and add the two "
            "planes' mean absolute difference times this weight to the loss (0 = off). The "
            "batch keeps its size: half as many sequences, each twice.",
        ),
    ] = _DEFAULT.order_consistency,
    loss_knee: Annotated[
        float | None,
        typer.Option(
            "--loss-knee",
            help="Take the loss on intensities recompressed as k * asinh(v / k) with this knee "
            "instead of the network's own (3 for energy intensities): a wider knee weighs "
            "errors on bright structure more, as PSNR on the linear scale does; 0 = linear.",
        ),
    ] = _DEFAULT.loss_knee,
    lowpass_weight: Annotated[
        float,
        typer.Option(
            "--lowpass-weight",
            help="Add this weight times the mean squared error of 8 px block averages to the "
            "loss (0 = off): weighs the slowly varying out-of-focus light as a PSNR does.",
        ),
    ] = _DEFAULT.lowpass_weight,
    through_blend: Annotated[
        float | None,
        typer.Option(
            "--through-blend",
            help="Take the loss on this share of the network's plane plus the rest of the "
            "linear filter that the --init weights carry (their linear blend), between and "
            "around the frames: the network learns what the filter misses. Ship it with the "
            "same blend.",
        ),
    ] = _DEFAULT.through_blend,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of volumes, crops and weights.")
    ] = _DEFAULT.seed,
    resume: Annotated[bool, typer.Option("--resume/--no-resume")] = True,
    stop_after: Annotated[
        int | None,
        typer.Option("--stop-after", help="Stop with a checkpoint after N steps; resume later."),
    ] = None,
    time_limit_min: Annotated[
        float | None,
        typer.Option(
            "--time-limit-min",
            "--time-limit",
            help="Stop with a checkpoint after this many minutes; resume later.",
        ),
    ] = None,
    anneal_by_time: Annotated[
        bool,
        typer.Option(
            "--anneal-by-time",
            help="Decay the learning rate over --time-limit-min instead of --steps and write "
            "the weights when the time is up (a run as long as a machine is lent).",
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Processes simulating volumes and drawing batches (0: none; helps on a GPU).",
        ),
    ] = 0,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", help="Steps between checkpoints and validations.")
    ] = _DEFAULT.checkpoint_every,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init",
            help="Start from these weights (fine-tune); a larger --depth or --base-channels "
            "grows them.",
        ),
    ] = None,
    device: Device = None,
    precision: Precision = _DEFAULT.precision,
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
    from ..session import compute_dtype
    from ..training.conditions import PRESET_CONDITIONS
    from ..training.data import OpticsVariety, SampleVariety, load_stack_volumes
    from ..training.distributed import Ranks
    from ..training.trainer import train as run_training

    def compute_name(name: str) -> str:
        compute_dtype(name)  # refuses an unknown precision, naming the choices
        return name

    try:
        if preset not in PRESET_CONDITIONS:
            raise RmzError(f"unknown --preset {preset!r}; choose {', '.join(PRESET_CONDITIONS)}")
        models = _choices("--psf-models", psf_models, get_args(PsfModel))
        if sample_varieties is None:
            sample_varieties = default_sample_varieties(preset)
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
            ssim_weight=ssim_weight,
            focus_fraction=focus_fraction,
            max_inputs=max_inputs,
            long_share=long_share,
            scan_order_fraction=scan_order_fraction,
            shuffle_fraction=shuffle_fraction,
            scan_policies=_choices("--scan-policies", scan_policies, STATIC_POLICIES),
            adversarial_weight=adversarial_weight,
            psf_models=cast(tuple[PsfModel, ...], models),
            sample_varieties=cast(tuple[SampleVariety, ...], varieties),
            structure_families=cast(tuple[StructureFamily, ...], allowed),
            optics_varieties=cast(tuple[OpticsVariety, ...], optics),
            thin_fraction=thin_fraction,
            intensity=cast(IntensityMethod, method[0]),
            input_plane_fraction=input_plane_fraction,
            between_fraction=between_fraction,
            intensity_jitter=intensity_jitter,
            stack_statistics_fraction=stack_statistics_fraction,
            saturated_fraction=saturated_fraction,
            order_consistency=order_consistency,
            loss_knee=loss_knee,
            lowpass_weight=lowpass_weight,
            through_blend=through_blend,
            precision=cast(Literal["float32", "bfloat16"], compute_name(precision)),
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
                anneal_by_time=anneal_by_time,
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
