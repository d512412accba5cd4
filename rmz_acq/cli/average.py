"""``rmz-acq average``: the weighted mean of weights fine-tuned from one starting point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import RmzError
from ._app import app, fail


@app.command("average")
def average(
    models: Annotated[
        list[str],
        typer.Argument(help="Two or more presets or weights files of one architecture."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="OUT.safetensors")],
    fractions: Annotated[
        str | None,
        typer.Option(
            "--fractions",
            help="One fraction per model, comma-separated, summing to 1 (default: equal).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="The model's name in the output (default: the first model's)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the output if it exists.")
    ] = False,
) -> None:
    """Average weights parameter by parameter (a 'model soup').

    For weights trained from one starting point: a preset and a stage
    trained from it, or a preset and a fine-tune on your own stacks (the
    average keeps more of the preset's generality than the fine-tune
    alone). Score the result (`benchmarks/generalisation.py --weights`,
    `rmz-acq validate --model`) before using it.
    """
    from ..model.weights import average_weights, load_model, save_weights, training_stages

    try:
        if output.exists() and not overwrite:
            raise RmzError(f"{output} exists; give --overwrite to replace it")
        if output.suffix != ".safetensors":
            raise RmzError(f"-o {output}: name the output OUT.safetensors")
        shares = [1 / len(models)] * len(models)
        if fractions is not None:
            try:
                shares = [float(f) for f in fractions.split(",")]
            except ValueError:
                raise RmzError(
                    f"--fractions {fractions!r}: give numbers, comma-separated, e.g. 0.5,0.5"
                ) from None
        loaded = [load_model(m) for m in models]
        network = average_weights(loaded, shares)
        blended = [m for m, w in zip(models, loaded, strict=True) if w.linear_blend is not None]
        if blended:
            typer.echo(
                f"note: the linear blend of {', '.join(blended)} was fitted for that network "
                "and is left out of the average; run `rmz-acq calibrate --minutes 0` on the "
                "average to fit one for it",
                err=True,
            )
        sources = [
            {"model": m, "sha256": w.sha256, "fraction": f}
            for m, w, f in zip(models, loaded, shares, strict=True)
        ]
        extra = {"averaged_from": json.dumps(sources)}
        # The first model's last stage stays its `training`; every other stage of
        # every model is an earlier one: the average has seen what any of them saw.
        first, *rest = [training_stages(w.metadata) for w in loaded]
        earlier = first[:-1] + [s for stages in rest for s in stages]
        if first:
            extra["training"] = json.dumps(first[-1])
        if earlier:
            extra["earlier_training"] = json.dumps(earlier)
        path = save_weights(
            network,
            output,
            name=name or loaded[0].name,
            conditions=loaded[0].conditions,
            extra=extra,
        )
    except RmzError as err:
        raise fail(err) from err
    sha = load_model(path).sha256
    typer.echo(f"wrote {path} (SHA-256 {sha[:8]}...), the mean of {len(models)} weights")
