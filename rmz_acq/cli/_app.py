"""The ``rmz-acq`` application object, its root options and one-line errors.

A mistake the user can fix (a missing file, a bad range, a plan outside the
stage limits) ends with ``error: <what and how to fix it>`` on stderr and exit
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import sys
import warnings
from typing import Annotated, Any, NoReturn, TextIO

import typer
from pydantic import ValidationError

from ..errors import RmzError, validation_message

__all__ = [
    "EXIT_USER_ERROR",
    "CandidateStep",
    "Device",
    "ExposureMs",
    "InferredModel",
    "Model",
    "Precision",
    "ZLimits",
    "app",
    "fail",
    "model_for_config",
    "parse_limits",
    "run_app",
    "user_message",
]

app = typer.Typer(
    name="rmz-acq",
    help="Adaptive volumetric wide-field imaging with Recurrent-MZ.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_USER_ERROR = 2

# Options shared by several commands, defined once so they read the same everywhere.

# ``--precision`` of every command that runs the network (checked by session.compute_dtype).
Precision = Annotated[
    str,
    typer.Option(
        "--precision",
        help="float32, or bfloat16: 1.5-2x faster on CPUs and GPUs with native bfloat16.",
    ),
]

Device = Annotated[
    str | None,
    typer.Option(
        "--device", help="Where the network runs: cpu, cuda or cuda:N (default: cuda if present)."
    ),
]

# Where the focus may go, and how long each frame is exposed (acquire, stack, validate).
ZLimits = Annotated[
    str | None,
    typer.Option(
        "--z-limits",
        help="LOW:HIGH um: narrows the stage's travel (required if it reports none).",
    ),
]
ExposureMs = Annotated[
    float | None,
    typer.Option("--exposure-ms", help="Camera exposure (default: the config's)."),
]

# Where an adaptive scan (or its replay in validate) may put the focus.
CandidateStep = Annotated[
    float | None,
    typer.Option(
        "--candidate-step-um",
        "--candidate-step",
        help="Spacing of the candidate focus planes, um (default: the model's; nuclei 0.75, "
        "beads 1).",
    ),
]

NextPlane = Annotated[
    str | None,
    typer.Option(
        "--next-plane",
        help="Where each frame is taken: bisection, sweeps, even, structure or settle "
        "(default: the model's).",
    ),
]
StopAt = Annotated[
    str | None,
    typer.Option(
        "--stop-at",
        help="Where the rule may end the scan: any (after any frame) or even (only when the "
        "planes taken are evenly spaced: after each complete sweep). Default: the model's.",
    ),
]
RelativeTo = Annotated[
    str | None,
    typer.Option(
        "--relative-to",
        help="What the relative epsilon's change is relative to: volume (||V_M||_F) or "
        "structure-noise (a weighted geometric mean of the volume's structure about its mean "
        "and the frames' noise: one threshold serves many kinds of specimen). "
        "Default: the model's.",
    ),
]
VolumeOrder = Annotated[
    str | None,
    typer.Option(
        "--volume-order",
        help="The final volume from the frames as-taken (the live volume) or rebuilt sorted by "
        "z once the scan stops (one more reconstruction). Default: the model's.",
    ),
]
RelativeEpsilon = Annotated[
    float | None,
    typer.Option(
        "--relative-epsilon",
        help="Stop when the relative change (see --relative-to) <= this (default: the "
        "model's; nuclei 0.33 relative to structure and noise, beads 0.02 relative to the "
        "volume, calibrated weights the one calibrate chose, others 0.1).",
    ),
]

# The model rule, the same in every command: inferred only where a simulated
# config states its optics (acquire, validate --config), otherwise required.
_MODEL_KINDS = (
    "A preset (beads, nuclei, widefield), a .safetensors weights file or a zoo package "
    "(export-bioimageio)"
)
Model = Annotated[str, typer.Option("--model", "-m", help=f"{_MODEL_KINDS}. Required.")]
InferredModel = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help=f"{_MODEL_KINDS}. Default with a simulated config: the preset nearest its "
        "emission wavelength; required with a real microscope's config.",
    ),
]


def model_for_config(model: str | None, core: Any) -> str:
    """``--model`` as given, else the preset a simulated config's optics call for."""
    if model is not None:
        return model
    from ..acquisition.controller import simulated_optics, simulated_sample
    from ..training.conditions import PRESET_CONDITIONS

    optics = simulated_optics(core)
    if optics is None:
        raise RmzError(
            "the configuration does not state its optics (a real microscope's does not); "
            "choose a model with --model (beads, nuclei, widefield, a weights file or a zoo "
            "package)"
        )
    nearest = min(
        PRESET_CONDITIONS,
        key=lambda name: abs(PRESET_CONDITIONS[name].emission_wavelength_nm - optics[1]),
    )
    # nuclei and widefield share optics: the simulated sample says which suits it
    if nearest == "nuclei" and simulated_sample(core) in ("structures", "tiff"):
        return "widefield"
    return nearest


# Path errors the user fixes (a read-only folder, a file where a folder is
# wanted); a full disk is reported in one line too, with exit status 1.
_PATH_ERRORS = (PermissionError, FileExistsError, IsADirectoryError, NotADirectoryError)
_USER_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG}
_FAULT_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def user_message(exc: BaseException) -> str | None:
    """One line for an error the user can fix, or ``None`` for a bug.

    Our own `RmzError`, pydantic validation errors (fields named as their
    flags) and paths that cannot be written.
    """
    if isinstance(exc, RmzError):
        return " ".join(str(exc).split())
    if isinstance(exc, ValidationError):
        return validation_message(exc, as_flags=True)
    if isinstance(exc, OSError) and (
        isinstance(exc, _PATH_ERRORS) or exc.errno in _USER_ERRNOS | _FAULT_ERRNOS
    ):
        # a temporary file written to be renamed: name the file the user asked for
        where = f" {str(exc.filename).removesuffix('.partial')}" if exc.filename else ""
        return f"cannot write{where}: {exc.strerror or exc}"
    return None


def fail(message: str | BaseException) -> typer.Exit:
    """Print ``error: message`` and return the exit to raise (status 2)."""
    text = message if isinstance(message, str) else (user_message(message) or str(message))
    typer.echo(f"error: {text}", err=True)
    return typer.Exit(EXIT_USER_ERROR)


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    typer.echo(f"warning: {' '.join(str(message).split())}", err=True)


def run_app() -> NoReturn:
    """Run the command line; a user's mistake ends in one ``error:`` line, exit 2.

    Real bugs keep their traceback.  A full disk also gets one line (exit 1):
    it is not a mistake in the command, but nothing is gained by a traceback.
    """
    warnings.showwarning = _one_line_warning
    try:
        app()  # usage errors, --help and typer.Exit are handled (and exit) in here
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        fault = isinstance(exc, OSError) and exc.errno in _FAULT_ERRNOS
        sys.exit(1 if fault else EXIT_USER_ERROR)
    sys.exit(0)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True)
    ] = False,
) -> None:
    if version:
        from .. import __version__

        typer.echo(f"rmz-acq {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


def parse_limits(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    parts = text.split(":")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise RmzError(f"--z-limits {text!r} must be LOW:HIGH in um, e.g. -5:25") from None
    if not lo < hi:
        raise RmzError(f"--z-limits {text!r}: LOW must be below HIGH")
    return lo, hi
