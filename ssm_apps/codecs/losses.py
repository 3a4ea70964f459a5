"""Rate-distortion losses of learned codecs (CompressAI's forms)."""
from __future__ import annotations

import torch
from torch import nn

from .metrics import bpp_from_likelihoods, ms_ssim

METRICS = ("mse", "ms-ssim")


class RateDistortionLoss(nn.Module):
    """``lambda * 255**2 * MSE + bpp`` ("mse") or ``lambda * (1 - MS-SSIM) + bpp`` ("ms-ssim").

    Args:
        metric: "mse" or "ms-ssim".

    ``forward(output, target, lmbda)``: ``output`` a CompressionModel's dict ("x_hat", "likelihoods"),
    ``target`` (B, 3, H, W) in [0, 1], ``lmbda`` a float or a (B,) tensor (one lambda per image, for
    variable-rate training). Returns a dict of scalars: "loss", "bpp_loss", "mse_loss" and, for
    "ms-ssim", "ms_ssim_loss" (1 - MS-SSIM).
    """

    def __init__(self, metric: str = "mse") -> None:
        super().__init__()
        if metric not in METRICS:
            raise ValueError(f"RateDistortionLoss: 'metric' must be one of {METRICS}; got {metric!r}")
        self.metric = metric

    def forward(self, output: dict, target: torch.Tensor, lmbda: float | torch.Tensor) -> dict[str, torch.Tensor]:
        num_pixels = target.shape[-2] * target.shape[-1]
        bpp = bpp_from_likelihoods(output["likelihoods"], num_pixels)  # (B,)
        mse = (output["x_hat"] - target).pow(2).flatten(1).mean(dim=1)  # (B,)
        lmbda = torch.as_tensor(lmbda, dtype=mse.dtype, device=mse.device)
        result = {"bpp_loss": bpp.mean(), "mse_loss": mse.mean()}
        if self.metric == "mse":
            distortion = 255**2 * mse
        else:
            distortion = 1 - ms_ssim(output["x_hat"].clamp(0, 1), target)
            result["ms_ssim_loss"] = distortion.mean()
        result["loss"] = (lmbda * distortion + bpp).mean()
        return result
