"""Fused K-route selective scan for inference on the CPU, compiled with numba (the "numba" backend of
``selective_scan_2d`` / ``selective_scan_3d`` when no gradient is needed).

One thread owns one (batch, block of ``WIDTH`` channels) pair and runs the K routes of those channels
one after the other, reading x, the step sizes and B, C through the pattern's index map (step t of
route k visits pixel ``index[k, t]``) and adding each step's output at the pixel it visits: no scanned
copies of x, no gathers of delta / B / C into scan order and no scatter back (on the 2-core CPU those
cost as much as the recurrence itself). The channels are innermost (x, delta and the output
pixel-major, one copy each way), so each step is a few vector instructions over the block with
``scan.numba_cpu``'s vectorisable exp2; the output comes back as a channels-last view. The threads
write disjoint channels of the output, so there are no races. The step-size bias and softplus run in the
kernel too (``scan.numba_cpu.step_rows``, shared with the plain scan): no pass over the (b, K, c, L) step sizes in torch.
Low-rank step sizes (``delta_proj_weight``: Mamba's dt_proj applied to the dt rows of x_proj) are
expanded in the kernel, R multiply-adds per channel and step, so the (b, K, c, L) step sizes are never
written to memory and read back. With autograd the unfused chain (``cross_scan`` -> ``scan_numba`` ->
``cross_merge``) runs instead.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from ..scan.numba_cpu import FASTMATH, LOG2E, WIDTH, exp2_rows, step_rows


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _routes_forward(x, delta, dt_w, bias, softplus, A2, B, C, D, index, out):  # pragma: no cover - compiled
    """x, out: (b, L, c) pixels x channels; delta: (b, K, L, c) raw step sizes, or with R = dt_w.shape[1] > 0
    their low-rank factors (b, K, L, R), expanded per step by dt_w (K, R, c); ``+ bias`` (K*c,) and
    through softplus when ``softplus`` in the kernel; A2: (n, K*c) = A.T log2(e); B, C: (b, K, n, L);
    D: (K*c,); index: (K, L)."""
    bsz, length, dim = x.shape
    routes = index.shape[0]
    n = A2.shape[0]
    rank = dt_w.shape[1]
    n_blocks = (dim + WIDTH - 1) // WIDTH
    for item in prange(bsz * n_blocks):
        bi = item // n_blocks
        c0 = (item - bi * n_blocks) * WIDTH
        w = min(WIDTH, dim - c0)
        h = np.empty((n, WIDTH), np.float32)
        v = np.empty(WIDTH, np.float32)
        p = np.empty(WIDTH, np.float32)
        e = np.empty(WIDTH, np.int32)
        two_m = e.view(np.float32)
        xd = np.empty(WIDTH, np.float32)
        acc = np.empty(WIDTH, np.float32)
        raw = np.empty(WIDTH, np.float32)
        expanded = np.empty(WIDTH, np.float32)
        d_r = np.empty(WIDTH, np.float32)
        sig = np.empty(WIDTH, np.float32)  # the steps' derivative, unused here
        w_k = np.empty((rank, WIDTH), np.float32)  # this route's rows of dt_w for the block
        for k in range(routes):
            r0 = k * dim + c0  # this block's rows of A, D and the bias
            h[:, :w] = 0.0
            D_r = D[r0:r0 + w]
            bias_r = bias[r0:r0 + w]
            for r in range(rank):
                w_k[r, :w] = dt_w[k, r, c0:c0 + w]
            for t in range(length):
                px = index[k, t]
                u_r = x[bi, px, c0:c0 + w]
                if rank > 0:
                    factors = delta[bi, k, px]
                    expanded[:w] = 0.0
                    for r in range(rank):
                        f = factors[r]
                        for j in range(w):
                            expanded[j] += f * w_k[r, j]
                    step_rows(expanded, bias_r, softplus, raw, d_r, sig, v, p, e, w)
                else:
                    step_rows(delta[bi, k, px, c0:c0 + w], bias_r, softplus, raw, d_r, sig, v, p, e, w)
                for j in range(w):
                    xd[j] = d_r[j] * u_r[j]
                    acc[j] = D_r[j] * u_r[j]
                for s in range(n):
                    a2 = A2[s, r0:r0 + w]
                    b_s, c_s = B[bi, k, s, px], C[bi, k, s, px]
                    for j in range(w):
                        v[j] = d_r[j] * a2[j]
                    exp2_rows(v, p, e, w)
                    for j in range(w):
                        h[s, j] = p[j] * two_m[j] * h[s, j] + xd[j] * b_s
                        acc[j] += h[s, j] * c_s
                o_r = out[bi, px, c0:c0 + w]
                for j in range(w):
                    o_r[j] += acc[j]


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
    delta_proj_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The fused K-route scan, forward only (call it where no gradient is needed).

    Args:
        x: (b, c, L) CPU map, pixels flattened.
        delta: (b, K, c, L) step sizes per pixel, or with ``delta_proj_weight`` their low-rank factors
            (b, K, R, L), expanded in the kernel step by step (no (b, K, c, L) tensor is written or read).
        A: (K*c, n) float32.
        B: (b, K, n, L) per pixel.
        C: (b, K, n, L) per pixel.
        index: (K, L) integer: step t of route k visits pixel ``index[k, t]``.
        D: (K*c,) float32 skip weight, or None.
        delta_bias: (K*c,) float32, or None.
        delta_softplus: softplus of ``delta + delta_bias`` as the step size.
        delta_proj_weight: (K, c, R): route k's step sizes are ``delta_proj_weight[k] @ delta[:, k]``.

    Returns:
        (b, c, L) float32 (a transposed view of a (b, L, c) tensor): the sum over routes of each route's
        output at the pixels it visits.
    """
    b, c, length = x.shape
    k = delta.shape[1]
    D = torch.zeros(k * c) if D is None else D.float()
    bias = torch.zeros(k * c) if delta_bias is None else delta_bias.float()
    # channels innermost, as the kernel loops (no copy where the caller made them pixel-major)
    x_t = x.detach().float().transpose(1, 2).contiguous()  # (b, L, c)
    delta_t = delta.detach().float().transpose(2, 3).contiguous()  # (b, K, L, c or R)
    dt_w = (torch.zeros(k, 0, c) if delta_proj_weight is None
            else delta_proj_weight.detach().float().transpose(1, 2).contiguous())  # (K, R, c)
    A2 = (A.detach().float().t() * LOG2E).contiguous()
    B, C, D, bias = (t.detach().float().contiguous().numpy() for t in (B, C, D, bias))
    out = torch.zeros(b, length, c)
    _routes_forward(x_t.numpy(), delta_t.numpy(), dt_w.numpy(), bias, bool(delta_softplus), A2.numpy(), B, C, D,
                    index.to(torch.int64).contiguous().numpy(), out.numpy())
    return out.transpose(1, 2)
