"""Helpers shared by the Triton scan kernels: ``@triton.jit`` tile, offset and math helpers, and the
host-side argument helpers of the launches."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._backend import interpreting
from ..layout import num_groups

_LOG2E = tl.constexpr(1.4426950408889634)
_LN2 = tl.constexpr(0.6931471805599453)

# PTX approximate log2 when compiled (tl.log2 lowers to a ~20-instruction polynomial); the
# interpreter, which cannot run inline PTX, uses tl.log2. Fixed when this module is imported.
_FAST_LOG2 = tl.constexpr(not interpreting())


# ----------------------------------------------------------------------------- helpers

@triton.jit
def _combine(a1, b1, a2, b2):
    # (a1, b1) then (a2, b2): h -> a2 (a1 h + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _or(a, b):
    return a | b


@triton.jit
def _pick(x, sel, axis: tl.constexpr):
    """The slice of float32 ``x`` where boolean ``sel`` is true along ``axis`` (exactly one).

    A bitwise-or reduction: inside a thread ``v | 0`` folds away, so this is free there."""
    bits = tl.where(sel, x.to(tl.int32, bitcast=True), 0)
    return tl.reduce(bits, axis, _or).to(tl.float32, bitcast=True)


@triton.jit
def _log2(x):
    if _FAST_LOG2:
        return tl.inline_asm_elementwise("lg2.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)
    else:
        return tl.log2(x)


@triton.jit
def _softplus(x):
    # log(1 + e^x); identity above 20 (mamba_ssm / torch threshold); e^x below -15 (log1p(e) ~ e)
    e = tl.exp2(x * _LOG2E)
    sp = _log2(1.0 + e) * _LN2
    sp = tl.where(x < -15.0, e, sp)
    return tl.where(x > 20.0, x, sp)


@triton.jit
def _dt_of(raw, bias, mask, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(raw delta + bias, step size) as float32 [T, BD]; the step size is zero where masked."""
    raw = raw.to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias[None, :]
    if SOFTPLUS:
        dt = _softplus(raw)
    else:
        dt = raw
    return raw, tl.where(mask, dt, 0.0)


@triton.jit
def _subchunk_states(u, dt, A2, Bt, h, is_first, is_last):
    """The state recurrence over one sub-chunk of T steps, entered with the state ``h`` [NB, BD].

    u, dt: [T, BD] float32 (dt zero where masked); A2: [NB, BD], A * log2(e); Bt: [T, NB, 1] for a
    time-varying B, [1, NB, BD] for a constant one; is_first / is_last: [T, 1, 1] step masks.
    Returns ``a`` = exp(dt A) and ``bx`` = dt u B (without the carried state), both [T, NB, BD],
    the states after every step ``hs`` [T, NB, BD], and the state after the sub-chunk [NB, BD].
    The carried state enters as b_0 += a_0 h; ``associative_scan`` with ``_combine`` then runs
    h_t = a_t h_{t-1} + bx_t along T, one FMA per step inside a thread (see the package docstring).
    """
    a = tl.exp2(dt[:, None, :] * A2[None, :, :])
    bx = (dt * u)[:, None, :] * Bt
    bxh = tl.where(is_first, bx + a * h[None, :, :], bx)
    _, hs = tl.associative_scan((a, bxh), 0, _combine)
    return a, bx, hs, _pick(hs, is_last, 0)


@triton.jit
def _coords(dim, dg, BD: tl.constexpr):
    """(channel program id, batch row, channel group, channel offsets in the group) of this program."""
    pid = tl.program_id(0)
    nblk = tl.cdiv(dg, BD)
    blk = pid % nblk
    bg = pid // nblk
    groups = dim // dg
    bi = bg // groups
    grp = bg % groups
    offs_d = blk * BD + tl.arange(0, BD)
    return pid, bi, grp, offs_d


