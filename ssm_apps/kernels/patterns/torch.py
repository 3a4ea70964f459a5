"""The scan patterns in PyTorch: gather along the flattened map, index_add back (any device)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .maps import grid_sizes, index_on

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def gather_routes(x_flat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x_flat (b, c, N), index (K, L) -> (b, K, c, L) with out[:, k, :, i] = x_flat[:, :, index[k, i]]."""
    b, c, n = x_flat.shape
    k, length = index.shape
    src = x_flat.unsqueeze(1).expand(b, k, c, n)
    idx = index.view(1, k, 1, length).expand(b, k, c, length)
    return torch.gather(src, -1, idx)


def scatter_routes(ys: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """ys (b, K, c, L), index (K, L) -> (b, c, n) summing ys[:, k, :, i] into position index[k, i].

    float16/bfloat16 are accumulated in float32; the result is in float32 then
    (the caller casts back once, after any crop).
    """
    b, k, c, _ = ys.shape
    acc_dtype = torch.float32 if ys.dtype in _HALF_DTYPES else ys.dtype
    out = ys.new_zeros((b, c, n), dtype=acc_dtype)
    for route in range(k):
        out = out.index_add_(-1, index[route], ys[:, route].to(acc_dtype))
    return out


# ----------------------------------------------------------------------------- implementations


def scan_torch(x: torch.Tensor, pattern: str, sizes: tuple[int, ...]) -> torch.Tensor:
    """x (b, c, *sizes) -> (b, K, c, L_k) with PyTorch ops (zero-pads "atrous" first)."""
    grid = grid_sizes(pattern, sizes)
    if grid != sizes:
        pad: list[int] = []
        for size, padded in zip(reversed(sizes), reversed(grid)):
            pad += [0, padded - size]
        x = F.pad(x, pad)
    index = index_on(pattern, sizes, x.device)
    return gather_routes(x.reshape(x.shape[0], x.shape[1], math.prod(grid)), index)


def merge_torch(ys: torch.Tensor, pattern: str, sizes: tuple[int, ...]) -> torch.Tensor:
    """ys (b, K, c, L_k) -> (b, c, *sizes) with PyTorch ops (crops "atrous" last)."""
    b, _, c, _ = ys.shape
    grid = grid_sizes(pattern, sizes)
    index = index_on(pattern, sizes, ys.device)
    out = scatter_routes(ys, index, math.prod(grid)).view(b, c, *grid)
    if grid != sizes:
        out = out[(slice(None), slice(None)) + tuple(slice(0, s) for s in sizes)]
    return out.to(ys.dtype).contiguous()
