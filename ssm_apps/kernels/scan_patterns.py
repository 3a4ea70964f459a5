"""Scan patterns: a 2-D map (or 3-D volume) as K 1-D sequences and back.

``cross_scan`` turns a map (b, c, H, W) into K sequences (b, K, c, L_k) for one
selective scan over K routes ("cross scan"); ``cross_merge`` puts K sequences
back onto the map, summing every route's contribution at its position
("cross merge"). The merge is the exact adjoint of the scan:
``<cross_scan(x), ys> == <x, cross_merge(ys)>``, so each is the other's backward.
The 3-D versions do the same for volumes (b, c, D, H, W).

Every pattern is a precomputed integer index map: a (K, L_k) LongTensor whose
entry [k, i] is the flat position read by route k at step i (``scan_index``).
The PyTorch backend's scan gathers along the flattened map with it, its merge
index-adds along it; the Triton kernels (``patterns_triton``) load int32 maps
derived from it (``_route_maps``: the map re-expressed for the unpadded input, and
its inverse, so that the merge is a gather-and-sum). The maps are built once per
(pattern, size, device) and cached; they are the only definition of the routes.

2-D patterns (flat position p = h * W + w, row-major; i is the step along a route):

* ``"cross4"`` (VMamba), K = 4, L_k = H * W:
  k0 row-major, p = i;
  k1 column-major (for each w, all h), p = (i % H) * W + i // H;
  k2 = k0 reversed, p = H * W - 1 - i; k3 = k1 reversed.
* ``"bidi"``, K = 2, L_k = H * W: k0 row-major, k1 = k0 reversed.
* ``"omni8"``, K = 8, L_k = H * W: cross4's four routes, then
  k4 main-diagonal order: positions sorted by (w - h) ascending, ties by h
  ascending (each diagonal walked top-left -> bottom-right, starting with the
  bottom-left corner's one-element diagonal);
  k5 anti-diagonal order: sorted by (h + w) ascending, ties by h ascending
  (starting at the top-left corner);
  k6 = k4 reversed, k7 = k5 reversed. (k4/k5 have no short closed form; the
  map is built by sorting the unique integer keys (w - h + H - 1) * H + h and
  (h + w) * H + h.)
* ``"atrous"`` (EfficientVMamba's ES2D "efficient scan", step 2), K = 4:
  the map is first zero-padded on the bottom and right to even sizes
  Hp = 2 * ceil(H / 2), Wp = 2 * ceil(W / 2), giving four dilated sub-grids of
  h2 x w2 = (Hp / 2) x (Wp / 2) cells, L_k = h2 * w2 = Lp / 4. Positions in
  ``scan_index("atrous", (H, W))`` index the PADDED grid, p = h * Wp + w:
  k0 even rows, even cols, row-major:    h = 2 (i // w2),     w = 2 (i % w2);
  k1 odd rows,  even cols, column-major: h = 2 (i % h2) + 1,  w = 2 (i // h2);
  k2 even rows, odd cols,  row-major:    h = 2 (i // w2),     w = 2 (i % w2) + 1;
  k3 odd rows,  odd cols,  column-major: h = 2 (i % h2) + 1,  w = 2 (i // h2) + 1.
  The merge writes each route back onto its own sub-grid of the padded grid
  (the four sub-grids tile it, so every padded cell gets exactly one value)
  and crops to (H, W); cropping is the adjoint of the zero padding.
  This matches the official EfficientVMamba code (``EfficientScan`` /
  ``EfficientMerge`` in classification/models/vmamba_efficient.py, step_size 2):
  same sub-grid order, routes 1 and 3 read the transposed (column-major)
  sub-grid, zero padding on the right/bottom up to a multiple of the step before
  sub-sampling, and the merge crops to the original size. The official merge
  returns the map flattened to (b, c, H * W); here it is (b, c, H, W).

3-D pattern (flat position p = d * H * W + h * W + w):

* ``"tri6"``, K = 6, L = D * H * W: k0 D-H-W order (for d, for h, for w: p = i);
  k1 H-W-D order (for h, for w, for d): p = (i % D) * H * W + i // D;
  k2 W-D-H order (for w, for d, for h):
  p = ((i // H) % D) * H * W + (i % H) * W + i // (D * H);
  k3..k5 = k0..k2 reversed.

Dtypes: any floating dtype. The scan only moves values, so it is exact in every
dtype. The merge's summation order is fixed and the same on every backend: at each
position, acc = 0, then acc = acc + route k's value for k = 0, 1, ..., K - 1 (routes
that do not visit the position add nothing), in float32 for float16/bfloat16 inputs
(rounded once to the input dtype at the end) and in the input dtype otherwise. (In
PyTorch: one index_add per route, each a permutation without repeated indices.)

Autograd: the scan and the merge are exact adjoints, so each op is a
``torch.autograd.Function`` whose backward is the other op (on the same backend).
Gradients thus follow the merge's fixed summation order too -- they do not depend
on how a generic reduction would order the K-fold sum -- and are bit-identical
across backends; double backward works (the backward is itself differentiable).

Backends: ``backend="torch"`` (gather / index_add, any device) or ``"triton"``
(kernels in ``patterns_triton``, CUDA; they load int32 maps derived from the same
index maps, see ``_route_maps``); ``None`` picks Triton for CUDA tensors when it is
available (``selective_scan.triton_available``) and PyTorch otherwise. Both give
bit-identical results.
"""
from __future__ import annotations