@triton.jit
def _sub_range(L, seg, seg_ck, KS: tl.constexpr, T: tl.constexpr):
    """Sub-chunks [c_begin, c_end) of sequence segment ``seg`` (``seg_ck`` checkpoint chunks long)."""
    n_sub = tl.cdiv(L, T)
    c_begin = seg * (seg_ck * KS)
    c_end = tl.minimum(n_sub, c_begin + seg_ck * KS)
    return n_sub, c_begin, c_end


@triton.jit
def _rows(bi, grp, offs_d, ch, dim, L, stride_x_batch, stride_x_channel, stride_delta_batch, stride_delta_route,
          stride_delta_channel, GATHER: tl.constexpr):
    """Per-channel base offsets [BD]: (delta-layout row, x-layout row).

    Plain scan: (bi * dim + ch) * L for both. Fused pattern scan (GATHER): delta-like tensors
    (b, K, c, L) at bi * stride_delta_batch + route * stride_delta_route + i * stride_delta_channel,
    x-like ones (b, c, L) at bi * stride_x_batch + i * stride_x_channel."""
    if GATHER:
        row = (bi.to(tl.int64) * stride_delta_batch + grp.to(tl.int64) * stride_delta_route
               + offs_d.to(tl.int64) * stride_delta_channel)
        xrow = bi.to(tl.int64) * stride_x_batch + offs_d.to(tl.int64) * stride_x_channel
    else:
        row = (bi * dim + ch).to(tl.int64) * L
        xrow = row
    return row, xrow


@triton.jit
def _program_tile(dim, dg, dstate, L, stride_x_batch, stride_x_channel, stride_delta_batch, stride_delta_route,
                  stride_delta_channel, NB: tl.constexpr, T: tl.constexpr, BD: tl.constexpr, GATHER: tl.constexpr):
    """This program's tile, shared by the scan kernels: ids and channel offsets (``_coords``), the
    channel / state masks, global channel indices ``ch``, state and step offsets, the per-channel
    row bases (``_rows``) and ``base2`` [T, BD], the offsets of (bi, ch, t) in the first sub-chunk."""
    pid, bi, grp, offs_d = _coords(dim, dg, BD)
    mask_d = offs_d < dg
    ch = grp * dg + offs_d
    offs_n = tl.arange(0, NB)
    mask_n = offs_n < dstate
    offs_t = tl.arange(0, T)
    mask_nd = mask_n[:, None] & mask_d[None, :]
    row, xrow = _rows(bi, grp, offs_d, ch, dim, L, stride_x_batch, stride_x_channel, stride_delta_batch,
                      stride_delta_route, stride_delta_channel, GATHER)
    base2 = row[None, :] + offs_t[:, None]
    return pid, bi, grp, offs_d, mask_d, ch, offs_n, mask_n, offs_t, mask_nd, row, xrow, base2


@triton.jit
def _channel_vector(ptr, ch, mask_d, BD: tl.constexpr, PRESENT: tl.constexpr):
    """A (d,) float32 parameter (D, delta_bias) at channels ``ch`` [BD]; zeros when not given."""
    v = tl.zeros([BD], dtype=tl.float32)
    if PRESENT:
        v = tl.load(ptr + ch, mask=mask_d, other=0.0)
    return v


@triton.jit
def _state_matrix(ptr, ch, offs_n, dstate, mask_nd):
    """A (d, n) matrix (A, or a constant B / C) as a float32 [NB, BD] tile at channels ``ch``."""
    return tl.load(ptr + ch[None, :] * dstate + offs_n[:, None], mask=mask_nd, other=0.0).to(tl.float32)


