"""Reading a BioImage Model Zoo package that `rmz-acq export-bioimageio` wrote.

Only what rmz_acq itself exported is accepted (weights for
``rmz_acq.zoo.RecurrentMZVolume``): the package is read with ``zipfile`` and
``yaml`` and its weights with ``torch.load(weights_only=True)``, so no code
from the package runs and ``bioimageio`` need not be installed.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml

from ..errors import RmzError

__all__ = ["DESCRIPTION_NAMES", "is_zoo_package", "read_zoo_package"]

DESCRIPTION_NAMES = ("rdf.yaml", "bioimageio.yaml")
ARCHITECTURE = ("rmz_acq.zoo", "RecurrentMZVolume")
PREFIX = "network."


def _description_in(folder: Path) -> Path | None:
    for name in DESCRIPTION_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def is_zoo_package(path: Path) -> bool:
    """A zoo ``.zip``, a folder holding ``rdf.yaml``, or the ``rdf.yaml`` itself."""
    if path.is_dir():
        return _description_in(path) is not None
    if path.name in DESCRIPTION_NAMES or path.name.endswith(".bioimageio.yaml"):
        return path.is_file()
    return path.suffix == ".zip" and path.is_file()


class _Files:
    """The files of a package, from a zip archive or a folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        if path.is_file() and path.suffix == ".zip":
            try:
                self._zip = zipfile.ZipFile(path)
            except zipfile.BadZipFile as exc:
                raise RmzError(f"{path} is not a readable zip archive: {exc}") from exc
            names = set(self._zip.namelist())
            found = [n for n in DESCRIPTION_NAMES if n in names]
            if not found:
                self._zip.close()
                raise RmzError(
                    f"{path} holds no rdf.yaml: not a BioImage Model Zoo package "
                    "(make one with `rmz-acq export-bioimageio`)"
                )
            self.description = found[0]
            self.root = Path()
        else:
            description = path if path.is_file() else _description_in(path)
            assert description is not None
            self.description = description.name
            self.root = description.parent

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def read(self, name: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(name)
            return (self.root / name).read_bytes()
        except (KeyError, OSError) as exc:
            raise RmzError(f"{self.path}: the package names {name!r} but lacks it") from exc


def _contents(files: _Files, path: Path) -> tuple[Any, dict[str, Any], bytes]:
    """The description, its architecture entry and the weights' bytes."""
    try:
        description: Any = yaml.safe_load(files.read(files.description))
    except yaml.YAMLError as exc:
        raise RmzError(f"{path}: {files.description} is not valid YAML: {exc}") from exc
    weights = ((description or {}).get("weights") or {}).get("pytorch_state_dict")
    if not isinstance(weights, dict):
        raise RmzError(
            f"{path} has no pytorch_state_dict weights; rmz_acq reads only the packages "
            "`rmz-acq export-bioimageio` writes"
        )
    architecture = weights.get("architecture") or {}
    found = (architecture.get("import_from"), architecture.get("callable"))
    if found != ARCHITECTURE:
        raise RmzError(
            f"{path} holds a {'.'.join(str(p) for p in found)} network, not Recurrent-MZ from "
            f"rmz_acq ({'.'.join(ARCHITECTURE)}); rmz_acq cannot run it"
        )
    return description, architecture, files.read(str(weights.get("source", "")))


def read_zoo_package(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], bytes]:
    """The network's tensors, weights-file style metadata and the weights' bytes.

    Raises
    ------
    RmzError
        Not a zoo package, a package of another architecture, or weights that
        cannot be read safely.
    """
    files = _Files(path)
    try:
        description, architecture, raw = _contents(files, path)
    finally:
        files.close()
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        raise RmzError(f"{path}: its weights cannot be loaded safely: {exc}") from exc
    if not isinstance(state, dict):
        raise RmzError(f"{path}: its weights are not a state dict")
    tensors = {
        key.removeprefix(PREFIX): value
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
    }
    kwargs = architecture.get("kwargs") or {}
    ours = ((description.get("config") or {}).get("rmz_acq")) or {}
    metadata = {key: str(value) for key, value in kwargs.items()}
    metadata["name"] = str(ours.get("name", path.stem))
    metadata["conditions"] = json.dumps(ours.get("conditions") or {})
    if ours.get("scan_defaults"):
        metadata["scan_defaults"] = json.dumps(ours["scan_defaults"])
    return tensors, metadata, raw
