"""Fused K-route selective scan for inference on the CPU, compiled with numba (the "numba" backend of
``selective_scan_2d`` / ``selective_scan_3d`` when no gradient is needed).

One thread owns one (batch, channel) pair and runs the K routes of that channel one after the other,
reading x, the step sizes and B, C through the pattern's index map (step t of route k visits pixel
``index[k, t]``) and adding each step's output at the pixel it visits: no scanned copies of x, no
gathers of delta / B / C into scan order and no scatter back (on the 2-core CPU those cost as much as
the recurrence itself). The threads write disjoint channels of the output, so there are no races.
The step-size bias and softplus run in torch before the kernel, as in ``scan.numba_cpu``.
With autograd the unfused chain (``cross_scan`` -> ``scan_numba`` -> ``cross_merge``) runs instead.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from ..scan.numba_cpu import step_sizes


@njit(inline="always", cache=True)
def step(h, d_t, u_t, A, row, B, C, bi, jb, jc, t):  # pragma: no cover - compiled
    """One step of the recurrence for one channel: h <- exp(d_t A[row]) h + d_t u_t B[bi, jb, :, t] in
    place; returns C[bi, jc, :, t] . h (the skip is the caller's)."""
    x = d_t * u_t
    acc = np.float32(0.0)
    for k in range(h.shape[0]):
        h[k] = math.exp(d_t * A[row, k]) * h[k] + x * B[bi, jb, k, t]
        acc += h[k] * C[bi, jc, k, t]
    return acc


@njit(parallel=True, cache=True)
def _routes_forward(x, delta, A, B, C, D, index, out):  # pragma: no cover - compiled
    bsz, dim, length = x.shape
    routes = index.shape[0]
    n = A.shape[1]
    for idx in prange(bsz * dim):
        bi = idx // dim
        ci = idx - bi * dim
        h = np.empty(n, np.float32)
        for k in range(routes):
            row = k * dim + ci
            for j in range(n):
                h[j] = 0.0
            for t in range(length):
                p = index[k, t]
                u_t = x[bi, ci, p]
                out[bi, ci, p] += step(h, delta[bi, k, ci, p], u_t, A, row, B, C, bi, k, k, p) + D[row] * u_t


def selective_scan_routes_numba(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    index: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> torch.Tensor:
    """The fused K-route scan, forward only (call it where no gradient is needed).

    Args:
        x: (b, c, L) CPU map, pixels flattened.
        delta: (b, K, c, L) step sizes per pixel.
        A: (K*c, n) float32.
        B: (b, K, n, L) per pixel.
        C: (b, K, n, L) per pixel.
        index: (K, L) integer: step t of route k visits pixel ``index[k, t]``.
        D: (K*c,) float32 skip weight, or None.
        delta_bias: (K*c,) float32, or None.
        delta_softplus: softplus of ``delta + delta_bias`` as the step size.

    Returns:
        (b, c, L) float32: the sum over routes of each route's output at the pixels it visits.
    """
    b, k, c, length = delta.shape
    delta = step_sizes(delta.reshape(b, k * c, length), delta_bias, delta_softplus).view(b, k, c, length)
    D = torch.zeros(k * c) if D is None else D.float()
    arrays = [t.detach().float().contiguous().numpy() for t in (x, delta, A, B, C, D)]
    out = torch.zeros(b, c, length)
    _routes_forward(*arrays, index.to(torch.int64).contiguous().numpy(), out.numpy())
    return out
