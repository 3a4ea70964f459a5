"""Channel-first LayerNorm in PyTorch: the permute -> ``F.layer_norm`` -> permute path.

The reference path of ``layer_norm_2d`` (``backend="torch"``) and its CPU backend: statistics over
C of a (B, C, H, W) map, exactly as ``LayerNorm2d`` computes them. Under autocast the input, weight
and bias are cast to the autocast dtype and the norm runs in it (float32 statistics inside the
kernel), instead of autocast's float32 round trip; without autocast it is plain ``F.layer_norm``.
The output is the permuted view of a channels-last result (channels_last memory, (B, C, H, W) shape).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def layer_norm_2d_torch(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    """LayerNorm over the channels of ``x`` through a permuted ``F.layer_norm``.

    Args:
        x: (B, C, H, W) map.
        weight: (C,) scale or None.
        bias: (C,) shift or None.
        eps: added to the variance.

    Returns:
        (B, C, H, W) normalised map, in the autocast dtype under autocast, else x's dtype.
    """
    shape = (x.shape[1],)
    x = x.permute(0, 2, 3, 1)
    device = x.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        weight = None if weight is None else weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
        with torch.autocast(device, enabled=False):
            x = F.layer_norm(x.to(dtype), shape, weight, bias, eps)
    else:
        x = F.layer_norm(x, shape, weight, bias, eps)
    return x.permute(0, 3, 1, 2)
