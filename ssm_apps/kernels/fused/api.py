"""Fused 2-D / 3-D selective scan: K routes read straight from the map and merged back.

``selective_scan_2d(x, delta, A, B, C, ...)`` computes, for the K routes of a scan pattern
(``patterns``: "cross4", "bidi", "omni8"; 3-D "tri6" through ``selective_scan_3d``),

    out = cross_merge(selective_scan(cross_scan(x), delta_s, A, B_s, C_s, D, delta_bias), pattern)

without building the (b, K, c, L) copies of x: the Triton backend loads each route's input
through the pattern's index map (``scan_index``) straight from x, and sums each route's output
into the merged map as it goes (forward and backward).

Layout ("spatial layout": every per-step input is given at the pixel the step visits)
------------------------------------------------------------------------------------------
* x: (b, c, H, W) the map (3-D: (b, c, D, H, W)), float32/float16/bfloat16.
* delta: (b, K, c, H, W), same dtype as x: ``delta[:, k, :, h, w]`` is the step size route k
  uses at the step that visits pixel (h, w). (VMamba computes it with one einsum over x in
  spatial order -- the same numbers as projecting the scanned copies.)
* B, C: (b, K, n, H, W), same dtype as x, per pixel likewise (route k's channels read group k).
* Or low-rank step sizes: delta (b, K, R, H, W) with ``delta_proj_weight`` (K, c, R), route k's step sizes
  ``delta_proj_weight[k] @ delta[:, k]`` (Mamba's dt_proj).
* A: (K*c, n) float32 (row k*c + i: channel i of route k); D, delta_bias: (K*c,) float32.
* Returns (b, c, H, W) in ``out_dtype`` (default x's dtype): at each pixel the sum over the K
  routes of the scan output ``y_k`` at the step that visits it (plus ``D x`` per route).

With ``idx = scan_index(pattern, (H, W))`` and flat pixels p, route k scans
``u_k[t] = x[..., idx[k, t]]`` with ``delta[:, k, :, idx[k, t]]``, ``B[:, k, :, idx[k, t]]`` and
``C[:, k, :, idx[k, t]]``, and its output at step t is added at pixel ``idx[k, t]``.

"atrous" is a permutation of the (padded) map without duplication, so nothing is gained by
fusing it; it is refused here (use ``cross_scan`` -> ``selective_scan`` -> ``cross_merge``).

Backends: "triton" (CUDA; the GATHER mode of the ``scan.triton`` kernels, ``fused.triton``), "numba"
(CPU; without autograd the fused inference kernel of ``fused.numba_cpu``, with it the unfused chain on the
numba scan), "ref" / "torch" (any device; the unfused chain above built from ``cross_scan``, index gathers
and ``selective_scan``), None = best available.
"""
from __future__ import annotations

import torch

from .._backend import needs_autograd, pick_backend, tensor_cache
from ..patterns import (
    PATTERNS_2D,
    PATTERNS_3D,
    cross_merge,
    cross_merge_3d,
    cross_scan,
    cross_scan_3d,
)
from ..patterns.maps import index_on
from ..scan import BACKENDS, Backend, selective_scan
from ..scan.checks import as_channel_vector
from ..scan.options import TritonScanOptions, check_options
from .checks import check_fused_inputs

__all__ = ["FUSED_PATTERNS_2D", "FUSED_PATTERNS_3D", "selective_scan_2d", "selective_scan_3d"]

FUSED_PATTERNS_2D: tuple[str, ...] = ("cross4", "bidi", "omni8")
FUSED_PATTERNS_3D: tuple[str, ...] = ("tri6",)
# Largest rank of low-rank step sizes the numba kernel expands itself (2 R multiply-adds per channel and step
# instead of writing and then reading the (b, K, c, L) step sizes); above it one GEMM expands them first.
# 2-core CPU, VMamba-T shapes (cross4, n 1), a call with GEMM first / in the kernel: R 6 (c 96, 56x56)
# 28.8 / 16.3 ms at batch 8, 2.7 / 2.4 ms at batch 1; R 12 (c 192, 28x28) 6.1 / 6.6 and 1.44 / 1.45 ms;
# R 24 (c 384, 14x14) 4.3 / 3.8 ms in one run, 4.1 / 4.7 in another: the memory saved pays off at the large maps.
NUMBA_IN_KERNEL_MAX_RANK = 16


