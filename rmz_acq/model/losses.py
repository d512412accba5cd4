"""Training losses of eq. 7: BerHu (eq. 9), multi-scale SSIM (eq. 8) and the
optional least-squares adversarial term with its discriminator (eq. 10).

The total is ``alpha BerHu + beta (1 - MS-SSIM) + gamma [D(y_hat) - 1]^2``.
The paper weighs them 3, 1 and 0.5; here gamma defaults to 0 (no
discriminator): the adversarial term sharpens output but makes short
training runs less stable, so it is opt-in (``rmz-acq train
--adversarial-weight``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Discriminator",
    "berhu",
    "discriminator_loss",
    "generator_adversarial_loss",
    "lowpass_error",
    "ms_ssim",
    "order_gap",
    "reconstruction_loss",
    "rescale_knee",
]

# Wang et al. 2003 scale weights (5 scales); fewer scales renormalise them.
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def berhu(
    prediction: Tensor, target: Tensor, c: float = 0.1, weight: Tensor | None = None
) -> Tensor:
    """Reverse Huber loss, eq. 9: L1 below ``c``, scaled L2 above; mean over pixels.

    ``weight`` (broadcastable to the images) lets sparse bright structure
    count as much as the background it sits in.
    """
    diff = (prediction - target).abs()
    loss = torch.where(diff <= c, diff, (diff * diff + c * c) / (2 * c))
    if weight is not None:
        return (loss * weight).sum() / weight.expand_as(loss).sum()
    return loss.mean()


def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def _ssim_parts(
    x: Tensor, y: Tensor, window: Tensor, c1: float, c2: float
) -> tuple[Tensor, Tensor]:
    mu_x = F.conv2d(x, window)
    mu_y = F.conv2d(y, window)
    sxx = F.conv2d(x * x, window) - mu_x**2
    syy = F.conv2d(y * y, window) - mu_y**2
    sxy = F.conv2d(x * y, window) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    contrast_structure = (2 * sxy + c2) / (sxx + syy + c2)
    return luminance.mean(dim=(1, 2, 3)), contrast_structure.mean(dim=(1, 2, 3))


def ms_ssim(
    x: Tensor, y: Tensor, *, data_range: float = 1.0, scales: int = 3, window: int = 7
) -> Tensor:
    """Multi-scale SSIM (eq. 8) per image, ``(B,)``, for ``(B, 1, H, W)`` inputs.

    Contrast-structure terms at every scale, luminance at the coarsest, with
    the standard weights renormalised to ``scales``.  Negative similarities
    are clamped to a small positive value so the product stays defined.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ms_ssim needs two (B, 1, H, W) tensors, got {x.shape} and {y.shape}")
    smallest = min(x.shape[-2:]) // 2 ** (scales - 1)
    if smallest < window:
        raise ValueError(
            f"images of {tuple(x.shape[-2:])} are too small for {scales} scales "
            f"with a {window}-pixel window"
        )
    weights = torch.tensor(_MS_SSIM_WEIGHTS[:scales], device=x.device, dtype=x.dtype)
    weights = weights / weights.sum()
    g = _gaussian_window(window, 1.5, x.device, x.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    result = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
    for s in range(scales):
        luminance, cs = _ssim_parts(x, y, g, c1, c2)
        if s == scales - 1:
            result = result * (luminance * cs).clamp_min(1e-4) ** weights[s]
        else:
            result = result * cs.clamp_min(1e-4) ** weights[s]
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return result


def reconstruction_loss(
    prediction: Tensor,
    target: Tensor,
    *,
    alpha: float = 3.0,
    beta: float = 1.0,
    foreground_weight: float = 0.0,
    ms_ssim_scales: int = 3,
) -> Tensor:
    """``alpha BerHu + beta (1 - MS-SSIM)``: eq. 7 before its adversarial term.

    With ``foreground_weight > 0``, pixels of the target above half its
    per-image maximum weigh ``1 + foreground_weight`` in BerHu.
    """
    weight = None
    if foreground_weight > 0:
        peak = target.amax(dim=(1, 2, 3), keepdim=True)
        weight = 1.0 + foreground_weight * (target > 0.5 * peak).to(target.dtype)
    loss = alpha * berhu(prediction, target, weight=weight)
    if beta == 0:
        return loss
    data_range = float((target.amax() - target.amin()).clamp_min(1e-3))
    similarity = ms_ssim(prediction, target, data_range=data_range, scales=ms_ssim_scales)
    return loss + beta * (1 - similarity).mean()


LOWPASS_PX = 8  # `lowpass_error`'s block: 0.8 um at 0.1 um pixels, keeps periods of 1.6 um up


def lowpass_error(prediction: Tensor, target: Tensor, block_px: int = LOWPASS_PX) -> Tensor:
    """Mean squared difference of the two images averaged over ``block_px`` blocks.

    Most of a wide-field volume's squared error between the frames lies in
    its slowly varying part, the out-of-focus light (periods of 1.6-25 um
    at 0.1 um pixels), where BerHu's linear part and MS-SSIM's local
    windows weigh it less than a PSNR does; this term weighs it as a PSNR
    does. Images smaller than a block are averaged whole.
    """
    block = max(1, min(block_px, prediction.shape[-2], prediction.shape[-1]))
    return F.avg_pool2d(prediction - target, block).pow(2).mean()


def rescale_knee(values: Tensor, knee: float, new_knee: float) -> Tensor:
    """Values compressed as ``k * asinh(v / k)`` with ``knee``, recompressed with ``new_knee``.

    ``knee = 0`` means linear values.  The energy intensities feed the
    network with a knee of 3 (linear below, logarithmic above), so an error
    on bright structure weighs far less in a loss on that scale than in a
    PSNR on the camera's linear scale; a loss on a wider knee weighs it more
    as the score does, while still taming a soma hundreds of times the mean.
    """
    linear = knee * torch.sinh(values / knee) if knee > 0 else values
    return new_knee * torch.asinh(linear / new_knee) if new_knee > 0 else linear


def order_gap(prediction: Tensor) -> Tensor:
    """Mean absolute difference of entries 2k and 2k + 1 of ``prediction``.

    Training batches with `Batch.pairs` hold each sequence twice, in two
    frame orders, with the same target: this is how far the two orders'
    planes fall apart, the frame-order dependence a consistency term removes.
    """
    if prediction.shape[0] % 2:
        raise ValueError(f"order pairs need an even batch, not {prediction.shape[0]}")
    return (prediction[0::2] - prediction[1::2]).abs().mean()


class Discriminator(nn.Module):
    """Critic of the adversarial term: scores patches of a plane as real (1) or inferred (0).

    Strided 4 x 4 convolutions with leaky ReLU, so each score sees a patch
    of 78 px (its receptive field), enough to judge whether a bead or a
    nucleus edge is in focus; the output is a map of patch scores
    ``(B, 1, H / 16, W / 16)``.
    Used only during training; it is not saved with the weights.
    """

    def __init__(self, channels: int = 16, layers: int = 4) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width_in = 1
        for i in range(layers):
            width_out = channels * 2 ** min(i, 2)
            blocks += [nn.Conv2d(width_in, width_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            width_in = width_out
        blocks.append(nn.Conv2d(width_in, 1, 3, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, image: Tensor) -> Tensor:
        return self.net(image)


def generator_adversarial_loss(fake_scores: Tensor) -> Tensor:
    """``[D(y_hat) - 1]^2`` of eq. 7, averaged over patches and images."""
    return ((fake_scores - 1) ** 2).mean()


def discriminator_loss(fake_scores: Tensor, real_scores: Tensor) -> Tensor:
    """Eq. 10: ``D(y_hat)^2 / 2 + [D(y) - 1]^2 / 2``, averaged."""
    return 0.5 * (fake_scores**2).mean() + 0.5 * ((real_scores - 1) ** 2).mean()
