"""Image-quality and rate metrics: PSNR (8-bit RGB), MS-SSIM, bits per pixel, Bjontegaard delta rate."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

#: MS-SSIM with 5 scales and an 11-pixel window needs a side > (11 - 1) * 2**4 = 160.
MS_SSIM_MIN_SIDE = 161


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB per image of two (B, C, H, W) batches (mean squared error over C, H, W)."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """MS-SSIM per image of two (B, C, H, W) batches (torchmetrics; 5 scales, Gaussian window 11).

    Raises:
        ValueError: a side shorter than ``MS_SSIM_MIN_SIDE``.
    """
    if min(x.shape[-2:]) < MS_SSIM_MIN_SIDE:
        raise ValueError(f"ms_ssim: images need sides >= {MS_SSIM_MIN_SIDE}; got {tuple(x.shape[-2:])}")
    return multiscale_structural_similarity_index_measure(
        x.float(), y.float(), data_range=data_range, reduction="none"
    )


def bpp_from_likelihoods(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated bits per pixel per image: sum of -log2 likelihoods / (H * W)."""
    bits = sum(-torch.log2(lik).flatten(1).sum(dim=1) for lik in likelihoods.values())
    return bits / num_pixels


def bd_rate(rate_a: Sequence[float], metric_a: Sequence[float], rate_b: Sequence[float], metric_b: Sequence[float]) -> float:
    """Bjontegaard delta rate of codec B against anchor A in percent (negative: B needs fewer bits).

    Cubic fit of log(rate) as a function of the metric for both curves, integrated over the
    overlapping metric interval (VCEG-M33). Needs at least 4 points per curve.

    Raises:
        ValueError: fewer than 4 points, or the metric ranges do not overlap.
    """
    ra, ma, rb, mb = (np.asarray(v, dtype=np.float64) for v in (rate_a, metric_a, rate_b, metric_b))
    for name, rate, metric in (("anchor", ra, ma), ("test", rb, mb)):
        if rate.size < 4 or rate.size != metric.size:
            raise ValueError(f"bd_rate: the {name} curve needs >= 4 (rate, metric) pairs; got {rate.size}, {metric.size}")
    lo, hi = max(ma.min(), mb.min()), min(ma.max(), mb.max())
    if not lo < hi:
        raise ValueError(f"bd_rate: metric ranges do not overlap ({ma.min():.3f}..{ma.max():.3f} vs {mb.min():.3f}..{mb.max():.3f})")
    pa, pb = np.polyfit(ma, np.log(ra), 3), np.polyfit(mb, np.log(rb), 3)
    ia, ib = np.polyint(pa), np.polyint(pb)
    avg_a = (np.polyval(ia, hi) - np.polyval(ia, lo)) / (hi - lo)
    avg_b = (np.polyval(ib, hi) - np.polyval(ib, lo)) / (hi - lo)
    return float((math.exp(avg_b - avg_a) - 1) * 100)
