"""Public functions of the scan patterns: index maps, cross scan / merge (2-D and 3-D), and the Triton-only
entry points the interpreter tests use."""
from __future__ import annotations

from typing import Literal

import torch

from .._backend import pick_backend
from .autograd import Merge, Scan
from .checks import (
    check_pattern,
    check_sizes,
    merge_2d_args,
    merge_3d_args,
    scan_2d_args,
    scan_3d_args,
)
from .maps import PATTERNS_2D, PATTERNS_3D, index_cpu, length_2d

PATTERN_BACKENDS: tuple[str, ...] = ("torch", "triton")
"""Implementations of the scan / merge; ``None`` as a backend picks the best available."""

PatternBackend = Literal["torch", "triton"]


def scan_index(pattern: str, hw: tuple[int, int]) -> torch.Tensor:
    """Index map of a 2-D pattern: a (K, L_k) int64 CPU tensor (a fresh copy).

    Entry [k, i] is the flat row-major position read by route k at step i:
    p = h * W + w for every pattern except ``"atrous"``, whose positions index the
    zero-padded grid (Hp, Wp) = (H + H % 2, W + W % 2), p = h * Wp + w.
    ``cross_scan(x, pattern)[:, k, :, i] == x_flat[:, :, index[k, i]]`` with x_flat
    the (padded) map flattened to (b, c, Hp * Wp).
    """
    pattern = check_pattern("scan_index", pattern, PATTERNS_2D)
    sizes = check_sizes("scan_index", "hw", hw, "H, W")
    return index_cpu(pattern, sizes).clone()


def scan_index_3d(pattern: str, dhw: tuple[int, int, int]) -> torch.Tensor:
    """Index map of a 3-D pattern: a (K, D * H * W) int64 CPU tensor (a fresh copy).

    Entry [k, i] is the flat position p = d * H * W + h * W + w read by route k at step i.
    """
    pattern = check_pattern("scan_index_3d", pattern, PATTERNS_3D)
    sizes = check_sizes("scan_index_3d", "dhw", dhw, "D, H, W")
    return index_cpu(pattern, sizes).clone()


def scan_length(pattern: str, hw: tuple[int, int]) -> int:
    """L_k, the length of each route of a 2-D pattern over an (H, W) map.

    H * W, except ``"atrous"``: ceil(H / 2) * ceil(W / 2).
    """
    pattern = check_pattern("scan_length", pattern, PATTERNS_2D)
    height, width = check_sizes("scan_length", "hw", hw, "H, W")
    return length_2d(pattern, height, width)


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
    x, pattern, sizes = scan_2d_args("cross_scan", x, pattern)
    return Scan.apply(x, pattern, sizes, pick_backend("cross_scan", backend, x.device, PATTERN_BACKENDS))


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
    ys, pattern, sizes = merge_2d_args("cross_merge", ys, pattern, hw)
    return Merge.apply(ys, pattern, sizes, pick_backend("cross_merge", backend, ys.device, PATTERN_BACKENDS))


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
    x, pattern, sizes = scan_3d_args("cross_scan_3d", x, pattern)
    return Scan.apply(x, pattern, sizes, pick_backend("cross_scan_3d", backend, x.device, PATTERN_BACKENDS))


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
    ys, pattern, sizes = merge_3d_args("cross_merge_3d", ys, pattern, dhw)
    return Merge.apply(ys, pattern, sizes, pick_backend("cross_merge_3d", backend, ys.device, PATTERN_BACKENDS))


# ----------------------------------------------------------------------------- Triton only (no device check)


def cross_scan_triton(x: torch.Tensor, pattern: str = "cross4") -> torch.Tensor:
    """``cross_scan`` on the Triton kernels: x (b, c, H, W) -> (b, K, c, L_k); backward = merge kernel."""
    x, pattern, sizes = scan_2d_args("cross_scan_triton", x, pattern)
    return Scan.apply(x, pattern, sizes, "triton")


def cross_merge_triton(ys: torch.Tensor, pattern: str, hw: tuple[int, int]) -> torch.Tensor:
    """``cross_merge`` on the Triton kernels: ys (b, K, c, L_k) -> (b, c, H, W); backward = scan kernel."""
    ys, pattern, sizes = merge_2d_args("cross_merge_triton", ys, pattern, hw)
    return Merge.apply(ys, pattern, sizes, "triton")


def cross_scan_3d_triton(x: torch.Tensor, pattern: str = "tri6") -> torch.Tensor:
    """``cross_scan_3d`` on the Triton kernels: x (b, c, D, H, W) -> (b, K, c, D * H * W)."""
    x, pattern, sizes = scan_3d_args("cross_scan_3d_triton", x, pattern)
    return Scan.apply(x, pattern, sizes, "triton")


def cross_merge_3d_triton(ys: torch.Tensor, pattern: str, dhw: tuple[int, int, int]) -> torch.Tensor:
    """``cross_merge_3d`` on the Triton kernels: ys (b, K, c, D * H * W) -> (b, c, D, H, W)."""
    ys, pattern, sizes = merge_3d_args("cross_merge_3d_triton", ys, pattern, dhw)
    return Merge.apply(ys, pattern, sizes, "triton")
