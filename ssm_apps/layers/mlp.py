"""timm's ``Mlp`` (fc1 -> act -> drop -> fc2 -> drop) with a cache-blocked CPU inference path.

On a CPU, without autograd, a large MLP runs over blocks of ``chunk_rows`` pixels: fc1, the activation and
fc2 of one block while its hidden activations (rows x 4C) are still in cache, written straight into the
output. The full-size hidden tensor of the plain path makes the activation (and the bias copies of the
GEMMs) memory-bound: at VMamba-T stage 1 (batch 8, 56 x 56 x 96 -> 384) on the 2-core machine the block
path is 2.4x faster (36.5 -> 15.1 ms; 78 -> 49 ms at 192 channels), while below about 24 MB of hidden
activations the plain path is as fast or faster; hence ``min_hidden_bytes``. Same numbers up to float
summation order (a GEMM over fewer rows); training, CUDA and small maps take the plain path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

from ..kernels import needs_autograd
from .norm import Linear2d

__all__ = ["BlockedMlp"]


class BlockedMlp(Mlp):
    """``timm.layers.Mlp`` over the last dimension of (..., C), or over the channels of a (B, C, H, W) map
    when ``channel_first`` (fc1 / fc2 are then ``Linear2d``, whose weights and keys are those of nn.Linear),
    with the blocked CPU inference path of the module docstring.

    Args:
        in_features: channels C.
        hidden_features: hidden width.
        act_layer: an elementwise activation module class (e.g. ``nn.GELU``).
        drop: dropout rate (the block path runs only where dropout is inactive).
        channel_first: inputs are (B, C, H, W) maps instead of channel-last tensors.
        chunk_rows: pixels per block of the CPU path.
        min_hidden_bytes: the CPU path runs when the hidden activations of the input would take more.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        act_layer: type[nn.Module] = nn.GELU,
        drop: float = 0.0,
        channel_first: bool = False,
        chunk_rows: int = 1024,
        min_hidden_bytes: int = 24 * 2**20,
    ) -> None:
        super().__init__(in_features, hidden_features, act_layer=act_layer, drop=drop)
        if channel_first:
            self.fc1, self.fc2 = Linear2d(in_features, hidden_features), Linear2d(hidden_features, in_features)
        self.channel_first = channel_first
        self.chunk_rows, self.min_hidden_bytes = int(chunk_rows), int(min_hidden_bytes)

    def _rows(self, x: torch.Tensor) -> torch.Tensor | None:
        """(pixels, C) view of ``x`` without a copy, or None where its memory does not allow one."""
        last = x.movedim(1, -1) if self.channel_first else x
        return last.reshape(-1, last.shape[-1]) if last.is_contiguous() else None

    def _use_blocks(self, x: torch.Tensor) -> bool:
        dropping = self.training and (self.drop1.p > 0 or self.drop2.p > 0)
        if x.device.type != "cpu" or dropping or not isinstance(self.norm, nn.Identity):
            return False
        if needs_autograd(x, self.fc1.weight):
            return False
        pixels = x.numel() // x.shape[1 if self.channel_first else -1]
        return pixels * self.fc1.out_features * x.element_size() > self.min_hidden_bytes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self._rows(x) if self._use_blocks(x) else None
        if rows is None:
            return super().forward(x)
        out = torch.empty(rows.shape[0], self.fc2.out_features, dtype=x.dtype)
        w2 = self.fc2.weight.t()
        for start in range(0, rows.shape[0], self.chunk_rows):
            block = slice(start, start + self.chunk_rows)
            hidden = self.act(F.linear(rows[block], self.fc1.weight, self.fc1.bias))
            torch.addmm(self.fc2.bias, hidden, w2, out=out[block])
        if self.channel_first:
            b, _, *spatial = x.shape
            return out.view(b, *spatial, -1).movedim(-1, 1)
        return out.view(*x.shape[:-1], -1)
