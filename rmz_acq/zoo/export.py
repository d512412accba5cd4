"""``rmz-acq export-bioimageio``: a preset or weights file as a BioImage Model Zoo package.

The package (bioimage.io model format 0.5) holds ``pytorch_state_dict``
weights for `rmz_acq.zoo.RecurrentMZVolume`, three inputs (the frames, the z
of each frame, the z of each wanted plane), one output (the volume), test
tensors the model itself produced from a simulated specimen of its own
conditions, a cover, the model card and the paper as citation.  The
description is built with ``bioimageio.spec``'s classes and validated by them
before anything is written.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from numpy.typing import NDArray

from ..acquisition.plan import scan_defaults
from ..errors import DataWarning, RmzError
from ..model.weights import PRESETS, LoadedModel, load_model
from .module import RecurrentMZVolume

__all__ = ["EXPORT_SEED", "export_bioimageio", "sample_planes"]

# Simulated specimens for test tensors come from their own seed range (training
# draws below 10000, validation from 10000, model-card evaluations from 20000).
EXPORT_SEED = 40_000
PAPER_DOI = "10.1038/s41377-021-00506-9"
PAPER_TEXT = (
    "Huang, L., Chen, H., Luo, Y., Rivenson, Y. & Ozcan, A. Recurrent neural network-based "
    "volumetric fluorescence microscopy. Light: Science & Applications 10, 62 (2021)."
)
# Lateral sizes the package accepts: 32 + 16 n pixels (any size works in
# rmz_acq itself; the zoo needs a rule to test and to tile by).
MIN_SIZE_PX = 32
SIZE_STEP_PX = 16


def sample_planes(conditions: dict[str, Any]) -> tuple[list[float], NDArray[np.float64]]:
    """Inputs at the conditions' spacing (3, 9, 15 µm for nuclei) and the output grid."""
    depth = float(conditions["depth_um"])
    spacing = float(conditions["input_spacing_um"])
    step = float(conditions["output_step_um"])
    inputs = list(np.arange(spacing / 2, depth - spacing / 2 + 1e-9, spacing))
    planes = np.round(np.arange(0.0, depth + step / 2, step), 6)
    return [round(float(z), 6) for z in inputs], planes


def _person(text: str) -> tuple[str, str | None]:
    name, _, user = text.partition(":")
    if not name.strip() or "/" in name:
        raise RmzError(f"--author {text!r}: give NAME or NAME:GITHUB_USER (no '/')")
    return name.strip(), user.strip() or None


def _card(model: LoadedModel) -> str:
    """The model card beside the weights, or one made from their metadata."""
    beside = model.path.with_suffix(".md")
    if beside.is_file():
        return beside.read_text()
    conditions = "\n".join(f"- {k}: {v}" for k, v in sorted(model.conditions.items()))
    return (
        f"# {model.name}\n\nRecurrent-MZ weights exported by rmz_acq from `{model.path.name}` "
        f"(SHA-256 `{model.sha256}`); no model card was found beside them.\n\n"
        f"Imaging conditions they were trained for:\n\n{conditions or '- not recorded'}\n"
    )


def _usage(model: LoadedModel, inputs_um: list[float]) -> str:
    return f"""
## Using this package

Inputs, all float32, batch first:

- `frames` (batch, frame, y, x): M wide-field frames in camera units, in the
  order they were taken (order matters: the network is recurrent).
- `frame_z_um` (batch, frame): the focus z of each frame, micrometres.
- `output_z_um` (batch, plane): the z of each plane wanted, in the same
  coordinates (any planes; the network sees each frame's distance to each
  plane, the paper's digital propagation matrix).

Output: `volume` (batch, plane, y, x), float32 in the frames' units.

The test tensors are a simulated specimen of this model's conditions with
frames at {", ".join(f"{z:g}" for z in inputs_um)} µm. Intensities are
normalised inside the model from the first frame, so give it whole fields
rather than small tiles. The architecture imports from the `rmz_acq`
package, which must be installed where this package runs. The same
reconstruction, with the microscope in the loop, is `rmz-acq acquire`; from
files, `rmz-acq reconstruct --model` this package.

## Validation

The scores above were measured on simulated specimens held out of training
and, where stated, on real stacks. Before trusting the model on a new
specimen or microscope, score it there: `rmz-acq validate --stack
YOUR_STACK.ome.tif --model` this package compares it with linear
interpolation, the nearest plane and single-input propagation on planes the
model did not see; `rmz-acq calibrate` fine-tunes it on such stacks.
"""


