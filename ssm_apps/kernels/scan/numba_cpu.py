"""Selective scan compiled for the CPU with numba (the "numba" backend; no build step: numba's wheel).

The recurrence of :mod:`.ref` runs over blocks of ``WIDTH`` channels of one batch element, the channels
innermost, so every step is a few vector instructions over the block (on the 2-core machine 3.5-4x
faster forward and backward than one channel per thread at S-Mamba's shape (32, 256, 11, n 2)). The
kernels read u, the step sizes and dy token-major, (b, L, d), which is how a Mamba block's projections
lay them out (no copy there), and write y and the gradients the same way. exp(delta A) is computed in
the kernel as 2**(delta * A log2(e)) by ``exp2_rows``: a degree-7 polynomial of the fraction times the
power of two built from its exponent bits, so it vectorises (numba's scalar ``math.exp`` does not;
relative error under 4e-6 over the float32 range, inputs below -127 (in log2) give 0, NaN stays NaN).

The step-size bias and its softplus (``softplus_rows``), the D skip and the SiLU gate run inside the
kernels too, so torch makes no pass over the (b, L, d) tensors around the scan. Memory stays
O(b * d * n) beyond the inputs; with autograd the forward pass also keeps the state at every
``CHUNK``-th step (b * d * n * L / CHUNK floats); the backward pass walks the sequence in reverse,
recomputes each chunk's step sizes, states and decays from its saved start (thread-local buffers)
and accumulates the adjoints (dy = dout * silu(z) with the gate; the gate's own gradient uses the
recomputed output):

    g_t   = g_{t+1} * exp(delta_{t+1} A) + dy_t C_t          (adjoint of h_t, per state n)
    du_t  = sum_n g_t delta_t B_t          dC_t += dy_t h_t     dB_t += g_t delta_t u_t
    ddelta_t = sum_n g_t (A exp(delta_t A) h_{t-1} + u_t B_t)  dA += g_t delta_t exp(delta_t A) h_{t-1}

The backward threads each own one (batch, channel-group) pair, so the B / C gradients of the channels
sharing a group are summed without races. numba compiles the kernels on first use (a few seconds,
cached on disk where the package directory is writable).
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

CHUNK = 64  # steps between saved states in the forward pass (backward recomputes within a chunk)
WIDTH = 64  # channels per block: the vector loops' length
LOG2E = 1.4426950408889634
# flags that let LLVM vectorise the loops and the block sums (no nnan / ninf: NaN and Inf propagate)
FASTMATH = {"reassoc", "contract", "nsz"}


@njit(inline="always", fastmath=FASTMATH, cache=True)
def exp2_rows(v, p, e, w):  # pragma: no cover - compiled
    """2**v[j] = p[j] * (e[j]'s bits read as float32) for j < w; v clamped to [-127, 128] (0 and Inf
    at the ends), NaN kept (it makes p NaN)."""
    for j in range(w):
        x = v[j]
        x = np.float32(-127.0) if x < np.float32(-127.0) else x
        x = np.float32(128.0) if x > np.float32(128.0) else x
        m = np.floor(x + np.float32(0.5))
        f = x - m  # in [-0.5, 0.5]: 2**f by its Taylor polynomial in f ln 2
        q = np.float32(1.5252733804e-5)
        q = q * f + np.float32(1.5403530393e-4)
        q = q * f + np.float32(1.3333558146e-3)
        q = q * f + np.float32(9.6181291076e-3)
        q = q * f + np.float32(5.5504108665e-2)
        q = q * f + np.float32(2.4022650696e-1)
        q = q * f + np.float32(6.9314718056e-1)
        p[j] = q * f + np.float32(1.0)
        e[j] = (np.int32(m) + np.int32(127)) << np.int32(23)


@njit(inline="always", fastmath=FASTMATH, cache=True)
def softplus_rows(x, out, sig, v, p, e, w):  # pragma: no cover - compiled
    """out[j] = softplus(x[j]) = max(x, 0) + log1p(exp(-|x|)) and sig[j] = sigmoid(x[j]) (its
    derivative) for j < w, vectorised: exp through ``exp2_rows`` (v, p, e: its work rows),
    log1p(y) = 2 atanh(s) with s = y / (2 + y) in [0, 1/3] by its series to s**13 (relative error
    ~1e-7, also for tiny y)."""
    for j in range(w):
        v[j] = -abs(x[j]) * np.float32(LOG2E)
    exp2_rows(v, p, e, w)
    two_m = e.view(np.float32)
    for j in range(w):
        xj = x[j]
        y = p[j] * two_m[j]
        s = y / (np.float32(2.0) + y)
        s2 = s * s
        q = np.float32(1.0 / 13.0)
        q = q * s2 + np.float32(1.0 / 11.0)
        q = q * s2 + np.float32(1.0 / 9.0)
        q = q * s2 + np.float32(1.0 / 7.0)
        q = q * s2 + np.float32(1.0 / 5.0)
        q = q * s2 + np.float32(1.0 / 3.0)
        q = q * s2 + np.float32(1.0)
        out[j] = max(xj, np.float32(0.0)) + np.float32(2.0) * s * q
        r = np.float32(1.0) / (np.float32(1.0) + y)
        sig[j] = r if xj >= np.float32(0.0) else y * r


@njit(inline="always", fastmath=FASTMATH, cache=True)
def sigmoid_rows(x, sig, v, p, e, w):  # pragma: no cover - compiled
    """sig[j] = 1 / (1 + exp(-x[j])) for j < w (exp through ``exp2_rows``; Inf for very negative x
    gives 0)."""
    for j in range(w):
        v[j] = -x[j] * np.float32(LOG2E)
    exp2_rows(v, p, e, w)
    two_m = e.view(np.float32)
    for j in range(w):
        sig[j] = np.float32(1.0) / (np.float32(1.0) + p[j] * two_m[j])


@njit(inline="always", fastmath=FASTMATH, cache=True)
def step_rows(raw, bias_r, softplus, biased, d_r, sig, v, p, e, w):  # pragma: no cover - compiled
    """The block's step sizes at one time step: d_r = softplus(raw + bias) (sig = its derivative) or
    raw + bias (sig = 1); ``biased`` is a work row."""
    if softplus:
        for j in range(w):
            biased[j] = raw[j] + bias_r[j]
        softplus_rows(biased, d_r, sig, v, p, e, w)
    else:
        for j in range(w):
            d_r[j] = raw[j] + bias_r[j]
            sig[j] = 1.0


@njit(inline="always", fastmath=FASTMATH, cache=True)
def _groups_of(d0, w, per_group, out):  # pragma: no cover - compiled
    """out[j] = the group of channel d0 + j; returns whether the block lies in one group."""
    for j in range(w):
        out[j] = (d0 + j) // per_group
    return out[0] == out[w - 1]


@njit(inline="always", fastmath=FASTMATH, cache=True)
def _fill_rows(dst, X, bi, groups, one, t, w):  # pragma: no cover - compiled
    """dst[k, j] = X[bi, groups[j], k, t] for the block's w channels."""
    for k in range(dst.shape[0]):
        if one:
            dst[k, :w] = X[bi, groups[0], k, t]
        else:
            for j in range(w):
                dst[k, j] = X[bi, groups[j], k, t]


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _forward(u, delta, bias, softplus, A2, B, C, D, z, y, h_last, saved, chunk):  # pragma: no cover - compiled
    """u, delta (raw), z, y: (b, L, d); bias, D: (d,); A2: (n, d) = A.T log2(e); B, C: (b, g, n, L);
    saved: (b, chunks, n, d). y = (scan + D u) * silu(z), z of shape (0, 0, 0) for no gate."""
    bsz, length, dim = u.shape
    n = A2.shape[0]
    per_b, per_c = dim // B.shape[1], dim // C.shape[1]
    save = saved.shape[1] > 0
    gate = z.shape[0] > 0
    n_blocks = (dim + WIDTH - 1) // WIDTH
    for item in prange(bsz * n_blocks):
        bi = item // n_blocks
        d0 = (item - bi * n_blocks) * WIDTH
        w = min(WIDTH, dim - d0)
        h = np.zeros((n, WIDTH), np.float32)
        bt = np.empty((n, WIDTH), np.float32)
        ct = np.empty((n, WIDTH), np.float32)
        v = np.empty(WIDTH, np.float32)
        p = np.empty(WIDTH, np.float32)
        e = np.empty(WIDTH, np.int32)
        two_m = e.view(np.float32)
        biased = np.empty(WIDTH, np.float32)
        d_r = np.empty(WIDTH, np.float32)
        sig = np.empty(WIDTH, np.float32)
        x = np.empty(WIDTH, np.float32)
        acc = np.empty(WIDTH, np.float32)
        gb = np.empty(WIDTH, np.int64)
        gc = np.empty(WIDTH, np.int64)
        one_b, one_c = _groups_of(d0, w, per_b, gb), _groups_of(d0, w, per_c, gc)
        D_r, bias_r = D[d0:d0 + w], bias[d0:d0 + w]
        for t in range(length):
            if save and t % chunk == 0:
                for k in range(n):
                    saved[bi, t // chunk, k, d0:d0 + w] = h[k, :w]
            _fill_rows(bt, B, bi, gb, one_b, t, w)
            _fill_rows(ct, C, bi, gc, one_c, t, w)
            u_r = u[bi, t, d0:d0 + w]
            step_rows(delta[bi, t, d0:d0 + w], bias_r, softplus, biased, d_r, sig, v, p, e, w)
            for j in range(w):
                x[j] = d_r[j] * u_r[j]
                acc[j] = D_r[j] * u_r[j]
            for k in range(n):
                a2 = A2[k, d0:d0 + w]
                for j in range(w):
                    v[j] = d_r[j] * a2[j]
                exp2_rows(v, p, e, w)
                for j in range(w):
                    h[k, j] = p[j] * two_m[j] * h[k, j] + x[j] * bt[k, j]
                    acc[j] += h[k, j] * ct[k, j]
            if gate:
                z_r = z[bi, t, d0:d0 + w]
                sigmoid_rows(z_r, sig, v, p, e, w)
                for j in range(w):
                    acc[j] *= z_r[j] * sig[j]
            y[bi, t, d0:d0 + w] = acc[:w]
        for k in range(n):
            for j in range(w):
                h_last[bi, d0 + j, k] = h[k, j]


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def _backward(u, delta, bias, softplus, A, A2, B, C, D, z, saved, dout, dh_last, chunk,
              du, ddelta, dA, dB, dC, dD, dz, dbias):  # pragma: no cover - compiled
    """Layouts as ``_forward``; A: (n, d); dout, du, ddelta (of the raw steps), dz: (b, L, d);
    dB, dC: (b, groups, n, L) zeroed; dA (b, d, n), dD, dbias (b, d): per batch element."""
    bsz, length, dim = u.shape
    n = A.shape[0]
    groups = dB.shape[1]
    per_g = dim // groups
    per_b, per_c = dim // B.shape[1], dim // C.shape[1]
    n_chunks = saved.shape[1]
    gate = z.shape[0] > 0
    for item in prange(bsz * groups):
        bi = item // groups
        gi = item - bi * groups
        hs = np.empty((chunk + 1, n, WIDTH), np.float32)  # hs[s] = h_{t0 + s - 1}
        decay = np.empty((chunk, n, WIDTH), np.float32)  # exp(delta_t A) of the chunk, from the recompute
        steps = np.empty((chunk, WIDTH), np.float32)  # delta_t of the chunk
        slopes = np.empty((chunk, WIDTH), np.float32)  # d delta_t / d raw_t
        g = np.empty((n, WIDTH), np.float32)
        dA_acc = np.empty((n, WIDTH), np.float32)
        dD_acc = np.empty(WIDTH, np.float32)
        dbias_acc = np.empty(WIDTH, np.float32)
        bt = np.empty((n, WIDTH), np.float32)
        ct = np.empty((n, WIDTH), np.float32)
        v = np.empty(WIDTH, np.float32)
        p = np.empty(WIDTH, np.float32)
        e = np.empty(WIDTH, np.int32)
        two_m = e.view(np.float32)
        biased = np.empty(WIDTH, np.float32)
        x = np.empty(WIDTH, np.float32)
        dy_r = np.empty(WIDTH, np.float32)
        sz = np.empty(WIDTH, np.float32)
        du_r = np.empty(WIDTH, np.float32)
        ddt_r = np.empty(WIDTH, np.float32)
        prod_b = np.empty(WIDTH, np.float32)
        prod_c = np.empty(WIDTH, np.float32)
        gb = np.empty(WIDTH, np.int64)
        gc = np.empty(WIDTH, np.int64)
        for d0 in range(gi * per_g, (gi + 1) * per_g, WIDTH):
            w = min(WIDTH, (gi + 1) * per_g - d0)
            one_b, one_c = _groups_of(d0, w, per_b, gb), _groups_of(d0, w, per_c, gc)
            for k in range(n):
                for j in range(w):
                    g[k, j] = dh_last[bi, d0 + j, k]
                    dA_acc[k, j] = 0.0
            dD_acc[:w] = 0.0
            dbias_acc[:w] = 0.0
            D_r, bias_r = D[d0:d0 + w], bias[d0:d0 + w]
            for c in range(n_chunks - 1, -1, -1):
                t0 = c * chunk
                t1 = min(length, t0 + chunk)
                for k in range(n):
                    hs[0, k, :w] = saved[bi, c, k, d0:d0 + w]
                for t in range(t0, t1):  # recompute the chunk's steps, states and decays
                    s = t - t0
                    _fill_rows(bt, B, bi, gb, one_b, t, w)
                    u_r = u[bi, t, d0:d0 + w]
                    d_r = steps[s]
                    step_rows(delta[bi, t, d0:d0 + w], bias_r, softplus, biased, d_r, slopes[s], v, p, e, w)
                    for j in range(w):
                        x[j] = d_r[j] * u_r[j]
                    for k in range(n):
                        a2 = A2[k, d0:d0 + w]
                        for j in range(w):
                            v[j] = d_r[j] * a2[j]
                        exp2_rows(v, p, e, w)
                        for j in range(w):
                            a = p[j] * two_m[j]
                            decay[s, k, j] = a
                            hs[s + 1, k, j] = a * hs[s, k, j] + x[j] * bt[k, j]
                for t in range(t1 - 1, t0 - 1, -1):
                    s = t - t0
                    _fill_rows(bt, B, bi, gb, one_b, t, w)
                    _fill_rows(ct, C, bi, gc, one_c, t, w)
                    u_r = u[bi, t, d0:d0 + w]
                    d_r = steps[s]
                    dout_r = dout[bi, t, d0:d0 + w]
                    if gate:  # out = core * silu(z): dcore = dout silu(z), dz = dout core silu'(z)
                        z_r = z[bi, t, d0:d0 + w]
                        sigmoid_rows(z_r, sz, v, p, e, w)
                        for j in range(w):
                            x[j] = D_r[j] * u_r[j]  # the core output, recomputed
                        for k in range(n):
                            for j in range(w):
                                x[j] += hs[s + 1, k, j] * ct[k, j]
                        dz_r = dz[bi, t, d0:d0 + w]
                        for j in range(w):
                            dy_r[j] = dout_r[j] * z_r[j] * sz[j]
                            dz_r[j] = dout_r[j] * x[j] * sz[j] * (np.float32(1.0) + z_r[j] * (np.float32(1.0) - sz[j]))
                    else:
                        dy_r[:w] = dout_r[:w]
                    for j in range(w):
                        dD_acc[j] += dy_r[j] * u_r[j]
                        du_r[j] = dy_r[j] * D_r[j]
                        ddt_r[j] = 0.0
                    for k in range(n):
                        a_r = A[k, d0:d0 + w]
                        for j in range(w):
                            gk = g[k, j] + dy_r[j] * ct[k, j]
                            a = decay[s, k, j]
                            h_prev = hs[s, k, j]
                            prod_c[j] = dy_r[j] * hs[s + 1, k, j]
                            prod_b[j] = gk * d_r[j] * u_r[j]
                            du_r[j] += gk * d_r[j] * bt[k, j]
                            ddt_r[j] += gk * (a_r[j] * a * h_prev + u_r[j] * bt[k, j])
                            dA_acc[k, j] += gk * d_r[j] * a * h_prev
                            g[k, j] = gk * a
                        sum_b = np.float32(0.0)
                        sum_c = np.float32(0.0)
                        for j in range(w):
                            sum_b += prod_b[j]
                            sum_c += prod_c[j]
                        dB[bi, gi, k, t] += sum_b
                        dC[bi, gi, k, t] += sum_c
                    slope = slopes[s]
                    for j in range(w):
                        ddt_r[j] *= slope[j]
                        dbias_acc[j] += ddt_r[j]
                    du[bi, t, d0:d0 + w] = du_r[:w]
                    ddelta[bi, t, d0:d0 + w] = ddt_r[:w]
            for k in range(n):
                for j in range(w):
                    dA[bi, d0 + j, k] = dA_acc[k, j]
            dD[bi, d0:d0 + w] = dD_acc[:w]
            dbias[bi, d0:d0 + w] = dbias_acc[:w]


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


def _token_major(t: torch.Tensor) -> torch.Tensor:
    """(b, d, L) as a contiguous (b, L, d) float32 tensor (free when t is the transpose of one)."""
    return t.float().transpose(1, 2).contiguous()


class _NumbaScan(torch.autograd.Function):
    """The scan with the step-size bias, softplus, skip and gate inside the kernels."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus):  # type: ignore[override]
        batch, dim, length = u.shape
        u_t, delta_t = _token_major(u), _token_major(delta)
        z_t = torch.empty(0, 0, 0) if z is None else _token_major(z)  # (0, 0, 0): no gate
        bias = torch.zeros(dim) if delta_bias is None else delta_bias.float().contiguous()
        A2 = (A.t() * LOG2E).contiguous()
        Bg, Cg = _as_grouped(B, batch, length), _as_grouped(C, batch, length)
        needs_grad = any(ctx.needs_input_grad)
        n = A.shape[1]
        saved = _empty(batch, -(-length // CHUNK) if needs_grad else 0, n, dim)
        y_t, h_last = _empty(batch, length, dim), _empty(batch, dim, n)
        _forward(_np(u_t), _np(delta_t), _np(bias), softplus, _np(A2), _np(Bg), _np(Cg), _np(D), _np(z_t),
                 y_t.numpy(), h_last.numpy(), saved.numpy(), CHUNK)
        ctx.save_for_backward(u_t, delta_t, z_t, bias, A, A2, B, C, D, saved)
        ctx.softplus = softplus
        return y_t.transpose(1, 2), h_last

    @staticmethod
    def backward(ctx, dout, dh_last):  # type: ignore[override]
        u_t, delta_t, z_t, bias, A, A2, B, C, D, saved = ctx.saved_tensors
        batch, length, dim = u_t.shape
        Bg, Cg = _as_grouped(B, batch, length), _as_grouped(C, batch, length)
        groups = max(Bg.shape[1], Cg.shape[1])
        n = A.shape[1]
        dout_t = _empty(batch, length, dim, zero=True) if dout is None else _token_major(dout)
        dh_last = _empty(batch, dim, n, zero=True) if dh_last is None else dh_last.float().contiguous()
        du_t, ddelta_t, dz_t = _empty(batch, length, dim), _empty(batch, length, dim), torch.empty_like(z_t)
        dA, dD, dbias = _empty(batch, dim, n), _empty(batch, dim), _empty(batch, dim)
        dBg, dCg = _empty(batch, groups, n, length, zero=True), _empty(batch, groups, n, length, zero=True)
        _backward(_np(u_t), _np(delta_t), _np(bias), ctx.softplus, _np(A.t().contiguous()), _np(A2), _np(Bg),
                  _np(Cg), _np(D), _np(z_t), saved.numpy(), dout_t.numpy(), dh_last.numpy(), CHUNK, du_t.numpy(),
                  ddelta_t.numpy(), dA.numpy(), dBg.numpy(), dCg.numpy(), dD.numpy(), dz_t.numpy(), dbias.numpy())
        gate = z_t.numel() > 0
        return (du_t.transpose(1, 2), ddelta_t.transpose(1, 2), dA.sum(0), _from_grouped(dBg, B),
                _from_grouped(dCg, C), dD.sum(0), dz_t.transpose(1, 2) if gate else None,
                dbias.sum(0) if ctx.needs_input_grad[7] else None, None)


def scan_numba(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole selective scan in the kernels: step-size bias and softplus, recurrence, skip and gate.

    Args:
        u: (b, d, L) CPU input (any float dtype; float32 arithmetic).
        delta: (b, d, L) raw step sizes.
        A: (d, n).
        B: any accepted layout (constant (d, n), shared (b, n, L), grouped (b, g, n, L)).
        C: as B.
        D: (d,) skip weight, or None.
        z: (b, d, L) gate, or None.
        delta_bias: (d,), or None.
        delta_softplus: softplus of ``delta + delta_bias`` as the step size.

    Returns:
        ``(y + D * u) * silu(z)`` (b, d, L) float32 (a transposed view of (b, L, d) memory) and the
        last state (b, d, n) float32.
    """
    dim = u.shape[1]
    D = torch.zeros(dim) if D is None else D.float().contiguous()
    return _NumbaScan.apply(u.float(), delta.float(), A.float().contiguous(), B.float(), C.float(), D,
                            None if z is None else z.float(), delta_bias, bool(delta_softplus))