@triton.jit
def _seq_base(ptr, bi, grp, ratio, stride_batch, stride_group, offs_n, L):
    """[1, NB] pointers to step 0 of a time-varying B / C (or its gradient) of group grp // ratio."""
    return ptr + bi.to(tl.int64) * stride_batch + (grp // ratio).to(tl.int64) * stride_group + offs_n[None, :].to(tl.int64) * L


@triton.jit
def _offsets(idx_ptr, grp, t, mask_t, L, row, xrow, base2, c, stride_x_pixel, stride_delta_pixel, T: tl.constexpr,
             GATHER: tl.constexpr):
    """(delta-layout offsets [T, BD], x-layout offsets [T, BD], positions [T]) of sub-chunk c.

    Plain scan: both are row + t. Fused pattern scan (GATHER): step t of route ``grp`` visits pixel
    p = idx[grp, t]; offsets row + p * stride_delta_pixel and xrow + p * stride_x_pixel."""
    if GATHER:
        pos = tl.load(idx_ptr + grp * L + t, mask=mask_t, other=0)
        p64 = pos.to(tl.int64)[:, None]
        return row[None, :] + p64 * stride_delta_pixel, xrow[None, :] + p64 * stride_x_pixel, pos
    else:
        ptr2 = base2 + c * T
        return ptr2, ptr2, t


@triton.jit
def _next_offsets(idx_ptr, grp, t, L, row, ptr2, stride_delta_pixel, GATHER: tl.constexpr):
    """Delta-layout offsets of step t + 1 (for dt_{t+1} in the backward scans)."""
    if GATHER:
        pos = tl.load(idx_ptr + grp * L + t + 1, mask=t + 1 < L, other=0)
        return row[None, :] + pos.to(tl.int64)[:, None] * stride_delta_pixel
    else:
        return ptr2 + 1


# ----------------------------------------------------------------------------- host side

def _cdiv(a: int, b: int) -> int:
    """ceil(a / b) for ints on the host (``triton.cdiv`` costs microseconds per call)."""
    return -(-a // b)


def _next_pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


_BC_ARG_NAMES = {name: (f"stride_{name}_batch", f"stride_{name}_group", f"ratio_{name}_group") for name in "BC"}


def _bc_args(X: torch.Tensor, groups: int, name: str) -> tuple[torch.Tensor, bool, dict[str, int]]:
    """(tensor, varies in time, {stride_<name>_batch, stride_<name>_group, ratio_<name>_group}) for a B or
    C argument ``name``: its (b, g, n, L) view's batch and group strides and the channel groups per group
    of X (zeros and 1 when X is constant (d, n))."""
    batch, group, ratio = _BC_ARG_NAMES[name]
    if X.dim() == 2:
        return X, False, {batch: 0, group: 0, ratio: 1}
    X4 = X if X.dim() == 4 else X.unsqueeze(1)
    return X4, True, {batch: X4.stride(0), group: X4.stride(1), ratio: groups // X4.shape[1]}


def _sizes(delta, A, B, C, checkpoint_steps: int):
    batch, dim, length = delta.shape
    dstate = A.shape[1]
    groups = num_groups(B, C)
    n_ckpt = _cdiv(length, checkpoint_steps)
    return batch, dim, length, dstate, groups, dim // groups, _next_pow2(dstate), n_ckpt


_GATHER_STRIDE_NAMES = ("stride_x_batch", "stride_x_channel", "stride_x_pixel", "stride_delta_batch",
                        "stride_delta_route", "stride_delta_channel", "stride_delta_pixel")
_NO_GATHER_STRIDES = dict.fromkeys(_GATHER_STRIDE_NAMES, 0)


def _gather_strides(u: torch.Tensor, delta: torch.Tensor, groups: int, gather: bool) -> dict[str, int]:
    """Element strides of x (b, c, L) and delta (b, K*c, L) by batch, (route,) channel and pixel for the
    fused pattern scan, as the kernels' ``stride_x_*`` / ``stride_delta_*`` arguments; zeros for the
    plain scan."""
    if not gather:
        return dict(_NO_GATHER_STRIDES)
    dg = delta.shape[1] // groups
    return dict(zip(_GATHER_STRIDE_NAMES, (u.stride(0), u.stride(1), u.stride(2), delta.stride(0),
                                           dg * delta.stride(1), delta.stride(1), delta.stride(2))))


def _flags(*bits) -> int:
    return sum(int(bool(b)) << i for i, b in enumerate(bits))