def _cover(frames: NDArray[np.float32], volume: NDArray[np.float32], path: Path) -> Path:
    """2:1 cover: the first frame beside an x-z section of the volume."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4), dpi=100)
    middle = volume.shape[1] // 2
    for axis, image, title in (
        (left, frames[0], "first frame"),
        (right, volume[:, middle, :], "Recurrent-MZ, x-z"),
    ):
        low, high = np.percentile(image, (0.5, 99.8))
        axis.imshow(image, cmap="magma", vmin=low, vmax=high, aspect="auto")
        axis.set_title(title)
        axis.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _test_tensors(
    model: LoadedModel, module: RecurrentMZVolume, fov_px: int
) -> dict[str, NDArray[np.float32]]:
    from ..training.conditions import ImagingConditions
    from ..training.data import make_simulated_volume

    if not model.conditions:
        raise RmzError(
            f"{model.path} records no imaging conditions, so no test specimen can be made "
            "for it; export weights written by `rmz-acq train` or `rmz-acq calibrate`"
        )
    conditions = ImagingConditions(**model.conditions)
    inputs_um, planes_um = sample_planes(model.conditions)
    specimen = make_simulated_volume(conditions, EXPORT_SEED, fov_px)
    rng = np.random.default_rng(EXPORT_SEED)
    frames = np.stack([specimen.frame(z, rng) for z in inputs_um]).astype(np.float32)
    tensors = {
        "frames": frames[None],
        "frame_z_um": np.asarray([inputs_um], np.float32),
        "output_z_um": np.asarray([planes_um], np.float32),
    }
    with torch.no_grad():
        volume = module(
            *(torch.from_numpy(tensors[k]) for k in ("frames", "frame_z_um", "output_z_um"))
        )
    tensors["volume"] = volume.numpy().astype(np.float32)
    return tensors


def export_bioimageio(
    model: str | Path,
    output: str | Path,
    *,
    fov_px: int = 64,
    authors: Sequence[str] = (),
    overwrite: bool = False,
) -> Path:
    """Write ``model`` (a preset name or weights file) as a zoo package.

    ``output`` ending in ``.zip`` gives a zip archive, anything else a folder
    with ``rdf.yaml``.  ``fov_px`` is the test tensors' field (a multiple of
    16, at least 32).  ``authors``: ``NAME`` or ``NAME:GITHUB_USER`` each (the
    zoo wants one with a GitHub user as maintainer before it accepts an upload).

    Raises
    ------
    RmzError
        ``bioimageio.spec`` is not installed, the output exists (without
        ``overwrite``), the weights carry no imaging conditions, or the
        description does not validate.
    """
    try:
        from bioimageio.spec import (
            ValidationContext,
            save_bioimageio_package,
            save_bioimageio_package_as_folder,
        )
        from bioimageio.spec.model import v0_5 as spec
    except ImportError:
        raise RmzError(
            "export-bioimageio needs bioimageio.spec: pip install 'rmz_acq[bioimageio]'"
        ) from None
    output = Path(output)
    if output.exists() and not overwrite:
        raise RmzError(f"{output} exists; pass --overwrite to replace it")
    if fov_px < MIN_SIZE_PX or (fov_px - MIN_SIZE_PX) % SIZE_STEP_PX:
        raise RmzError(
            f"--fov-px {fov_px}: the package takes {MIN_SIZE_PX} + {SIZE_STEP_PX} n pixels; "
            f"use e.g. 64"
        )
    loaded = load_model(model, "cpu")
    if loaded.linear_blend is not None:
        warnings.warn(
            f"{loaded.path.name} carries a linear blend ({loaded.linear_blend.describe()}); "
            "the zoo package holds the network alone (its volumes are the network's, without "
            "the blend): use the weights with rmz_acq for the blended volumes",
            DataWarning,
            stacklevel=2,
        )
        loaded = dataclasses.replace(loaded, linear_blend=None)
    module = RecurrentMZVolume.wrapping(loaded.model).eval()
    tensors = _test_tensors(loaded, module, fov_px)
    inputs_um, _ = sample_planes(loaded.conditions)
    pixel_um = float(loaded.conditions.get("pixel_size_um", 0.1))
    origin = f"preset {loaded.name}" if str(model) in PRESETS else f"weights {loaded.path.name}"

    with tempfile.TemporaryDirectory(prefix="rmz_acq_zoo_") as tmp:
        work = Path(tmp)
        files: dict[str, Path] = {}
        samples: dict[str, Path] = {}
        for name, array in tensors.items():
            files[name] = work / f"test_{name}.npy"
            np.save(files[name], array)
            # the same tensor as an image file for people and viewers (the zoo's
            # sample tensors may not be .npy)
            samples[name] = work / f"sample_{name}.tif"
            image = np.atleast_2d(array[0])  # z lists as one row
            tifffile.imwrite(samples[name], image, photometric="minisblack")
        weights = work / "weights.pt"
        torch.save({k: v.contiguous() for k, v in module.state_dict().items()}, weights)
        cover = _cover(tensors["frames"][0], tensors["volume"][0], work / "cover.png")
        card = work / "README.md"
        card.write_text(_card(loaded).rstrip() + "\n" + _usage(loaded, inputs_um))

        def space(axis: str, size: Any, *, output: bool = False) -> Any:
            kind = spec.SpaceOutputAxis if output else spec.SpaceInputAxis
            return kind(id=spec.AxisId(axis), size=size, unit="micrometer", scale=pixel_um)

        lateral = spec.ParameterizedSize(min=MIN_SIZE_PX, step=SIZE_STEP_PX)
        frame_axis = spec.IndexInputAxis(
            id=spec.AxisId("frame"), size=spec.ParameterizedSize(min=1, step=1)
        )
        plane_axis = spec.IndexInputAxis(
            id=spec.AxisId("plane"), size=spec.ParameterizedSize(min=1, step=1)
        )

        def same(tensor: str, axis: str) -> Any:
            return spec.SizeReference(tensor_id=spec.TensorId(tensor), axis_id=spec.AxisId(axis))

        micrometres = spec.IntervalOrRatioDataDescr(type="float32", unit="µm")
        inputs = [
            spec.InputTensorDescr(
                id=spec.TensorId("frames"),
                description="wide-field frames in camera units, in the order taken",
                axes=[spec.BatchAxis(), frame_axis, space("y", lateral), space("x", lateral)],
                test_tensor=spec.FileDescr(source=files["frames"]),
                sample_tensor=spec.FileDescr(source=samples["frames"]),
                data=spec.IntervalOrRatioDataDescr(type="float32"),
            ),
            spec.InputTensorDescr(
                id=spec.TensorId("frame_z_um"),
                description="focus z of each frame (µm)",
                axes=[
                    spec.BatchAxis(),
                    spec.IndexInputAxis(id=spec.AxisId("frame"), size=same("frames", "frame")),
                ],
                test_tensor=spec.FileDescr(source=files["frame_z_um"]),
                sample_tensor=spec.FileDescr(source=samples["frame_z_um"]),
                data=micrometres,
            ),
            spec.InputTensorDescr(
                id=spec.TensorId("output_z_um"),
                description="z of each output plane (µm), in the frames' coordinates",
                axes=[spec.BatchAxis(), plane_axis],
                test_tensor=spec.FileDescr(source=files["output_z_um"]),
                sample_tensor=spec.FileDescr(source=samples["output_z_um"]),
                data=micrometres,
            ),
        ]
        outputs = [
            spec.OutputTensorDescr(
                id=spec.TensorId("volume"),
                description="the volume at output_z_um, in the frames' units",
                axes=[
                    spec.BatchAxis(),
                    spec.IndexOutputAxis(
                        id=spec.AxisId("plane"), size=same("output_z_um", "plane")
                    ),
                    space("y", same("frames", "y"), output=True),
                    space("x", same("frames", "x"), output=True),
                ],
                test_tensor=spec.FileDescr(source=files["volume"]),
                sample_tensor=spec.FileDescr(source=samples["volume"]),
                data=spec.IntervalOrRatioDataDescr(type="float32"),
            )
        ]
        config = loaded.model.config
        architecture = spec.ArchitectureFromLibraryDescr(
            import_from="rmz_acq.zoo",
            callable=spec.Identifier("RecurrentMZVolume"),
            kwargs={
                "base_channels": config.base_channels,
                "depth": config.depth,
                "norm": config.norm,
                "dpm_scale_um": config.dpm_scale_um,
                "intensity": config.intensity,
            },
        )
        sample = str(loaded.conditions.get("sample", "fluorescence"))
        named = [_person(text) for text in authors] or [("rmz_acq developers", None)]
        people = [spec.Author(name=name, github_user=user) for name, user in named]
        maintainers = [spec.Maintainer(name=name, github_user=user) for name, user in named if user]
        with ValidationContext(root=work, perform_io_checks=True):
            try:
                description = spec.ModelDescr(
                    name=f"Recurrent-MZ {loaded.name} (rmz_acq)",
                    description=(
                        "Volumetric wide-field fluorescence from a few frames at arbitrary z: "
                        "Recurrent-MZ (ConvGRU encoder-decoder) trained by rmz_acq for "
                        f"{sample} samples ({origin})."
                    ),
                    authors=people,
                    maintainers=maintainers,
                    cite=[spec.CiteEntry(text=PAPER_TEXT, doi=spec.Doi(PAPER_DOI))],
                    license=spec.LicenseId("BSD-3-Clause"),
                    documentation=spec.FileDescr(source=card),
                    covers=[spec.FileDescr(source=cover)],
                    tags=[
                        "fluorescence-light-microscopy",
                        "wide-field",
                        "3d",
                        "volumetric-reconstruction",
                        "recurrent-neural-network",
                        "pytorch",
                        sample,
                    ],
                    inputs=inputs,
                    outputs=outputs,
                    weights=spec.WeightsDescr(
                        pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
                            source=weights,
                            architecture=architecture,
                            pytorch_version=spec.Version(torch.__version__.split("+")[0]),
                        )
                    ),
                    config=spec.Config(
                        rmz_acq={
                            "name": loaded.name,
                            "weights_sha256": loaded.sha256,
                            "conditions": loaded.conditions,
                            "test_inputs_um": inputs_um,
                            "test_seed": EXPORT_SEED,
                            # how a scan with it stops and moves (calibrated weights chose theirs)
                            "scan_defaults": scan_defaults(loaded)._asdict(),
                        }
                    ),
                )
            except ValueError as exc:
                raise RmzError(f"the zoo description does not validate: {exc}") from exc
        if output.exists():
            if output.is_dir():
                shutil.rmtree(output)
            else:
                output.unlink()
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.suffix == ".zip":
            return Path(save_bioimageio_package(description, output_path=output))
        return Path(save_bioimageio_package_as_folder(description, output_path=output))
