"""Weights on disk: safetensors with the architecture and provenance as metadata.

A weights file is self-describing: its metadata holds the `NetworkConfig`,
the imaging conditions it was trained for and a format tag, so loading never
needs to guess, and loading never runs code (safetensors stores tensors only).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import RmzError
from ..linear_blend import BLEND_KEY, TENSOR_KEY, LinearBlend
from .network import NetworkConfig, RecurrentMZ
from .zoo_package import is_zoo_package, read_zoo_package

BLEND_PREFIX = BLEND_KEY + "."  # the linear blend's tensors, beside the network's

__all__ = [
    "PRESETS",
    "LoadedModel",
    "average_weights",
    "load_model",
    "save_weights",
    "training_stages",
]

FORMAT = "rmz_acq.recurrent_mz/1"
PRESETS = ("beads", "nuclei", "widefield")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference and where it came from."""

    model: RecurrentMZ
    name: str
    sha256: str
    path: Path
    conditions: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    # a linear filter fitted on z-stacks (the user's, or the preset's training
    # mixture), blended with the network's output (`rmz_acq.linear_blend`)
    linear_blend: LinearBlend | None = None

    @property
    def trained_frames(self) -> int | None:
        """The most frames a training sequence had (``max_inputs``); None when not recorded."""
        try:
            value = json.loads(self.metadata.get("training") or "{}").get("max_inputs")
        except (AttributeError, ValueError):
            return None
        return int(value) if isinstance(value, int) and value > 0 else None


def training_stages(metadata: dict[str, str]) -> list[dict[str, Any]]:
    """The training settings of every stage a weights file records, oldest first.

    The last stage's are under ``training``; a stage started from other
    weights (``--init``) keeps theirs under ``earlier_training``. Files from
    before that key record their last stage only.
    """
    try:
        stages = json.loads(metadata.get("earlier_training") or "[]")
        if metadata.get("training"):
            stages.append(json.loads(metadata["training"]))
    except (AttributeError, ValueError) as err:
        raise RmzError(f"the training record in the weights' metadata is not JSON: {err}") from err
    return [s for s in stages if isinstance(s, dict)]


def save_weights(
    model: RecurrentMZ,
    path: str | Path,
    *,
    name: str,
    conditions: dict[str, Any] | None = None,
    extra: dict[str, str] | None = None,
    linear_blend: LinearBlend | None = None,
) -> Path:
    """Write ``model``'s weights and description as safetensors (and a linear blend)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT,
        "name": name,
        "conditions": json.dumps(conditions or {}),
        **model.config.as_dict(),
        **(extra or {}),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if linear_blend is not None:
        blend_metadata, blend_tensors = linear_blend.to_disk()
        metadata.update(blend_metadata)
        tensors.update(blend_tensors)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def average_weights(
    models: Sequence[LoadedModel], fractions: Sequence[float] | None = None
) -> RecurrentMZ:
    """The weighted mean of several weights of one architecture, parameter by parameter.

    Weights fine-tuned from one starting point (a preset and a stage trained
    from it, or a fine-tune on your own stacks) average into one network that
    keeps much of what each learnt; weights trained apart do not, and nothing
    here can tell.

    Raises
    ------
    RmzError
        Fewer than two models, fractions that are not one positive number per
        model summing to 1, or models of different architectures.
    """
    if len(models) < 2:
        raise RmzError(f"averaging needs two or more weights, got {len(models)}")
    if fractions is None:
        fractions = [1.0 / len(models)] * len(models)
    if len(fractions) != len(models) or any(not f > 0 for f in fractions):
        raise RmzError(
            f"fractions {list(fractions)!r}: give one positive fraction per model "
            f"({len(models)} of them), e.g. {','.join(['0.5'] * 2)} for two"
        )
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise RmzError(
            f"fractions {list(fractions)!r} sum to {sum(fractions):g}: make them sum to 1"
        )
    first = models[0]
    for other in models[1:]:
        if other.model.config != first.model.config:
            raise RmzError(
                f"{other.path} is a {other.model.config} network and {first.path} a "
                f"{first.model.config}: only weights of one architecture average"
            )
    states = [m.model.state_dict() for m in models]
    mean = {
        key: sum(f * s[key].double() for f, s in zip(fractions, states, strict=True)).to(v.dtype)
        if v.is_floating_point()
        else v
        for key, v in states[0].items()
    }
    network = RecurrentMZ.from_config(first.model.config)
    network.load_state_dict(mean)
    return network


def preset_path(name: str) -> Path:
    return Path(str(resources.files("rmz_acq") / "presets" / f"{name}.safetensors"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise RmzError(f"{path} is not a weights file (a folder without rdf.yaml?)")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:  # type: ignore[no-untyped-call]
            metadata = dict(fh.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise RmzError(
            f"{path} is not a readable weights file (corrupt or truncated?): {exc}"
        ) from exc
    if metadata.get("format") != FORMAT:
        raise RmzError(
            f"{path} is not an rmz_acq weights file (format {metadata.get('format')!r}, "
            f"expected {FORMAT!r}); train one with `rmz-acq train`"
        )
    return tensors, metadata


def load_model(name_or_path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Load a shipped preset (``beads``, ``nuclei``, ``widefield``), weights or a zoo package.

    A zoo package is a ``.zip`` (or its folder) from `rmz-acq export-bioimageio`;
    its checksum is its weights file's, so an archive and the folder it unpacks to
    are the same model.

    Raises
    ------
    RmzError
        Unknown preset, missing file, corrupt file, a file of another format,
        non-finite weights, weights that do not fit the architecture they
        claim, or a ``device`` this machine does not have.
    """
    from ..compute import resolve_device

    device = resolve_device(device)
    text = str(name_or_path)
    if text in PRESETS:
        path = preset_path(text)
        if not path.is_file():
            raise RmzError(f"preset {text!r} is not installed ({path} is missing)")
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise RmzError(
                f"unknown model {text!r}: give a shipped preset ({', '.join(PRESETS)}), "
                "the path of a .safetensors weights file or a BioImage Model Zoo package "
                "from `rmz-acq export-bioimageio`"
            )
    if is_zoo_package(path):
        tensors, metadata, raw = read_zoo_package(path)
        sha256 = hashlib.sha256(raw).hexdigest()
    else:
        tensors, metadata = _read_safetensors(path)
        sha256 = _sha256(path)
    damaged = [
        name
        for name, tensor in tensors.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if damaged:
        raise RmzError(
            f"{path} holds non-finite weights (NaN or inf) in {len(damaged)} tensor(s), "
            f"e.g. {damaged[0]}: the file is damaged or its training diverged; "
            "use a preset or train again"
        )
    try:
        config = NetworkConfig.from_dict(metadata)
    except (KeyError, ValueError) as exc:
        raise RmzError(f"{path} has an incomplete architecture description: {exc}") from exc
    blend_tensors = {k: tensors.pop(k) for k in list(tensors) if k.startswith(BLEND_PREFIX)}
    blend = LinearBlend.from_disk(metadata, blend_tensors) if TENSOR_KEY in blend_tensors else None
    model = RecurrentMZ.from_config(config)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise RmzError(f"{path} holds weights for another architecture: {first}") from exc
    model.eval().to(device)
    conditions = json.loads(metadata.get("conditions", "{}") or "{}")
    return LoadedModel(
        model=model,
        name=metadata.get("name", path.stem),
        sha256=sha256,
        path=path,
        conditions=conditions,
        metadata=metadata,
        linear_blend=blend,
    )