@tensor_cache(maxsize=64)
def _index_i32(pattern: str, sizes: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The pattern's (K, L) index map as int32 on ``device`` (cached; never handed out)."""
    return index_on(pattern, sizes, device).to(torch.int32).contiguous()


def _pixels_last(t: torch.Tensor, lead: int) -> torch.Tensor:
    """``t`` (b, *lead dims, *spatial) with memory ordered (b, *spatial, *lead dims), copying only
    when it is not already: the fused kernels' lanes then read consecutive channels of one pixel.
    lead 1: x (b, c, ...) -> channels-last; lead 2: delta (b, K, c, ...) -> memory (b, ..., K, c)."""
    nsp = t.dim() - 1 - lead
    to_last = (0, *range(1 + lead, t.dim()), *range(1, 1 + lead))  # (b, *spatial, *lead)
    back = (0, *range(1 + nsp, t.dim()), *range(1, 1 + nsp))
    perm = t.permute(*to_last)
    return t if perm.is_contiguous() else perm.contiguous().permute(*back)


def _to_scan_order(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(b, K, m, L) per pixel -> (b, K, m, L) in each route's scan order: out[:, k, :, i] = t[:, k, :, index[k, i]]."""
    b, k, m, length = t.shape
    return torch.gather(t, -1, index.view(1, k, 1, length).expand(b, k, m, length))


def _expand(delta: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Low-rank step sizes (b, K, R, *spatial) -> (b, K, c, *spatial) = weight[k] @ delta[:, k], with the memory
    of a (b, K, *spatial, c) tensor (what the fused kernels read without a copy)."""
    b, k, r, *sizes = delta.shape
    flat = delta.reshape(b, k, r, -1).transpose(-1, -2)  # (b, K, L, R)
    out = torch.matmul(flat, weight.transpose(-1, -2))  # (b, K, L, c)
    return out.transpose(-1, -2).reshape(b, k, weight.shape[1], *sizes)


def _scan(fn: str, x, delta, A, B, C, D, delta_bias, delta_softplus, pattern, backend, out_dtype, rank,
          triton_options, delta_proj_weight=None):
    patterns = FUSED_PATTERNS_3D if rank == 5 else FUSED_PATTERNS_2D
    all_patterns = PATTERNS_3D if rank == 5 else PATTERNS_2D
    if pattern not in patterns:
        extra = ""
        if pattern == "atrous":
            extra = (" ('atrous' is a permutation of the padded map without duplication, so it is not fused: "
                     "use cross_scan -> selective_scan -> cross_merge)")
        raise ValueError(f"{fn}: argument 'pattern' must be one of {list(patterns)}; got {pattern!r}{extra}")
    k = all_patterns[pattern]
    if isinstance(x, torch.Tensor) and x.dim() == rank:
        D = as_channel_vector(fn, "D", D, k * x.shape[1], x.device, label="K*c")
        delta_bias = as_channel_vector(fn, "delta_bias", delta_bias, k * x.shape[1], x.device, label="K*c")
    b, c, sizes, n = check_fused_inputs(fn, x, delta, A, B, C, D, delta_bias, pattern, rank, k, out_dtype,
                                        delta_proj_weight)
    triton_options = check_options(fn, triton_options)
    backend = pick_backend(fn, backend, x.device, BACKENDS)
    length = 1
    for s in sizes:
        length *= s
    grad = needs_autograd(x, delta, A, B, C, D, delta_bias, delta_proj_weight)
    in_kernel = (backend == "numba" and not grad and delta_proj_weight is not None
                 and delta_proj_weight.shape[2] <= NUMBA_IN_KERNEL_MAX_RANK)
    if delta_proj_weight is not None and not in_kernel:
        delta = _expand(delta, delta_proj_weight)
    if backend == "triton":
        from .triton import selective_scan_gather_triton  # lazily: it imports triton

        out = selective_scan_gather_triton(
            _pixels_last(x, 1).reshape(b, c, length), _pixels_last(delta, 2).reshape(b, k * c, length), A,
            B.reshape(b, k, n, length).contiguous(), C.reshape(b, k, n, length).contiguous(),
            _index_i32(pattern, sizes, x.device), D, delta_bias, delta_softplus, out_dtype=out_dtype,
            options=triton_options)
        return out.view(b, c, *sizes)
    index = index_on(pattern, sizes, x.device)
    if backend == "numba" and not grad:
        from .numba_cpu import selective_scan_routes_numba  # lazily: it imports numba

        out = selective_scan_routes_numba(
            x.reshape(b, c, length), delta.reshape(b, k, delta.shape[2], length), A, B.reshape(b, k, n, length),
            C.reshape(b, k, n, length), index, D, delta_bias, delta_softplus,
            delta_proj_weight if in_kernel else None)
        return out.reshape(b, c, *sizes).to(out_dtype or x.dtype)  # a view: channels-last strides
    # unfused chain (also the oracle of the fused kernels)
    xs = cross_scan_3d(x, pattern) if rank == 5 else cross_scan(x, pattern)  # (b, K, c, L)
    ds = _to_scan_order(delta.reshape(b, k, c, length), index)
    Bs = _to_scan_order(B.reshape(b, k, n, length), index)
    Cs = _to_scan_order(C.reshape(b, k, n, length), index)
    ys = selective_scan(xs.reshape(b, k * c, length), ds.reshape(b, k * c, length), A, Bs, Cs, D,
                        delta_bias=delta_bias, delta_softplus=delta_softplus, backend=backend, out_dtype=out_dtype)
    ys = ys.view(b, k, c, length)
    return cross_merge_3d(ys, pattern, sizes) if rank == 5 else cross_merge(ys, pattern, sizes)


@torch.compiler.disable
def selective_scan_2d(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    pattern: str = "cross4",
    backend: Backend | None = None,
    out_dtype: torch.dtype | None = None,
    triton_options: TritonScanOptions | None = None,
    delta_proj_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Selective scan over the K routes of a 2-D ``pattern``, merged back onto the map.

    Args:
        x: (b, c, H, W) map.
        delta: (b, K, c, H, W) step sizes per pixel (route k's value at the step visiting (h, w)).
        A: (K*c, n) float32.
        B, C: (b, K, n, H, W) per pixel.
        D, delta_bias: (K*c,) float32, a Python float (every channel) or None.
        delta_softplus: softplus(delta + delta_bias) as the step size.
        pattern: "cross4" (K 4), "bidi" (K 2) or "omni8" (K 8); "atrous" is refused (not fused).
        backend: "triton" (fused CUDA kernels), "numba" (CPU: fused without autograd, else the unfused
            chain on the numba scan), "ref" / "torch" (unfused chain), None = best.
        out_dtype: dtype of the result (default x's).
        triton_options: how the fused Triton kernels run (``TritonScanOptions``: e.g. the merge
            scheme ``fused_atomic``; None = the defaults); the other backends do not read it.
        delta_proj_weight: (K, c, R), same dtype as x, or None. Given, ``delta`` holds low-rank factors
            (b, K, R, *spatial) and route k's step sizes are ``delta_proj_weight[k] @ delta[:, k]`` (Mamba's
            dt_proj); the numba inference kernel expands them step by step for R <= 16, the other paths
            with one GEMM first (gradients flow to both through it).

    Returns:
        (b, c, H, W): sum over routes of each route's scan output at the pixels it visits.
        See the module docstring for the exact layout.
    """
    return _scan("selective_scan_2d", x, delta, A, B, C, D, delta_bias, delta_softplus, pattern, backend,
                 out_dtype, 4, triton_options, delta_proj_weight)


@torch.compiler.disable
def selective_scan_3d(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    pattern: str = "tri6",
    backend: Backend | None = None,
    out_dtype: torch.dtype | None = None,
    triton_options: TritonScanOptions | None = None,
    delta_proj_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``selective_scan_2d`` for volumes: x (b, c, D, H, W), delta (b, K, c, D, H, W),
    B and C (b, K, n, D, H, W), pattern "tri6" (K 6); returns (b, c, D, H, W); other arguments as there."""
    return _scan("selective_scan_3d", x, delta, A, B, C, D, delta_bias, delta_softplus, pattern, backend,
                 out_dtype, 5, triton_options, delta_proj_weight)
