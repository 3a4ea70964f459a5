"""The index maps of the scan patterns: the only definition of every route (see the package docstring).

``index_cpu`` / ``index_on``: the (K, L_k) int64 map, cached per (pattern, sizes[, device]);
``route_maps``: the int32 (src, inv) form the Triton kernels load. Both are internal to the
kernels package (callers could mutate the cached tensors); ``scan_index`` hands out copies.
"""
from __future__ import annotations

import math

import torch

from .._backend import tensor_cache

PATTERNS_2D: dict[str, int] = {"cross4": 4, "bidi": 2, "omni8": 8, "atrous": 4}
"""2-D pattern name -> number of routes K."""

PATTERNS_3D: dict[str, int] = {"tri6": 6}
"""3-D pattern name -> number of routes K."""


def padded_hw(pattern: str, height: int, width: int) -> tuple[int, int]:
    """The grid the index map points into: (H, W), or the even-padded grid for "atrous"."""
    if pattern == "atrous":
        return height + height % 2, width + width % 2
    return height, width


def length_2d(pattern: str, height: int, width: int) -> int:
    hp, wp = padded_hw(pattern, height, width)
    return hp * wp // 4 if pattern == "atrous" else height * width


def _row_major(height: int, width: int) -> torch.Tensor:
    return torch.arange(height * width, dtype=torch.long)


def _col_major(height: int, width: int) -> torch.Tensor:
    i = torch.arange(height * width, dtype=torch.long)
    return (i % height) * width + i // height


def _diagonal(height: int, width: int) -> torch.Tensor:
    h = torch.arange(height, dtype=torch.long).view(-1, 1).expand(height, width)
    w = torch.arange(width, dtype=torch.long).view(1, -1).expand(height, width)
    key = (w - h + height - 1) * height + h  # unique: (w - h) major, h minor
    return torch.argsort(key.reshape(-1))


def _anti_diagonal(height: int, width: int) -> torch.Tensor:
    h = torch.arange(height, dtype=torch.long).view(-1, 1).expand(height, width)
    w = torch.arange(width, dtype=torch.long).view(1, -1).expand(height, width)
    key = (h + w) * height + h  # unique: (h + w) major, h minor
    return torch.argsort(key.reshape(-1))


def _atrous(height: int, width: int) -> torch.Tensor:
    hp, wp = padded_hw("atrous", height, width)
    h2, w2 = hp // 2, wp // 2
    i = torch.arange(h2 * w2, dtype=torch.long)
    row_r, row_s = i // w2, i % w2  # row-major walk of the h2 x w2 sub-grid
    col_r, col_s = i % h2, i // h2  # column-major walk
    routes = [
        (2 * row_r) * wp + 2 * row_s,  # even rows, even cols
        (2 * col_r + 1) * wp + 2 * col_s,  # odd rows, even cols
        (2 * row_r) * wp + 2 * row_s + 1,  # even rows, odd cols
        (2 * col_r + 1) * wp + 2 * col_s + 1,  # odd rows, odd cols
    ]
    return torch.stack(routes)


def _tri6(depth: int, height: int, width: int) -> torch.Tensor:
    hw = height * width
    i = torch.arange(depth * hw, dtype=torch.long)
    dhw = i
    hwd = (i % depth) * hw + i // depth
    wdh = ((i // height) % depth) * hw + (i % height) * width + i // (depth * height)
    fwd = torch.stack([dhw, hwd, wdh])
    return torch.cat([fwd, fwd.flip(-1)])


@tensor_cache(maxsize=256)
def index_cpu(pattern: str, sizes: tuple[int, ...]) -> torch.Tensor:
    if pattern == "tri6":
        return _tri6(*sizes)
    height, width = sizes
    if pattern == "atrous":
        return _atrous(height, width)
    row, col = _row_major(height, width), _col_major(height, width)
    if pattern == "bidi":
        return torch.stack([row, row.flip(0)])
    routes = [row, col, row.flip(0), col.flip(0)]
    if pattern == "omni8":
        diag, anti = _diagonal(height, width), _anti_diagonal(height, width)
        routes += [diag, anti, diag.flip(0), anti.flip(0)]
    return torch.stack(routes)


@tensor_cache(maxsize=256)
def index_on(pattern: str, sizes: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The cached (K, L_k) map on ``device``; internal, never handed out (callers could mutate it)."""
    return index_cpu(pattern, sizes).to(device)


def grid_sizes(pattern: str, sizes: tuple[int, ...]) -> tuple[int, ...]:
    """The grid the index map points into: ``sizes``, or the even-padded (Hp, Wp) for "atrous"."""
    return padded_hw(pattern, *sizes) if len(sizes) == 2 else sizes


@tensor_cache(maxsize=256)
def _route_maps_cpu(pattern: str, sizes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    index = index_cpu(pattern, sizes)  # (K, L) positions in the (padded) grid
    k, length = index.shape
    grid = grid_sizes(pattern, sizes)
    crop = (slice(None),) + tuple(slice(0, s) for s in sizes)
    # position in the unpadded map of each grid cell; -1 for padding cells
    cell = torch.full(grid, -1, dtype=torch.long)
    cell[crop[1:]] = torch.arange(math.prod(sizes), dtype=torch.long).view(sizes)
    src = cell.reshape(-1)[index]
    # step at which route k visits each grid cell (-1: never), then cropped to the map
    inv = torch.full((k, math.prod(grid)), -1, dtype=torch.long)
    inv.scatter_(1, index, torch.arange(length, dtype=torch.long).expand(k, length))
    inv = inv.view(k, *grid)[crop].reshape(k, -1)
    return src.to(torch.int32), inv.to(torch.int32).contiguous()


@tensor_cache(maxsize=256)
def route_maps(pattern: str, sizes: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The index map in the form the fused kernels load: (src, inv), int32, contiguous, on ``device``.

    Both are derived from ``index_cpu`` (the only definition of the routes):

    * src (K, L): src[k, i] = the flat position in the UNPADDED map (b, c, prod(sizes))
      read by route k at step i, or -1 where it reads a zero-padding cell ("atrous");
    * inv (K, prod(sizes)): inv[k, q] = the step i at which route k visits flat map
      position q, or -1 if it never does ("atrous": three routes of four at each cell).

    The scan is out[:, k, :, i] = x[:, :, src[k, i]] (0 where src < 0); the merge is
    out[:, :, q] = sum over k with inv[k, q] >= 0 of ys[:, k, :, inv[k, q]], in order k = 0, 1, ...
    """
    if math.prod(grid_sizes(pattern, sizes)) >= 2**31:
        raise ValueError(f"scan patterns: argument 'x' must have fewer than 2**31 positions; got sizes {sizes}")
    return tuple(t.to(device) for t in _route_maps_cpu(pattern, sizes))  # type: ignore[return-value]
