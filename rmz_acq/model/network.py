"""The Recurrent-MZ network (paper section 4.2, eqs. 1-6) in PyTorch.

One step takes one 2D frame and its digital propagation matrix (DPM: the
distance in micrometres from the frame's measured z to the wanted output
plane, a constant image) and updates a convolutional GRU at every scale of a
U-Net-like encoder-decoder.  After any number of steps, `decode` turns the
recurrent state into the image of the output plane.

The module holds no per-run state: `init_state`, `step` and `decode` pass
the state in and out, and `forward` runs a whole sequence for training.

Normalisation layers are a choice (``norm``).  The shipped presets use none:
batch statistics gathered on training crops do not describe full frames (a
model trained that way scored 4 dB below linear interpolation until its
statistics were re-estimated), and without them the network is a pure
translation-equivariant function of its inputs, so a crop of the output
equals the output of the crop away from the border, which is what lets the
session tile large frames exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, cast

import torch
from torch import Tensor, nn

from .normalization import INTENSITY_METHODS, IntensityMethod

__all__ = [
    "ConvGRU",
    "NetworkConfig",
    "RecurrentMZ",
    "RecurrentState",
    "grow_depth",
    "grow_width",
]

Norm = Literal["none", "batch"]


@dataclass(frozen=True)
class NetworkConfig:
    """Constructor arguments of `RecurrentMZ`, stored beside the weights."""

    base_channels: int = 8
    depth: int = 4
    norm: Norm = "none"
    dpm_scale_um: float = 5.0
    # How frames are put on the network's scale (`normalization`); part of
    # what the weights learnt, so it travels with them.
    intensity: IntensityMethod = "energy"

    def as_dict(self) -> dict[str, str]:
        return {
            "base_channels": str(self.base_channels),
            "depth": str(self.depth),
            "norm": self.norm,
            "dpm_scale_um": repr(self.dpm_scale_um),
            "intensity": self.intensity,
        }

    @classmethod
    def from_dict(cls, values: dict[str, str]) -> NetworkConfig:
        norm = values.get("norm", "none")
        if norm not in ("none", "batch"):
            raise ValueError(f"unknown norm {norm!r}")
        # Weights written before the choice existed were trained on "triangle".
        intensity = values.get("intensity", "triangle")
        if intensity not in INTENSITY_METHODS:
            raise ValueError(f"unknown intensity method {intensity!r}")
        return cls(
            base_channels=int(values["base_channels"]),
            depth=int(values["depth"]),
            norm=norm,  # type: ignore[arg-type]
            dpm_scale_um=float(values["dpm_scale_um"]),
            intensity=intensity,  # type: ignore[arg-type]
        )


class RecurrentState(NamedTuple):
    """Recurrent state of a batch of output planes.

    ``hidden[k]`` is the GRU state at scale ``k`` (``(B, C_k, H/2^k, W/2^k)``).
    ``skips`` are the last step's skip features ``s_k`` (eq. 2), needed by
    `RecurrentMZ.decode`; a caller that decodes right after each step may
    drop them between steps to halve the memory it keeps.
    """

    hidden: tuple[Tensor, ...]
    skips: tuple[Tensor, ...] | None = None


def _conv(in_channels: int, out_channels: int, kernel: int = 3, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=bias)


def _norm(kind: Norm, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, each followed by normalisation and ReLU (eqs. 1, 3)."""

    def __init__(self, *, in_channels: int, mid_channels: int, out_channels: int, norm: Norm):
        super().__init__()
        self.layers = nn.Sequential(
            _conv(in_channels, mid_channels, bias=norm == "none"),
            _norm(norm, mid_channels),
            nn.ReLU(inplace=True),
            _conv(mid_channels, out_channels, bias=norm == "none"),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # type: ignore[no-any-return]


class ConvGRU(nn.Module):
    """Convolutional GRU, eqs. 4-6: ``h_t = ConvGRU(x_t, h_{t-1})``.

    ``f = sigmoid(W_f * x + U_f * h + b_f)``,
    ``h_hat = tanh(W_h * x + U_h * (f . h) + b_h)``,
    ``h_t = (1 - f) . h + f . h_hat``.
    """

    def __init__(self, *, channels: int):
        super().__init__()
        self.input_gates = _conv(channels, 2 * channels)  # W_f, W_h and b_f, b_h
        self.hidden_forget = _conv(channels, channels, bias=False)  # U_f
        self.hidden_candidate = _conv(channels, channels, bias=False)  # U_h

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        from_x_f, from_x_h = self.input_gates(x).chunk(2, dim=1)
        f = torch.sigmoid(from_x_f + self.hidden_forget(h))
        candidate = torch.tanh(from_x_h + self.hidden_candidate(f * h))
        return h + f * (candidate - h)


class RecurrentMZ(nn.Module):
    """Recurrent-MZ: frames at arbitrary z in, the image at a chosen z out.

    Parameters
    ----------
    base_channels
        Channels at full resolution; scale ``k`` (0-based) has
        ``base_channels * 2**k`` (the paper uses 20).
    depth
        Number of scales; the frame's height and width must be multiples of
        ``2**(depth - 1)`` (the session pads).
    norm
        ``"none"`` (default) or ``"batch"`` (the paper's batch normalisation).
    dpm_scale_um
        The DPM channel is ``dz_um / dpm_scale_um``, keeping it of order one.
    intensity
        How the session normalises frames for this network
        (`normalization.IntensityMethod`); the network itself only sees the
        normalised frames.
    """

    @classmethod
    def from_config(cls, config: NetworkConfig) -> RecurrentMZ:
        """A fresh network of the architecture ``config`` describes (weights not loaded)."""
        return cls(
            base_channels=config.base_channels,
            depth=config.depth,
            norm=config.norm,
            dpm_scale_um=config.dpm_scale_um,
            intensity=config.intensity,
        )

    def __init__(
        self,
        *,
        base_channels: int = 8,
        depth: int = 4,
        norm: Norm = "none",
        dpm_scale_um: float = 5.0,
        intensity: IntensityMethod = "energy",
    ):
        super().__init__()
        if base_channels < 2 or depth < 1:
            raise ValueError(
                f"base_channels must be >= 2 and depth >= 1, got {base_channels}, {depth}"
            )
        self.config = NetworkConfig(base_channels, depth, norm, dpm_scale_um, intensity)
        channels = [base_channels * 2**k for k in range(depth)]
        self.channels = tuple(channels)
        self.pool = nn.MaxPool2d(2)
        self.encoders = nn.ModuleList()
        previous = 2  # the frame and its DPM
        for c in channels:
            self.encoders.append(
                ConvBlock(
                    in_channels=previous, mid_channels=max(c // 2, 2), out_channels=c, norm=norm
                )
            )
            previous = c
        self.recurrent = nn.ModuleList(ConvGRU(channels=c) for c in channels)
        self.skip_mix = nn.ModuleList(_conv(c, c, kernel=1) for c in channels)  # Conv_{k,3}
        self.decoders = nn.ModuleList(
            ConvBlock(
                in_channels=channels[k + 1] + channels[k],
                mid_channels=channels[k],
                out_channels=channels[k],
                norm=norm,
            )
            for k in range(depth - 1)
        )
        self.head = _conv(channels[0], 1, kernel=1)

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this."""
        return 2 ** (self.config.depth - 1)

    def receptive_radius(self) -> int:
        """An upper bound on how far (pixels) one step's output sees.

        Per scale k: two encoder, two GRU and two decoder 3x3 convolutions at
        stride 2**k, plus the pooling and up-sampling offsets.
        """
        depth = self.config.depth
        return 6 * (2**depth - 1) + 2**depth

    def init_state(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> RecurrentState:
        """All-zero hidden state for ``batch`` output planes of a frame size."""
        self._check_size(height, width)
        hidden = tuple(
            torch.zeros(batch, c, height >> k, width >> k, device=device, dtype=dtype)
            for k, c in enumerate(self.channels)
        )
        return RecurrentState(hidden)

    def _check_size(self, height: int, width: int) -> None:
        if height % self.multiple or width % self.multiple:
            raise ValueError(
                f"frame size {height} x {width} must be a multiple of {self.multiple} "
                f"(2**(depth-1)); pad the frame"
            )

    def step(self, frame: Tensor, dpm_um: Tensor, state: RecurrentState) -> RecurrentState:
        """Advance the state by one input frame.

        Parameters
        ----------
        frame
            ``(B, 1, H, W)`` normalised frame (see `normalization`).
        dpm_um
            ``(B,)`` output-plane z minus the frame's measured z, micrometres.
        state
            From `init_state` or a previous `step`.
        """
        if frame.ndim != 4 or frame.shape[1] != 1:
            raise ValueError(f"frame must be (B, 1, H, W), got {tuple(frame.shape)}")
        batch, _, height, width = frame.shape
        if dpm_um.shape != (batch,):
            raise ValueError(f"dpm_um must be ({batch},), got {tuple(dpm_um.shape)}")
        if len(state.hidden) != self.config.depth or state.hidden[0].shape[0] != batch:
            raise ValueError(
                f"state holds {len(state.hidden)} scales of batch "
                f"{state.hidden[0].shape[0] if state.hidden else 0}; expected "
                f"{self.config.depth} scales of batch {batch}"
            )
        self._check_size(height, width)
        dpm = (dpm_um.to(frame.dtype) / self.config.dpm_scale_um).view(batch, 1, 1, 1)
        x = torch.cat([frame, dpm.expand(batch, 1, height, width)], dim=1)
        hidden, skips = [], []
        for k, (encoder, gru, mix) in enumerate(
            zip(self.encoders, self.recurrent, self.skip_mix, strict=True)
        ):
            x = encoder(x if k == 0 else self.pool(x))
            h = gru(x, state.hidden[k].to(x.dtype))
            hidden.append(h)
            skips.append(x + mix(h))  # eq. 2
        return RecurrentState(tuple(hidden), tuple(skips))

    def decode(self, state: RecurrentState) -> Tensor:
        """The output plane ``(B, 1, H, W)`` (normalised units) from a state."""
        if state.skips is None:
            raise ValueError("decode needs the skips of the last step; call step first")
        y = state.skips[-1]
        for k in range(self.config.depth - 2, -1, -1):
            up = nn.functional.interpolate(y, scale_factor=2.0, mode="nearest")
            y = self.decoders[k](torch.cat([up, state.skips[k]], dim=1))
        return self.head(y)  # type: ignore[no-any-return]

    def forward(self, frames: Tensor, dpm_um: Tensor) -> Tensor:
        """Run whole sequences: ``frames (B, M, H, W)``, ``dpm_um (B, M)`` -> ``(B, 1, H, W)``."""
        if frames.ndim != 4 or dpm_um.shape != frames.shape[:2]:
            raise ValueError(
                f"frames must be (B, M, H, W) and dpm_um (B, M); got "
                f"{tuple(frames.shape)} and {tuple(dpm_um.shape)}"
            )
        batch, steps, height, width = frames.shape
        if steps < 1:
            raise ValueError("a sequence needs at least one frame")
        state = self.init_state(batch, height, width, device=frames.device, dtype=frames.dtype)
        for t in range(steps):
            state = self.step(frames[:, t : t + 1], dpm_um[:, t], state)
        return self.decode(state)


def grow_depth(model: RecurrentMZ, depth: int, *, shift: float = 1.0) -> RecurrentMZ:
    """A network one or more scales deeper that starts out computing what ``model`` does.

    Training a deeper network from scratch repeats all the training that
    went into ``model``; growing it keeps that and adds coarser scales, which
    see farther (each scale doubles the reach of its convolutions: a bead
    2 um out of focus at NA 1.4 spreads over a disc about 50 px in radius).

    The new scales' encoders, GRUs and skip mixes start at PyTorch's default
    initialisation, but the new decoder block's weights on them start at
    zero, so they add nothing until training moves those weights (their
    gradient is not zero).  The new decoder block passes the old deepest
    skip through as identity convolutions; its ReLUs would clip the negative
    part, so the features travel lifted by ``shift`` and the next decoder's
    bias takes the lift off again.  The result equals ``model``'s farther
    than ``model.receptive_radius()`` from the frame border (the zero padding
    there is not lifted), as long as no deepest skip feature falls below
    ``-shift``.
    """
    old = model.config
    if depth <= old.depth:
        raise ValueError(f"a grown network must be deeper than {old.depth} scales, not {depth}")
    if old.norm != "none":
        raise ValueError("only networks without normalisation layers can be grown")
    grown = RecurrentMZ(
        base_channels=old.base_channels,
        depth=depth,
        norm=old.norm,
        dpm_scale_um=old.dpm_scale_um,
        intensity=old.intensity,
    ).to(next(model.parameters()).device)
    grown.load_state_dict(model.state_dict(), strict=False)  # the new scales are missing
    k = old.depth - 1  # the old deepest scale, whose decoder block is new
    c_up, c = grown.channels[k + 1], grown.channels[k]
    block = cast(ConvBlock, grown.decoders[k]).layers
    first, second = cast(nn.Conv2d, block[0]), cast(nn.Conv2d, block[3])
    # the layer that took the old deepest skip: the next decoder block, or the head
    above = (
        cast(nn.Conv2d, cast(ConvBlock, grown.decoders[k - 1]).layers[0]) if k > 0 else grown.head
    )
    with torch.no_grad():  # without normalisation layers every convolution has a bias
        first.weight.zero_()
        second.weight.zero_()
        cast(Tensor, second.bias).zero_()
        # input channels of ``first``: [up-sampled new scale (c_up), old deepest skip (c)]
        channel = torch.arange(c)
        first.weight[channel, c_up + channel, 1, 1] = 1.0
        cast(Tensor, first.bias).fill_(shift)
        second.weight[channel, channel, 1, 1] = 1.0
        # ``above`` reads the skip lifted by ``shift`` in its first ``c`` input channels
        cast(Tensor, above.bias).sub_(shift * above.weight[:, :c].sum(dim=(1, 2, 3)))
    return grown


def grow_width(model: RecurrentMZ, base_channels: int) -> RecurrentMZ:
    """A network with more channels at every scale that starts out computing what ``model`` does.

    Each of ``model``'s channels keeps its place (first in its group; the
    GRU's forget and candidate halves and the decoders' concatenated inputs
    each keep theirs) and its weights, and reads nothing from the new
    channels: its weights on them start at zero.  The new channels start at
    PyTorch's default initialisation and read everything, so nothing reads
    them until training moves those zero weights (their gradient is not
    zero).  The result equals ``model`` everywhere, the border included.
    Widening every scale by ``w = base_channels / model.config.base_channels``
    costs about ``w**2`` times as much per step.
    """
    old = model.config
    if base_channels <= old.base_channels:
        raise ValueError(
            f"a grown network must have more than {old.base_channels} base channels, "
            f"not {base_channels}"
        )
    if old.norm != "none":
        raise ValueError("only networks without normalisation layers can be grown")
    wide = RecurrentMZ(
        base_channels=base_channels,
        depth=old.depth,
        norm=old.norm,
        dpm_scale_um=old.dpm_scale_um,
        intensity=old.intensity,
    ).to(next(model.parameters()).device)

    def prefix(n: int) -> Tensor:
        return torch.arange(n)

    def halves(n_old: int, n_new: int) -> Tensor:  # [first half, second half] of 2 n channels
        return torch.cat([torch.arange(n_old), n_new + torch.arange(n_old)])

    def concat(a_old: int, a_new: int, b_old: int) -> Tensor:  # [a channels, b channels]
        return torch.cat([torch.arange(a_old), a_new + torch.arange(b_old)])

    def copy(small: nn.Module, big: nn.Module, rows: Tensor, cols: Tensor) -> None:
        small_conv, big_conv = cast(nn.Conv2d, small), cast(nn.Conv2d, big)
        big_conv.weight[rows] = 0.0  # the kept channels read nothing new...
        big_conv.weight[rows[:, None], cols] = small_conv.weight  # ...and what they read before
        if small_conv.bias is not None:
            cast(Tensor, big_conv.bias)[rows] = small_conv.bias

    c_old, c_new = model.channels, wide.channels
    with torch.no_grad():
        for k in range(old.depth):
            enc_old = cast(ConvBlock, model.encoders[k]).layers
            enc_new = cast(ConvBlock, wide.encoders[k]).layers
            mid_old = cast(nn.Conv2d, enc_old[0]).out_channels
            inputs = prefix(2 if k == 0 else c_old[k - 1])
            copy(enc_old[0], enc_new[0], prefix(mid_old), inputs)
            copy(enc_old[3], enc_new[3], prefix(c_old[k]), prefix(mid_old))
            gru_old, gru_new = cast(ConvGRU, model.recurrent[k]), cast(ConvGRU, wide.recurrent[k])
            channels = prefix(c_old[k])
            copy(gru_old.input_gates, gru_new.input_gates, halves(c_old[k], c_new[k]), channels)
            copy(gru_old.hidden_forget, gru_new.hidden_forget, channels, channels)
            copy(gru_old.hidden_candidate, gru_new.hidden_candidate, channels, channels)
            copy(model.skip_mix[k], wide.skip_mix[k], channels, channels)
        for k in range(old.depth - 1):
            dec_old = cast(ConvBlock, model.decoders[k]).layers
            dec_new = cast(ConvBlock, wide.decoders[k]).layers
            inputs = concat(c_old[k + 1], c_new[k + 1], c_old[k])
            copy(dec_old[0], dec_new[0], prefix(c_old[k]), inputs)
            copy(dec_old[3], dec_new[3], prefix(c_old[k]), prefix(c_old[k]))
        copy(model.head, wide.head, prefix(1), prefix(c_old[0]))
    return wide
