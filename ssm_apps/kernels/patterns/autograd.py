"""The scan and merge as autograd Functions: each one's backward is the other, on the same backend."""
from __future__ import annotations

import torch

from .torch import merge_torch, scan_torch


def _impl(backend: str):
    """(scan, merge) of ``backend``: the PyTorch ops, or the Triton kernels (imported lazily: they need
    triton)."""
    if backend == "triton":
        from .triton import merge_routes, scan_routes

        return scan_routes, merge_routes
    return scan_torch, merge_torch


class Scan(torch.autograd.Function):
    """The scan; its backward is the merge (its exact adjoint) on the same backend."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, pattern: str, sizes: tuple[int, ...], backend: str) -> torch.Tensor:  # type: ignore[override]
        ctx.meta = (pattern, sizes, backend)
        return _impl(backend)[0](x, pattern, sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        pattern, sizes, backend = ctx.meta
        return Merge.apply(grad, pattern, sizes, backend), None, None, None


class Merge(torch.autograd.Function):
    """The merge; its backward is the scan (its exact adjoint) on the same backend."""

    @staticmethod
    def forward(ctx, ys: torch.Tensor, pattern: str, sizes: tuple[int, ...], backend: str) -> torch.Tensor:  # type: ignore[override]
        ctx.meta = (pattern, sizes, backend)
        return _impl(backend)[1](ys, pattern, sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        pattern, sizes, backend = ctx.meta
        return Scan.apply(grad, pattern, sizes, backend), None, None, None

