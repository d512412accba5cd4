"""``rmz-acq export-bioimageio``: a preset or weights file as a BioImage Model Zoo package."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import RmzError
from ._app import Model, app, fail


@app.command("export-bioimageio")
def export_bioimageio(
    model: Model,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="OUT.zip for an archive, else a folder with rdf.yaml."),
    ],
    fov_px: Annotated[
        int, typer.Option("--fov-px", help="Test tensors' field, 32 + 16 n px.")
    ] = 64,
    authors: Annotated[
        list[str] | None,
        typer.Option(
            "--author",
            help="NAME or NAME:GITHUB_USER, repeatable (the zoo needs a GitHub user to upload).",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the output if it exists.")
    ] = False,
) -> None:
    """Package a model for the BioImage Model Zoo (bioimage.io, model format 0.5).

    Test tensors are made by the model itself from a simulated specimen of its
    conditions; check the result with `bioimageio test OUT.zip`.
    """
    from ..zoo.export import export_bioimageio as export

    try:
        path = export(model, output, fov_px=fov_px, authors=authors or (), overwrite=overwrite)
    except (RmzError, ValueError) as exc:
        raise fail(exc) from None
    typer.echo(f"wrote {path}; check it with: bioimageio test {path}")
