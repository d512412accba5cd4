"""The Recurrent-MZ network, its losses, intensity normalisation and weights."""

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
