"""BioImage Model Zoo packages: the network's zoo architecture and the exporter."""

from .module import RecurrentMZVolume

__all__ = ["RecurrentMZVolume"]
