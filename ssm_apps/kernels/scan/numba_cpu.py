"""Selective scan compiled for the CPU with numba (the "numba" backend; no build step: numba's wheel).

The recurrence of :mod:`.ref` runs one channel per thread (``prange`` over batch x channels), float32
state in registers, so the forward pass needs O(b * d * n) working memory whatever the length beyond one
(b, d, L) tensor of step sizes: ``delta + delta_bias`` and its softplus run in torch before the kernel
(vectorised there; inside the kernel they were two scalar transcendental calls per step, which made the
kernel twice as slow). With autograd, the forward pass also keeps the state at every ``CHUNK``-th step
(b * d * n * L / CHUNK floats); the backward pass walks the sequence in reverse, recomputes each chunk's
states from its saved start (thread-local buffers of the chunk's states and decays exp(delta_t A), so the
reverse walk calls no transcendental function) and accumulates the adjoints:

    g_t   = g_{t+1} * exp(delta_{t+1} A) + dy_t C_t          (adjoint of h_t, per state n)
    du_t  = sum_n g_t delta_t B_t          dC_t += dy_t h_t     dB_t += g_t delta_t u_t
    ddelta_t = sum_n g_t (A exp(delta_t A) h_{t-1} + u_t B_t)  dA += g_t delta_t exp(delta_t A) h_{t-1}

The backward threads each own one (batch, channel-group) block, so the B / C gradients of the
channels sharing a group are summed without races. numba compiles the kernels on first use (a few
seconds, cached on disk where the package directory is writable).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange

CHUNK = 64  # steps between saved states in the forward pass (backward recomputes within a chunk)


@njit(inline="always", cache=True)
def step(h, d_t, u_t, A, row, B, C, bi, jb, jc, t):  # pragma: no cover - compiled
    """One step of the recurrence for one channel: h <- exp(d_t A[row]) h + d_t u_t B[bi, jb, :, t] in
    place; returns C[bi, jc, :, t] . h (the skip is the caller's). Shared by the fused route kernel."""
    x = d_t * u_t
    acc = np.float32(0.0)
    for k in range(h.shape[0]):
        h[k] = math.exp(d_t * A[row, k]) * h[k] + x * B[bi, jb, k, t]
        acc += h[k] * C[bi, jc, k, t]
    return acc


@njit(parallel=True, cache=True)
def _forward(u, delta, A, B, C, D, y, h_last, saved, chunk):  # pragma: no cover - compiled
    bsz, dim, length = u.shape
    n = A.shape[1]
    gb, gc = B.shape[1], C.shape[1]
    per_b, per_c = dim // gb, dim // gc
    save = saved.shape[2] > 0
    for idx in prange(bsz * dim):
        bi = idx // dim
        di = idx - bi * dim
        jb, jc = di // per_b, di // per_c
        h = np.zeros(n, np.float32)
        for t in range(length):
            if save and t % chunk == 0:
                for k in range(n):
                    saved[bi, di, t // chunk, k] = h[k]
            u_t = u[bi, di, t]
            y[bi, di, t] = step(h, delta[bi, di, t], u_t, A, di, B, C, bi, jb, jc, t) + D[di] * u_t
        for k in range(n):
            h_last[bi, di, k] = h[k]

@njit(parallel=True, cache=True)
def _backward(u, delta, A, B, C, D, saved, dy, dh_last, chunk, du, ddelta, dA, dB, dC, dD):  # pragma: no cover
    bsz, dim, length = u.shape
    n = A.shape[1]
    groups = dB.shape[1]
    per_g = dim // groups
    gb, gc = B.shape[1], C.shape[1]
    per_b, per_c = dim // gb, dim // gc
    n_chunks = saved.shape[2]
    for idx in prange(bsz * groups):
        bi = idx // groups
        gi = idx - bi * groups
        hs = np.empty((chunk + 1, n), np.float32)
        decay = np.empty((chunk, n), np.float32)  # exp(delta_t A) of the chunk, from the recompute
        g = np.empty(n, np.float32)
        for di in range(gi * per_g, (gi + 1) * per_g):
            jb, jc = di // per_b, di // per_c
            for k in range(n):
                g[k] = dh_last[bi, di, k]
                dA[bi, di, k] = 0.0
            dD_acc = 0.0
            for c in range(n_chunks - 1, -1, -1):
                t0 = c * chunk
                t1 = min(length, t0 + chunk)
                for k in range(n):  # recompute the chunk's states: hs[s] = h_{t0 + s - 1}
                    hs[0, k] = saved[bi, di, c, k]
                for t in range(t0, t1):
                    s = t - t0
                    d_t = delta[bi, di, t]
                    x = d_t * u[bi, di, t]
                    for k in range(n):
                        decay[s, k] = math.exp(d_t * A[di, k])
                        hs[s + 1, k] = decay[s, k] * hs[s, k] + x * B[bi, jb, k, t]
                for t in range(t1 - 1, t0 - 1, -1):
                    s = t - t0
                    d_t = delta[bi, di, t]
                    u_t = u[bi, di, t]
                    dy_t = dy[bi, di, t]
                    dD_acc += dy_t * u_t
                    du_t = dy_t * D[di]
                    ddt_t = np.float32(0.0)
                    for k in range(n):
                        g[k] += dy_t * C[bi, jc, k, t]
                        dC[bi, gi, k, t] += dy_t * hs[s + 1, k]
                        a = decay[s, k]
                        b_k = B[bi, jb, k, t]
                        dB[bi, gi, k, t] += g[k] * d_t * u_t
                        du_t += g[k] * d_t * b_k
                        ddt_t += g[k] * (A[di, k] * a * hs[s, k] + u_t * b_k)
                        dA[bi, di, k] += g[k] * d_t * a * hs[s, k]
                        g[k] *= a
                    du[bi, di, t] = du_t
                    ddelta[bi, di, t] = ddt_t
            dD[bi, di] = dD_acc


def _as_grouped(X: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """B or C in any accepted layout as (b, g, n, L): constant (d, n) -> g = d (expanded, no copy)."""
    if X.dim() == 2:
        return X[None, :, :, None].expand(batch, -1, -1, length)
    if X.dim() == 3:
        return X[:, None]
    return X


def _from_grouped(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The (b, G, n, L) gradient summed back to ``like``'s layout and group count."""
    b, groups, n, length = grad.shape
    if like.dim() == 2:
        return grad.sum((0, 3)).reshape(like.shape)
    g = 1 if like.dim() == 3 else like.shape[1]
    grad = grad.reshape(b, g, groups // g, n, length).sum(2)
    return grad[:, 0] if like.dim() == 3 else grad


def _empty(*shape: int, zero: bool = False) -> torch.Tensor:
    """A plain float32 CPU tensor (not a subclass such as MONAI's MetaTensor, whatever the inputs are)."""
    return torch.zeros(shape) if zero else torch.empty(shape)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


class _NumbaScan(torch.autograd.Function):
    """The recurrence over given step sizes (bias and softplus are applied before, by torch)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D):  # type: ignore[override]
        batch, dim, length = u.shape
        Bg, Cg = _as_grouped(B, batch, length), _as_grouped(C, batch, length)
        needs_grad = any(ctx.needs_input_grad)
        n = A.shape[1]
        saved = _empty(batch, dim, -(-length // CHUNK) if needs_grad else 0, n)
        y, h_last = _empty(batch, dim, length), _empty(batch, dim, n)
        _forward(_np(u), _np(delta), _np(A), _np(Bg), _np(Cg), _np(D), y.numpy(), h_last.numpy(), saved.numpy(),
                 CHUNK)
        ctx.save_for_backward(u, delta, A, B, C, D, saved)
        return y, h_last

    @staticmethod
    def backward(ctx, dy, dh_last):  # type: ignore[override]
        u, delta, A, B, C, D, saved = ctx.saved_tensors
        batch, dim, length = u.shape
        Bg, Cg = _as_grouped(B, batch, length), _as_grouped(C, batch, length)
        groups = max(Bg.shape[1], Cg.shape[1])
        n = A.shape[1]
        dy = _empty(batch, dim, length, zero=True) if dy is None else dy.float().contiguous()
        dh_last = _empty(batch, dim, n, zero=True) if dh_last is None else dh_last.float().contiguous()
        du, ddelta, dA = _empty(batch, dim, length), _empty(batch, dim, length), _empty(batch, dim, n)
        dD = _empty(batch, dim)
        dBg, dCg = _empty(batch, groups, n, length, zero=True), _empty(batch, groups, n, length, zero=True)
        _backward(_np(u), _np(delta), _np(A), _np(Bg), _np(Cg), _np(D), saved.numpy(), dy.numpy(), dh_last.numpy(),
                  CHUNK, du.numpy(), ddelta.numpy(), dA.numpy(), dBg.numpy(), dCg.numpy(), dD.numpy())
        return du, ddelta, dA.sum(0), _from_grouped(dBg, B), _from_grouped(dCg, C), dD.sum(0)


def step_sizes(delta: torch.Tensor, delta_bias: torch.Tensor | None, delta_softplus: bool) -> torch.Tensor:
    """The steps the kernels take, computed in torch (vectorised, with its autograd): (b, d, L) float32
    ``delta + delta_bias[:, None]``, through softplus (threshold 20) when ``delta_softplus``."""
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    return F.softplus(delta) if delta_softplus else delta


def scan_numba(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The scan with the skip fused in (no gate); the step-size bias and softplus run in torch before it
    (vectorised there: in the kernel they were two of the three scalar transcendental calls per step).

    Args:
        u: (b, d, L) float32 CPU input.
        delta: (b, d, L) float32 raw step sizes.
        A: (d, n) float32.
        B: any accepted layout (constant (d, n), shared (b, n, L), grouped (b, g, n, L)).
        C: as B.
        D: (d,) float32 skip weight, or None.
        delta_bias: (d,) float32, or None.
        delta_softplus: softplus of ``delta + delta_bias``.

    Returns:
        ``y + D * u`` (b, d, L) float32 and the last state (b, d, n) float32.
    """
    dim = u.shape[1]
    D = torch.zeros(dim) if D is None else D.float().contiguous()
    delta = step_sizes(delta, delta_bias, delta_softplus)
    u, delta, A = (t.float().contiguous() for t in (u, delta, A))
    return _NumbaScan.apply(u, delta, A, B.float(), C.float(), D)
