"""Channel-first layers: ``LayerNorm2d`` and ``Linear2d`` over dim 1 of (B, C, *spatial) maps.

"2d" follows timm's naming of channel-first layers; both take 2-D (B, C, H, W) and 3-D
(B, C, D, H, W) maps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LayerNorm2d", "Linear2d"]


class Linear2d(nn.Linear):
    """nn.Linear over the channels of a (B, C, H, W) or (B, C, D, H, W) map: a 1x1 (x1) convolution
    keeping the Linear's 2-D weight (so official ``Linear2d`` state dicts load unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:
            return F.conv3d(x, self.weight[:, :, None, None, None], self.bias)
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) or (B, C, D, H, W) map (contiguous or
    channels-last memory).

    Under autocast the norm runs in the autocast dtype (statistics still accumulated in float32
    by the kernel) instead of autocast's float32 round trip, as timm's "fast norm" does: in a
    VMamba-T bf16 training step on an H100 the float32 casts and norm kernels were a quarter of
    the GPU time. Without autocast (e.g. fp32 evaluation) it is exactly ``F.layer_norm``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)
        device = x.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
            weight = None if self.weight is None else self.weight.to(dtype)
            bias = None if self.bias is None else self.bias.to(dtype)
            with torch.autocast(device, enabled=False):
                x = F.layer_norm(x.to(dtype), self.normalized_shape, weight, bias, self.eps)
        else:
            x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1)
