"""``rmz-acq validate``: will a sparse scan work on this specimen?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from ..errors import AcquisitionError, RmzError
from ._app import (
    CandidateStep,
    Device,
    ExposureMs,
    InferredModel,
    Model,
    NextPlane,
    Precision,
    RelativeEpsilon,
    RelativeTo,
    StopAt,
    VolumeOrder,
    ZLimits,
    app,
    fail,
    model_for_config,
    parse_limits,
)
from ._signals import exit_cancelled, stop_on_signals

if TYPE_CHECKING:
    from ..model.weights import LoadedModel


@app.command()
def validate(
    output: Annotated[Path, typer.Option("--output", "-o", help="Validation folder.")],
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Micro-Manager .cfg: acquire the full stack now."),
    ] = None,
    stack: Annotated[
        Path | None,
        typer.Option("--stack", help="A full z-stack already taken (OME-TIFF with PositionZ)."),
    ] = None,
    model: InferredModel = None,
    z_range: Annotated[
        str | None,
        typer.Option(
            "--z-range",
            help="With --config: the stack's planes START:STOP:STEP um (default: "
            "the model's output range).",
        ),
    ] = None,
    z_limits: ZLimits = None,
    candidate_step: CandidateStep = None,
    relative_epsilon: RelativeEpsilon = None,
    next_plane: NextPlane = None,
    stop_at: StopAt = None,
    relative_to: RelativeTo = None,
    volume_order: VolumeOrder = None,
    exposure_ms: ExposureMs = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Reuse the folder: delete what validate wrote there."),
    ] = False,
    device: Device = None,
    precision: Precision = "float32",
) -> None:
    """Replay a sparse scan on one full z-stack of your specimen and score it."""
    from ..acquisition import ScanSettings
    from ..io import read_zstack
    from ..io.outputs import VALIDATION_FILES, RunFolder
    from ..model.weights import load_model
    from ..session import compute_dtype
    from ..validation import check_stack, validate_stack, write_validation

    try:
        compute_dtype(precision)
        if (config is None) == (stack is None):
            raise RmzError(
                "give either --config CFG (take the stack now) or --stack STACK.ome.tif "
                "(a stack already taken)"
            )
        if candidate_step is not None and not candidate_step > 0:
            raise RmzError(
                f"--candidate-step-um must be a positive spacing in um, got {candidate_step:g}"
            )
        if exposure_ms is not None and not exposure_ms > 0:
            raise RmzError(f"--exposure-ms must be positive, got {exposure_ms:g}")
        if relative_epsilon is not None and relative_epsilon < 0:
            raise RmzError(f"--relative-epsilon must be >= 0, got {relative_epsilon:g}")
        folder = RunFolder(output, files=VALIDATION_FILES)
        folder.check(overwrite=overwrite)
        with folder.locked():
            if overwrite:
                folder.clear()
            if stack is not None:
                source = str(stack)
                if model is None:
                    raise RmzError(
                        "--model is required with --stack (a stack does not say which "
                        "model suits it): beads, nuclei, widefield, a weights file or a zoo package"
                    )
                loaded = load_model(model, device or "cpu")
                taken = read_zstack(stack)
            else:
                assert config is not None
                loaded, path = _acquire_stack(
                    config, model, z_range, z_limits, exposure_ms, output, device
                )
                source = str(path)
                taken = read_zstack(path)
            check_stack(taken, source)
            settings = ScanSettings.for_model(
                loaded,
                precision=precision,
                relative_epsilon=relative_epsilon,
                next_plane=next_plane,
                stop_at=stop_at,
                relative_to=relative_to,
                volume_order=volume_order,
            )
            typer.echo(
                f"replaying the scan of model {loaded.name} on {taken.data.shape[0]} planes",
                err=True,
            )
            result = validate_stack(
                taken,
                loaded,
                source=source,
                settings=settings,
                candidate_step_um=candidate_step,
                device=device,
                precision=precision,
            )
            write_validation(result, output)
    except AcquisitionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except (RmzError, ValueError) as exc:
        raise fail(exc) from None
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(result.verdict())
    typer.echo(f"wrote {output}")


def _acquire_stack(
    config: Path,
    model: str | None,
    z_range: str | None,
    z_limits: str | None,
    exposure_ms: float | None,
    output: Path,
    device: str | None,
) -> tuple[LoadedModel, Path]:
    """The full mechanical stack, under every rule a scan obeys; a signal ends the command."""
    import threading

    from ..acquisition import ScanPlan
    from ..hardware import focus_limits_um, load_core
    from ..model.weights import load_model
    from ..safety import check_within_limits, travel_limits
    from ..zgrid import parse_z_range
    from ..zstack import acquire_zstack

    core = load_core(config)
    loaded = load_model(model_for_config(model, core), device or "cpu")
    if z_range is not None:
        zr = parse_z_range(z_range)
        planes, step = zr.planes_um(), zr.step_um
    else:
        planes = np.asarray(ScanPlan.for_model(loaded).output_planes_um)
        step = float(loaded.conditions["output_step_um"])
    limits, narrowed = travel_limits(focus_limits_um(core), parse_limits(z_limits))
    if narrowed:
        typer.echo(f"warning: {narrowed}", err=True)
    check_within_limits([float(z) for z in planes], limits)
    if exposure_ms is not None:
        core.setExposure(exposure_ms)
    path = output / "stack.ome.tif"
    typer.echo(f"taking the full stack: {len(planes)} planes", err=True)
    stop = threading.Event()
    with stop_on_signals(stop.set) as received:
        records = acquire_zstack(
            core,
            [float(z) for z in planes],
            path,
            z_step_um=step,
            limits_um=limits,
            should_stop=stop.is_set,
        )
    if received:
        raise exit_cancelled(received[0], f"{len(records)} of {len(planes)} planes in {path}")
    return loaded, path


@app.command()
def calibrate(
    stacks: Annotated[
        list[Path],
        typer.Option("--stack", help="A z-stack of your specimen (repeat for more)."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Weights to write (.safetensors).")
    ],
    model: Model,
    minutes: Annotated[
        float,
        typer.Option("--minutes", help="Fine-tuning time budget; 0: the linear blend alone."),
    ] = 20.0,
    linear_blend: Annotated[
        bool,
        typer.Option(
            "--linear-blend/--no-linear-blend",
            help="Blend the network with a linear filter calibrated on the stacks, in the "
            "share that cross-fitting on them chooses.",
        ),
    ] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Write the weights even if they score worse.")
    ] = False,
    learning_rate: Annotated[
        float, typer.Option("--learning-rate", help="Fine-tuning step size.")
    ] = 2e-4,
    stop_tolerance: Annotated[
        float | None,
        typer.Option(
            "--stop-tolerance",
            help="How far (dB) below taking every candidate the calibrated weights' scan may "
            "score at its stop; the stop threshold is chosen for it. Larger: fewer frames. "
            "[default: 0.5]",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output file.")
    ] = False,
    device: Device = None,
) -> None:
    """Fine-tune a model on your own z-stacks; written only if a held-out region improves."""
    from ..calibration import STOP_TOLERANCE_DB, check_tolerance, split_stack
    from ..calibration import calibrate as run_calibration
    from ..io import read_zstack
    from ..io.outputs import check_output_file
    from ..model.weights import load_model

    try:
        if not output.name.endswith(".safetensors"):
            raise RmzError(f"-o {output} must end in .safetensors")
        if not minutes >= 0:
            raise RmzError(f"--minutes must be 0 or more, got {minutes:g}")
        if minutes == 0 and not linear_blend:
            raise RmzError("--minutes 0 with --no-linear-blend leaves nothing to calibrate")
        tolerance = STOP_TOLERANCE_DB if stop_tolerance is None else stop_tolerance
        check_tolerance(tolerance)
        check_output_file(output, inputs=stacks, overwrite=overwrite)
        loaded = load_model(model, device or "cpu")
        taken = [(str(path), read_zstack(path)) for path in stacks]
        for source, stack in taken:
            split_stack(stack, source)  # refuse an unfit stack before the work starts
        work = [f"fine-tuning {loaded.name} for {minutes:g} min"] if minutes > 0 else []
        work += ["fitting a linear blend"] if linear_blend and len(taken) > 1 else []
        if work:  # else calibrate says why there is nothing to do
            typer.echo(
                f"{' then '.join(work)} on {len(taken)} stack(s); the right quarter of each "
                "is held out",
                err=True,
            )
        if not learning_rate > 0:
            raise RmzError(f"--learning-rate must be positive, got {learning_rate:g}")
        result = run_calibration(
            taken,
            loaded,
            output,
            minutes=minutes,
            force=force,
            learning_rate=learning_rate,
            stop_tolerance_db=tolerance,
            linear_blend=linear_blend,
            device=device,
        )
    except (RmzError, ValueError) as exc:
        raise fail(exc) from None
    typer.echo(result.table())
    typer.echo(f"{result.steps} steps in {result.seconds:.0f} s")
    if result.unchanged:
        typer.echo(
            "error: not written: with --minutes 0 only the linear blend could change the "
            "model, and no share of it beat the network on your stacks; give --minutes to "
            "fine-tune",
            err=True,
        )
        raise typer.Exit(1)
    if result.written is None:
        typer.echo(
            "error: not written: the held-out score dropped "
            f"({result.before.recurrent_mz:.2f} -> {result.after.recurrent_mz:.2f} dB); "
            "--force writes the weights anyway",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"wrote {result.written} and {result.card}")
