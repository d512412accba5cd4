"""The Recurrent-MZ network, its losses, intensity normalisation and weights.

Names are loaded on first use, so ``rmz_acq.model.normalization`` (numpy
only) can be imported without torch, as the command line does at start-up.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .network import ConvGRU, NetworkConfig, RecurrentMZ, RecurrentState
    from .normalization import IntensityNormalization
    from .weights import PRESETS, LoadedModel, load_model, save_weights

__all__ = [
    "PRESETS",
    "ConvGRU",
    "IntensityNormalization",
    "LoadedModel",
    "NetworkConfig",
    "RecurrentMZ",
    "RecurrentState",
    "load_model",
    "save_weights",
]

_HOME = {
    "ConvGRU": "network",
    "NetworkConfig": "network",
    "RecurrentMZ": "network",
    "RecurrentState": "network",
    "IntensityNormalization": "normalization",
    "PRESETS": "weights",
    "LoadedModel": "weights",
    "load_model": "weights",
    "save_weights": "weights",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOME[name]}", __name__), name)