import functools
import math
import operator
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "PATTERN_BACKENDS",
    "PATTERNS_2D",
    "PATTERNS_3D",
    "cross_merge",
    "cross_merge_3d",
    "cross_scan",
    "cross_scan_3d",
    "scan_index",
    "scan_index_3d",
    "scan_length",
]

PATTERNS_2D: dict[str, int] = {"cross4": 4, "bidi": 2, "omni8": 8, "atrous": 4}
"""2-D pattern name -> number of routes K."""

PATTERNS_3D: dict[str, int] = {"tri6": 6}
"""3-D pattern name -> number of routes K."""

PATTERN_BACKENDS: tuple[str, ...] = ("torch", "triton")
"""Implementations of the scan / merge; ``None`` as a backend picks the best available."""

PatternBackend = Literal["torch", "triton"]

_HALF_DTYPES = (torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------- checks


def _check_pattern(fn: str, pattern: object, patterns: dict[str, int]) -> str:
    if not isinstance(pattern, str) or pattern not in patterns:
        raise ValueError(
            f"{fn}: argument 'pattern' must be one of {sorted(patterns)}; got {pattern!r}"
        )
    return pattern


def _check_sizes(fn: str, name: str, sizes: object, labels: str) -> tuple[int, ...]:
    """A tuple/list of len(labels) positive ints, e.g. hw = (H, W)."""
    n = len(labels.split(","))
    expected = f"a tuple of {n} positive ints ({labels})"
    try:
        if isinstance(sizes, (str, bytes)) or len(sizes) != n:  # type: ignore[arg-type]
            raise TypeError
        out = tuple(operator.index(s) for s in sizes)  # type: ignore[union-attr]
        if any(isinstance(s, bool) for s in sizes):  # type: ignore[union-attr]
            raise TypeError
    except TypeError:
        raise ValueError(f"{fn}: argument '{name}' must be {expected}; got {sizes!r}") from None
    if any(s < 1 for s in out):
        raise ValueError(f"{fn}: argument '{name}' must be {expected}; got {sizes!r}")
    return out


def _check_tensor(fn: str, name: str, t: object, rank: int, layout: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: argument '{name}' must be a torch.Tensor; got {type(t).__name__}")
    if t.dim() != rank:
        raise ValueError(
            f"{fn}: argument '{name}' must be of rank {rank} {layout}; "
            f"got shape {tuple(t.shape)} dtype {t.dtype}"
        )
    if not t.is_floating_point():
        raise ValueError(
            f"{fn}: argument '{name}' must be a floating-point tensor {layout}; "
            f"got shape {tuple(t.shape)} dtype {t.dtype}"
        )
    return t


# ----------------------------------------------------------------------------- index maps


def _padded_hw(pattern: str, height: int, width: int) -> tuple[int, int]:
    """The grid the index map points into: (H, W), or the even-padded grid for "atrous"."""
    if pattern == "atrous":
        return height + height % 2, width + width % 2
    return height, width


def _length_2d(pattern: str, height: int, width: int) -> int:
    hp, wp = _padded_hw(pattern, height, width)
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
    hp, wp = _padded_hw("atrous", height, width)
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


@functools.lru_cache(maxsize=256)
def _index_cpu(pattern: str, sizes: tuple[int, ...]) -> torch.Tensor:
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


@functools.lru_cache(maxsize=256)
def _index_on(pattern: str, sizes: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The cached (K, L_k) map on ``device``; internal, never handed out (callers could mutate it)."""
    return _index_cpu(pattern, sizes).to(device)


def _grid_sizes(pattern: str, sizes: tuple[int, ...]) -> tuple[int, ...]:
    """The grid the index map points into: ``sizes``, or the even-padded (Hp, Wp) for "atrous"."""
    return _padded_hw(pattern, *sizes) if len(sizes) == 2 else sizes


@functools.lru_cache(maxsize=256)
def _route_maps_cpu(pattern: str, sizes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    index = _index_cpu(pattern, sizes)  # (K, L) positions in the (padded) grid
    k, length = index.shape
    grid = _grid_sizes(pattern, sizes)
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


@functools.lru_cache(maxsize=256)
def _route_maps(pattern: str, sizes: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The index map in the form the fused kernels load: (src, inv), int32, contiguous, on ``device``.

    Both are derived from ``_index_cpu`` (the only definition of the routes):

    * src (K, L): src[k, i] = the flat position in the UNPADDED map (b, c, prod(sizes))
      read by route k at step i, or -1 where it reads a zero-padding cell ("atrous");
    * inv (K, prod(sizes)): inv[k, q] = the step i at which route k visits flat map
      position q, or -1 if it never does ("atrous": three routes of four at each cell).

    The scan is out[:, k, :, i] = x[:, :, src[k, i]] (0 where src < 0); the merge is
    out[:, :, q] = sum over k with inv[k, q] >= 0 of ys[:, k, :, inv[k, q]], in order k = 0, 1, ...
    """
    if math.prod(_grid_sizes(pattern, sizes)) >= 2**31:
        raise ValueError(f"scan patterns: argument 'x' must have fewer than 2**31 positions; got sizes {sizes}")
    return tuple(t.to(device) for t in _route_maps_cpu(pattern, sizes))  # type: ignore[return-value]


# ----------------------------------------------------------------------------- public index API


def scan_index(pattern: str, hw: tuple[int, int]) -> torch.Tensor:
    """Index map of a 2-D pattern: a (K, L_k) int64 CPU tensor (a fresh copy).

    Entry [k, i] is the flat row-major position read by route k at step i:
    p = h * W + w for every pattern except ``"atrous"``, whose positions index the
    zero-padded grid (Hp, Wp) = (H + H % 2, W + W % 2), p = h * Wp + w.
    ``cross_scan(x, pattern)[:, k, :, i] == x_flat[:, :, index[k, i]]`` with x_flat
    the (padded) map flattened to (b, c, Hp * Wp).
    """
    pattern = _check_pattern("scan_index", pattern, PATTERNS_2D)
    sizes = _check_sizes("scan_index", "hw", hw, "H, W")
    return _index_cpu(pattern, sizes).clone()


def scan_index_3d(pattern: str, dhw: tuple[int, int, int]) -> torch.Tensor:
    """Index map of a 3-D pattern: a (K, D * H * W) int64 CPU tensor (a fresh copy).

    Entry [k, i] is the flat position p = d * H * W + h * W + w read by route k at step i.
    """
    pattern = _check_pattern("scan_index_3d", pattern, PATTERNS_3D)
    sizes = _check_sizes("scan_index_3d", "dhw", dhw, "D, H, W")
    return _index_cpu(pattern, sizes).clone()


def scan_length(pattern: str, hw: tuple[int, int]) -> int:
    """L_k, the length of each route of a 2-D pattern over an (H, W) map.

    H * W, except ``"atrous"``: ceil(H / 2) * ceil(W / 2).
    """
    pattern = _check_pattern("scan_length", pattern, PATTERNS_2D)
    height, width = _check_sizes("scan_length", "hw", hw, "H, W")
    return _length_2d(pattern, height, width)


# ----------------------------------------------------------------------------- gather / scatter


def _gather_routes(x_flat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x_flat (b, c, N), index (K, L) -> (b, K, c, L) with out[:, k, :, i] = x_flat[:, :, index[k, i]]."""
    b, c, n = x_flat.shape
    k, length = index.shape
    src = x_flat.unsqueeze(1).expand(b, k, c, n)
    idx = index.view(1, k, 1, length).expand(b, k, c, length)
    return torch.gather(src, -1, idx)


def _scatter_routes(ys: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
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


def _scan_torch(x: torch.Tensor, pattern: str, sizes: tuple[int, ...]) -> torch.Tensor:
    """x (b, c, *sizes) -> (b, K, c, L_k) with PyTorch ops (zero-pads "atrous" first)."""
    grid = _grid_sizes(pattern, sizes)
    if grid != sizes:
        pad: list[int] = []
        for size, padded in zip(reversed(sizes), reversed(grid)):
            pad += [0, padded - size]
        x = F.pad(x, pad)
    index = _index_on(pattern, sizes, x.device)
    return _gather_routes(x.reshape(x.shape[0], x.shape[1], math.prod(grid)), index)


def _merge_torch(ys: torch.Tensor, pattern: str, sizes: tuple[int, ...]) -> torch.Tensor:
    """ys (b, K, c, L_k) -> (b, c, *sizes) with PyTorch ops (crops "atrous" last)."""
    b, _, c, _ = ys.shape
    grid = _grid_sizes(pattern, sizes)
    index = _index_on(pattern, sizes, ys.device)
    out = _scatter_routes(ys, index, math.prod(grid)).view(b, c, *grid)
    if grid != sizes:
        out = out[(slice(None), slice(None)) + tuple(slice(0, s) for s in sizes)]
    return out.to(ys.dtype).contiguous()


def _scan_impl(x: torch.Tensor, pattern: str, sizes: tuple[int, ...], backend: str) -> torch.Tensor:
    if backend == "triton":
        from .patterns_triton import scan_routes  # lazily: it imports triton

        return scan_routes(x, pattern, sizes)
    return _scan_torch(x, pattern, sizes)


def _merge_impl(ys: torch.Tensor, pattern: str, sizes: tuple[int, ...], backend: str) -> torch.Tensor:
    if backend == "triton":
        from .patterns_triton import merge_routes  # lazily: it imports triton

        return merge_routes(ys, pattern, sizes)
    return _merge_torch(ys, pattern, sizes)


class _Scan(torch.autograd.Function):
    """The scan; its backward is the merge (its exact adjoint) on the same backend."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, pattern: str, sizes: tuple[int, ...], backend: str) -> torch.Tensor:  # type: ignore[override]
        ctx.meta = (pattern, sizes, backend)
        return _scan_impl(x, pattern, sizes, backend)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        pattern, sizes, backend = ctx.meta
        return _Merge.apply(grad, pattern, sizes, backend), None, None, None


class _Merge(torch.autograd.Function):
    """The merge; its backward is the scan (its exact adjoint) on the same backend."""

    @staticmethod
    def forward(ctx, ys: torch.Tensor, pattern: str, sizes: tuple[int, ...], backend: str) -> torch.Tensor:  # type: ignore[override]
        ctx.meta = (pattern, sizes, backend)
        return _merge_impl(ys, pattern, sizes, backend)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        pattern, sizes, backend = ctx.meta
        return _Scan.apply(grad, pattern, sizes, backend), None, None, None


def _pick_backend(fn: str, backend: object, device: torch.device) -> str:
    from .selective_scan import triton_available  # lazily: selective_scan is a sibling module

    if backend is None:
        return "triton" if triton_available(device) else "torch"
    if backend not in PATTERN_BACKENDS:
        raise ValueError(f"{fn}: argument 'backend' must be one of {PATTERN_BACKENDS} or None; got {backend!r}")
    if backend == "triton" and not triton_available(device):
        raise RuntimeError(f"{fn}: backend 'triton' needs a CUDA tensor and triton installed; got device {device}")
    return backend  # type: ignore[return-value]


# ----------------------------------------------------------------------------- argument checks


def _scan_2d_args(fn: str, x: object, pattern: object) -> tuple[torch.Tensor, str, tuple[int, int]]:
    pattern = _check_pattern(fn, pattern, PATTERNS_2D)
    x = _check_tensor(fn, "x", x, 4, "(b, c, H, W)")
    height, width = x.shape[2:]
    if height < 1 or width < 1:
        raise ValueError(f"{fn}: argument 'x' must be (b, c, H, W) with H, W >= 1; got shape {tuple(x.shape)}")
    return x, pattern, (height, width)


def _merge_2d_args(fn: str, ys: object, pattern: object, hw: object) -> tuple[torch.Tensor, str, tuple[int, int]]:
    pattern = _check_pattern(fn, pattern, PATTERNS_2D)
    height, width = _check_sizes(fn, "hw", hw, "H, W")
    ys = _check_tensor(fn, "ys", ys, 4, "(b, K, c, L_k)")
    k, length = PATTERNS_2D[pattern], _length_2d(pattern, height, width)
    if ys.shape[1] != k or ys.shape[3] != length:
        raise ValueError(
            f"{fn}: argument 'ys' must be (b, K, c, L_k) = (b, {k}, c, {length}) "
            f"for pattern {pattern!r} and hw ({height}, {width}); got shape {tuple(ys.shape)}"
        )
    return ys, pattern, (height, width)


def _scan_3d_args(fn: str, x: object, pattern: object) -> tuple[torch.Tensor, str, tuple[int, int, int]]:
    pattern = _check_pattern(fn, pattern, PATTERNS_3D)
    x = _check_tensor(fn, "x", x, 5, "(b, c, D, H, W)")
    depth, height, width = x.shape[2:]
    if min(depth, height, width) < 1:
        raise ValueError(
            f"{fn}: argument 'x' must be (b, c, D, H, W) with D, H, W >= 1; got shape {tuple(x.shape)}"
        )
    return x, pattern, (depth, height, width)


def _merge_3d_args(
    fn: str, ys: object, pattern: object, dhw: object
) -> tuple[torch.Tensor, str, tuple[int, int, int]]:
    pattern = _check_pattern(fn, pattern, PATTERNS_3D)
    depth, height, width = _check_sizes(fn, "dhw", dhw, "D, H, W")
    ys = _check_tensor(fn, "ys", ys, 4, "(b, K, c, L)")
    k, length = PATTERNS_3D[pattern], depth * height * width
    if ys.shape[1] != k or ys.shape[3] != length:
        raise ValueError(
            f"{fn}: argument 'ys' must be (b, K, c, L) = (b, {k}, c, {length}) "
            f"for pattern {pattern!r} and dhw ({depth}, {height}, {width}); got shape {tuple(ys.shape)}"
        )
    return ys, pattern, (depth, height, width)


# ----------------------------------------------------------------------------- 2-D


@torch.compiler.disable
def cross_scan(x: torch.Tensor, pattern: str = "cross4", backend: PatternBackend | None = None) -> torch.Tensor:
    """Scan a map into the K routes of ``pattern``.

    Args:
        x: (b, c, H, W) floating-point map, any device, any strides.
        pattern: one of ``PATTERNS_2D`` ("cross4", "bidi", "omni8", "atrous").
        backend: "torch", "triton" (CUDA) or None (Triton for CUDA tensors when available).

    Returns:
        (b, K, c, L_k), contiguous, same dtype and device as x, with
        K = PATTERNS_2D[pattern] and L_k = scan_length(pattern, (H, W))
        (H * W; ceil(H / 2) * ceil(W / 2) for "atrous", whose odd sizes are
        zero-padded on the bottom/right first). Differentiable; the backward is
        ``cross_merge``.
    """
    x, pattern, sizes = _scan_2d_args("cross_scan", x, pattern)
    return _Scan.apply(x, pattern, sizes, _pick_backend("cross_scan", backend, x.device))


@torch.compiler.disable
def cross_merge(
    ys: torch.Tensor, pattern: str, hw: tuple[int, int], backend: PatternBackend | None = None
) -> torch.Tensor:
    """Merge the K routes of ``pattern`` back onto an (H, W) map; the adjoint of ``cross_scan``.

    Args:
        ys: (b, K, c, L_k) floating-point routes, K = PATTERNS_2D[pattern],
            L_k = scan_length(pattern, hw); any strides.
        pattern: one of ``PATTERNS_2D``.
        hw: (H, W), the size of the map that was scanned.
        backend: "torch", "triton" (CUDA) or None (Triton for CUDA tensors when available).

    Returns:
        (b, c, H, W), contiguous, in ys's dtype: at each position the sum of every
        route's value there, in route order (float32 accumulation for float16 /
        bfloat16; see the module docstring). For "atrous" each route fills its own
        sub-grid of the padded map, which is then cropped to (H, W).
        Differentiable; the backward is ``cross_scan``.
    """
    ys, pattern, sizes = _merge_2d_args("cross_merge", ys, pattern, hw)
    return _Merge.apply(ys, pattern, sizes, _pick_backend("cross_merge", backend, ys.device))


# ----------------------------------------------------------------------------- 3-D


@torch.compiler.disable
def cross_scan_3d(x: torch.Tensor, pattern: str = "tri6", backend: PatternBackend | None = None) -> torch.Tensor:
    """Scan a volume into the K routes of a 3-D ``pattern``.

    Args:
        x: (b, c, D, H, W) floating-point volume, any device, any strides.
        pattern: one of ``PATTERNS_3D`` ("tri6").
        backend: "torch", "triton" (CUDA) or None (Triton for CUDA tensors when available).

    Returns:
        (b, K, c, L), contiguous, L = D * H * W, K = PATTERNS_3D[pattern].
        Differentiable; the backward is ``cross_merge_3d``.
    """
    x, pattern, sizes = _scan_3d_args("cross_scan_3d", x, pattern)
    return _Scan.apply(x, pattern, sizes, _pick_backend("cross_scan_3d", backend, x.device))


@torch.compiler.disable
def cross_merge_3d(
    ys: torch.Tensor, pattern: str, dhw: tuple[int, int, int], backend: PatternBackend | None = None
) -> torch.Tensor:
    """Merge the K routes of a 3-D ``pattern`` back onto a (D, H, W) volume; adjoint of ``cross_scan_3d``.

    Args:
        ys: (b, K, c, L) floating-point routes, K = PATTERNS_3D[pattern], L = D * H * W.
        pattern: one of ``PATTERNS_3D``.
        dhw: (D, H, W), the size of the volume that was scanned.
        backend: "torch", "triton" (CUDA) or None (Triton for CUDA tensors when available).

    Returns:
        (b, c, D, H, W), contiguous, in ys's dtype, the sum of every route's value at
        each position (in route order, as ``cross_merge``). Differentiable; the
        backward is ``cross_scan_3d``.
    """
    ys, pattern, sizes = _merge_3d_args("cross_merge_3d", ys, pattern, dhw)
    return _Merge.apply(ys, pattern, sizes, _pick_backend("cross_merge_3d", backend, ys.device))
