"""The network as a BioImage Model Zoo architecture: frames and z in, a volume out."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..model.network import NetworkConfig, RecurrentMZ

__all__ = ["RecurrentMZVolume"]


class RecurrentMZVolume(nn.Module):
    """Recurrent-MZ as one call: ``(frames, frame_z_um, output_z_um) -> volume``.

    ``frames`` is ``(B, M, H, W)`` in camera units, ``frame_z_um`` ``(B, M)``
    the focus z of each frame and ``output_z_um`` ``(B, N)`` the z of each
    wanted plane, both in the same micrometre coordinates; the result is
    ``(B, N, H, W)`` float32 in the frames' units.  The frames are pushed in
    the order given (that order is part of the input, as in an adaptive
    scan), through the same `ReconstructionSession` as ``rmz-acq
    reconstruct``, so a zoo package and the command give the same volume.

    The constructor takes the network's architecture (`NetworkConfig`), which
    the zoo package stores as the architecture's keyword arguments; the
    weights are this module's ``state_dict`` (the network's, under
    ``network.``).
    """

    def __init__(
        self,
        base_channels: int = 8,
        depth: int = 4,
        norm: str = "none",
        dpm_scale_um: float = 5.0,
        intensity: str = "energy",
    ) -> None:
        super().__init__()
        config = NetworkConfig.from_dict(
            {
                "base_channels": str(base_channels),
                "depth": str(depth),
                "norm": norm,
                "dpm_scale_um": str(dpm_scale_um),
                "intensity": intensity,
            }
        )
        self.network = RecurrentMZ.from_config(config)

    @classmethod
    def wrapping(cls, network: RecurrentMZ) -> RecurrentMZVolume:
        """A module around ``network``'s architecture and weights."""
        config = network.config
        module = cls(
            base_channels=config.base_channels,
            depth=config.depth,
            norm=config.norm,
            dpm_scale_um=config.dpm_scale_um,
            intensity=config.intensity,
        )
        module.network.load_state_dict(network.state_dict())
        return module

    def forward(self, frames: Tensor, frame_z_um: Tensor, output_z_um: Tensor) -> Tensor:
        from ..session import ReconstructionSession

        if frames.ndim != 4:
            raise ValueError(
                f"frames must be (batch, frame, y, x), got shape {tuple(frames.shape)}"
            )
        if frame_z_um.shape != frames.shape[:2]:
            raise ValueError(
                f"frame_z_um must be (batch, frame) = {tuple(frames.shape[:2])}, "
                f"got {tuple(frame_z_um.shape)}"
            )
        if output_z_um.ndim != 2 or output_z_um.shape[0] != frames.shape[0]:
            raise ValueError(
                f"output_z_um must be (batch, plane) with batch {frames.shape[0]}, "
                f"got {tuple(output_z_um.shape)}"
            )
        volumes = []
        for images, z_frames, z_planes in zip(
            frames.detach().cpu().numpy(),
            frame_z_um.detach().cpu().numpy().astype(np.float64),
            output_z_um.detach().cpu().numpy().astype(np.float64),
            strict=True,
        ):
            session = ReconstructionSession(self.network, z_planes, device=frames.device)
            result = session.run(list(images), [float(z) for z in z_frames])
            volumes.append(result.volume.copy())
        return torch.from_numpy(np.stack(volumes)).to(frames.device)
