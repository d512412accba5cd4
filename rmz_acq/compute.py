"""Where the network runs: a ``--device`` checked before any work starts."""

from __future__ import annotations

import torch

from .errors import InvalidValueError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device that exists here; default CUDA when present.

    Raises
    ------
    InvalidValueError
        Not a device name, or a GPU this machine does not have (the message
        says which devices there are).
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidValueError(
            f"--device {device!r} is not a device name; use cpu, cuda or cuda:N"
        ) from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidValueError(
                f"--device {device}: this machine has no CUDA GPU that torch can use "
                f"(torch {torch.__version__}); use --device cpu"
            )
        if resolved.index is not None and resolved.index >= count:
            raise InvalidValueError(
                f"--device {device}: this machine has {count} CUDA GPU(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
        return resolved
    if resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise InvalidValueError(f"--device {device}: Apple MPS is not available here")
        return resolved
    raise InvalidValueError(f"--device {device!r}: use cpu, cuda or cuda:N")
