"""Selective scan in Triton: forward and backward kernels behind a ``torch.autograd.Function``.

Same semantics as mamba_ssm's ``selective_scan_fn`` (see ``selective_scan.py``)::

    dt_t = softplus(delta_t + delta_bias)              (bias / softplus optional)
    h_t  = exp(dt_t A) h_{t-1} + dt_t u_t B_t          (per channel, state n; h_{-1} = 0)
    out  = (sum_n C_t h_t + D u_t) * silu(z_t)         (D, z optional)

Design
------
Grid: (program, segment). A program owns (batch row, channel group, block of ``BD`` channels of
the group) and walks its segment of the sequence in sub-chunks of ``T`` steps, keeping the
state ``h`` (NB, BD) in registers (NB = n rounded up to a power of two). A sub-chunk is a
(T, NB, BD) register tile ordered so that Triton's default layout spreads the warp's lanes over
(NB, BD) only (``NB * BD >= 32``) and keeps all T steps of a (state, channel) pair in one
thread: ``tl.associative_scan`` along T with ``(a1, b1), (a2, b2) -> (a1 a2, a2 b1 + b2)`` then
lowers to one FMA per step with no shuffles. The carried state enters the scan as
``b_0 += a_0 h`` and leaves as the scan's last row (picked with a bitwise-or reduction, free
inside a thread). B and C of the channel group are read once per sub-chunk as (T, NB) tiles
shared by the program's channels ((NB, BD) when constant). All arithmetic is float32; exp is
``exp2`` with A pre-scaled by log2(e).

Sequence parallelism: when batch x channels is small (fewer than SEGMENT_MIN_ROWS rows, e.g.
b=1, d=1024, L=64k) the sequence is split into segments of whole checkpoint chunks. A first
pass computes each segment's end state from zero and its sum of dt, a tiny kernel chains them
(h_in[s+1] = exp(A sum dt) h_in[s] + h_end[s]), and the main pass runs every segment from its
entering state. The backward mirrors it for dh (pass 1: dh at each segment start with nothing
entering from later steps, and the sum of dt_{t+1}; then a reverse chain).

Saved for backward: the inputs (as given, made contiguous) and the float32 state at the
end of every ``CHECKPOINT_STEPS``-step chunk, laid out (b, n_chunks, n, d) -- that is
b*d*n*L/256 floats, independent of the tile sizes the autotuner picks.

Backward: each program walks the checkpoint chunks of its segment in reverse. For each chunk
it (1) re-runs the state recurrence from the saved state, writing the state before each
sub-chunk to a small per-program scratch buffer, then (2) walks the sub-chunks in reverse:
recomputes the forward scan from that state (and y, for the z gate), runs the reverse scan
``dh_t = C_t dy_t + a_{t+1} dh_{t+1}`` (pairs ``(a_{t+1}, C_t dy_t)``, ``a_{t+1}`` from delta
shifted one step, as flip / forward scan / flip; ``dh`` carried between sub-chunks in
registers), and forms du, ddelta (through softplus and delta_bias), dz, and partial sums of
dA, dD, d delta_bias (per batch row and segment, summed on the host), dB and dC (summed over
the program's channels, then ``atomic_add`` into float32 (b, g, n, L) buffers when B/C vary
in time; per-row partials (b, d, n) when constant). ``a_t h_{t-1}`` is formed as
``h_t - dt_t u_t B_t`` as in mamba_ssm. A gradient flowing into the returned last state seeds
``dh`` after the last step.

Fused pattern scan (``GATHER``, used by ``scan_2d.selective_scan_2d`` / ``selective_scan_3d``): the
same kernels with a constexpr flag and an int32 (K, L) index map. Channel groups are the routes
(B/C (b, K, n, L) per pixel, group k = route k); step t of route k visits pixel idx[k, t]: u is
loaded from the map x (b, c, L) at that pixel, delta (b, K*c, L), B and C at that pixel of their
per-pixel rows (both through element strides, so x channels-last and delta in (b, L, K, c) memory
give a warp's lanes consecutive channels: coalesced for every route); the output is summed over
routes into a float32 map with relaxed ``atomic_add`` (``ATOMIC_OUT``; or a per-route buffer,
``FUSED_ATOMIC = False``, measured slower). The backward gathers dout the same way, accumulates du
over routes with atomics and writes ddelta / dB / dC at the pixels. With GATHER off every branch
compiles away (plain scan unchanged: H100 VMamba-T row 0.333 / 0.984 ms fwd / bwd after).

Tuning: ``triton.autotune`` picks (T, BD) per kernel -- one warp per program -- keyed on the
bucketed (n, L, batch x channels), the flags and the dtypes; the pick is cached and later
calls launch it directly. Under ``TRITON_INTERPRET=1`` (CPU tests) a single small
configuration is used instead (``INTERPRET_CONFIG``).
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .layout import num_groups

_LOG2E = tl.constexpr(1.4426950408889634)
_LN2 = tl.constexpr(0.6931471805599453)

#: Steps between saved states; every sub-chunk length T the autotuner may pick divides it.
CHECKPOINT_STEPS = 256
#: The one configuration run by the Triton interpreter (which cannot autotune).
INTERPRET_CONFIG = {"T": 8, "BD": 2, "num_warps": 1}
#: When true, skip autotuning and run the first candidate configuration (quick compiled checks).
FIRST_CONFIG_ONLY = False
#: Sequence parallelism: with fewer than SEGMENT_MIN_ROWS (batch x channel) rows, the sequence is
#: split into segments (whole checkpoint chunks) scanned in parallel, aiming at SEGMENT_TARGET_ROWS
#: row-segments; FORCE_SEGMENTS (tests) fixes their number.
SEGMENT_MIN_ROWS = 4096
SEGMENT_TARGET_ROWS = 16384
FORCE_SEGMENTS: int | None = None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# PTX approximate log2 when compiled (tl.log2 lowers to a ~20-instruction polynomial); the
# interpreter, which cannot run inline PTX, uses tl.log2. Fixed when this module is imported.
_FAST_LOG2 = tl.constexpr(not _interpreting())


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
def _rows(bi, grp, offs_d, ch, dim, L, sxb, sxc, sdb, sdk, sdc, GATHER: tl.constexpr):
    """Per-channel base offsets [BD]: (delta-layout row, x-layout row).

    Plain scan: (bi * dim + ch) * L for both. Fused pattern scan (GATHER): delta-like tensors
    (b, K, c, L) at bi * sdb + route * sdk + i * sdc, x-like ones (b, c, L) at bi * sxb + i * sxc."""
    if GATHER:
        row = bi.to(tl.int64) * sdb + grp.to(tl.int64) * sdk + offs_d.to(tl.int64) * sdc
        xrow = bi.to(tl.int64) * sxb + offs_d.to(tl.int64) * sxc
    else:
        row = (bi * dim + ch).to(tl.int64) * L
        xrow = row
    return row, xrow


@triton.jit
def _program_tile(dim, dg, dstate, L, sxb, sxc, sdb, sdk, sdc,
                  NB: tl.constexpr, T: tl.constexpr, BD: tl.constexpr, GATHER: tl.constexpr):
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
    row, xrow = _rows(bi, grp, offs_d, ch, dim, L, sxb, sxc, sdb, sdk, sdc, GATHER)
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
def _seq_base(ptr, bi, grp, ratio, s_b, s_g, offs_n, L):
    """[1, NB] pointers to step 0 of a time-varying B / C (or its gradient) of group grp // ratio."""
    return ptr + bi.to(tl.int64) * s_b + (grp // ratio).to(tl.int64) * s_g + offs_n[None, :].to(tl.int64) * L


@triton.jit
def _offsets(idx_ptr, grp, t, mask_t, L, row, xrow, base2, c, sxp, sdp, T: tl.constexpr, GATHER: tl.constexpr):
    """(delta-layout offsets [T, BD], x-layout offsets [T, BD], positions [T]) of sub-chunk c.

    Plain scan: both are row + t. Fused pattern scan (GATHER): step t of route ``grp`` visits pixel
    p = idx[grp, t]; offsets row + p * sdp and xrow + p * sxp (pixel strides)."""
    if GATHER:
        pos = tl.load(idx_ptr + grp * L + t, mask=mask_t, other=0)
        p64 = pos.to(tl.int64)[:, None]
        return row[None, :] + p64 * sdp, xrow[None, :] + p64 * sxp, pos
    else:
        ptr2 = base2 + c * T
        return ptr2, ptr2, t


@triton.jit
def _next_offsets(idx_ptr, grp, t, L, row, ptr2, sdp, GATHER: tl.constexpr):
    """Delta-layout offsets of step t + 1 (for dt_{t+1} in the backward scans)."""
    if GATHER:
        pos = tl.load(idx_ptr + grp * L + t + 1, mask=t + 1 < L, other=0)
        return row[None, :] + pos.to(tl.int64)[:, None] * sdp
    else:
        return ptr2 + 1


# ----------------------------------------------------------------------------- forward

@triton.jit
def _scan_fwd_kernel(
    u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr, st_ptr, h0_ptr, idx_ptr,
    L, dim, dstate, dg, n_ckpt, n_seg, seg_ck,
    sB_b, sB_g, rB, sC_b, sC_g, rC,
    sxb, sxc, sxp, sdb, sdk, sdc, sdp,
    key_n, key_L, key_P, key_F,
    NB: tl.constexpr, S: tl.constexpr, T: tl.constexpr, BD: tl.constexpr,
    HAS_Z: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    B_VAR: tl.constexpr, C_VAR: tl.constexpr, SAVE_ALL: tl.constexpr, SAVE_LAST: tl.constexpr,
    HAS_H0: tl.constexpr, GATHER: tl.constexpr = False, ATOMIC_OUT: tl.constexpr = False,
):
    KS: tl.constexpr = S // T
    pid, bi, grp, offs_d, mask_d, ch, offs_n, mask_n, offs_t, mask_nd, row, xrow, base2 = _program_tile(
        dim, dg, dstate, L, sxb, sxc, sdb, sdk, sdc, NB, T, BD, GATHER)
    seg = tl.program_id(1)

    A2 = _state_matrix(A_ptr, ch, offs_n, dstate, mask_nd) * _LOG2E
    bias = _channel_vector(bias_ptr, ch, mask_d, BD, HAS_BIAS)
    Dv = _channel_vector(D_ptr, ch, mask_d, BD, HAS_D)
    if B_VAR:
        B_base = _seq_base(B_ptr, bi, grp, rB, sB_b, sB_g, offs_n, L)
    else:
        Bc = _state_matrix(B_ptr, ch, offs_n, dstate, mask_nd)
    if C_VAR:
        C_base = _seq_base(C_ptr, bi, grp, rC, sC_b, sC_g, offs_n, L)
    else:
        Cc = _state_matrix(C_ptr, ch, offs_n, dstate, mask_nd)

    # states: (b, n_ckpt, n, d); segment carries: (b, n_seg, n, d)
    st_ptrs = st_ptr + (bi.to(tl.int64) * n_ckpt * dstate + offs_n[:, None]) * dim + ch[None, :]
    st_step = dstate * dim
    if HAS_H0:
        h = tl.load(h0_ptr + ((bi * n_seg + seg).to(tl.int64) * dstate + offs_n[:, None]) * dim + ch[None, :],
                    mask=mask_nd, other=0.0)
    else:
        h = tl.zeros([NB, BD], dtype=tl.float32)
    is_first = (offs_t == 0)[:, None, None]
    is_last = (offs_t == T - 1)[:, None, None]
    n_sub, c_begin, c_end = _sub_range(L, seg, seg_ck, KS, T)
    for c in range(c_begin, c_end):
        t = c * T + offs_t
        mask_t = t < L
        m2 = mask_t[:, None] & mask_d[None, :]
        ptr2, uoff, pos = _offsets(idx_ptr, grp, t, mask_t, L, row, xrow, base2, c, sxp, sdp, T, GATHER)
        u = tl.load(u_ptr + uoff, mask=m2, other=0.0).to(tl.float32)
        _, dt = _dt_of(tl.load(dt_ptr + ptr2, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS)
        dtu = dt * u
        a = tl.exp2(dt[:, None, :] * A2[None, :, :])
        if B_VAR:
            mtn = mask_t[:, None] & mask_n[None, :]
            Bt = tl.load(B_base + pos[:, None], mask=mtn, other=0.0).to(tl.float32)
            bx = dtu[:, None, :] * Bt[:, :, None]
        else:
            bx = dtu[:, None, :] * Bc[None, :, :]
        bx = tl.where(is_first, bx + a * h[None, :, :], bx)
        _, hs = tl.associative_scan((a, bx), 0, _combine)
        h = _pick(hs, is_last, 0)
        if C_VAR:
            mtn = mask_t[:, None] & mask_n[None, :]
            Ct = tl.load(C_base + pos[:, None], mask=mtn, other=0.0).to(tl.float32)
            y = tl.sum(hs * Ct[:, :, None], axis=1)
        else:
            y = tl.sum(hs * Cc[None, :, :], axis=1)
        if HAS_D:
            y += Dv[None, :] * u
        if HAS_Z:
            zz = tl.load(z_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
            y = y * zz / (1.0 + tl.exp2(-zz * _LOG2E))
        if ATOMIC_OUT:  # GATHER: sum the routes into the float32 (b, c, L) map
            tl.atomic_add(out_ptr + uoff, y, mask=m2, sem="relaxed")
        else:  # plain: scan order; GATHER: per-route rows at their pixels (b, K*c, L)
            tl.store(out_ptr + ptr2, y.to(out_ptr.dtype.element_ty), mask=m2)
        if SAVE_ALL:
            at_ckpt = ((c + 1) % KS == 0) | (c == n_sub - 1)
            tl.store(st_ptrs + tl.cast(c // KS, tl.int64) * st_step, h, mask=mask_nd & at_ckpt)
    if SAVE_LAST:
        if not SAVE_ALL:
            tl.store(st_ptrs, h, mask=mask_nd & (seg == n_seg - 1))


@triton.jit
def _scan_fwd_seg_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, bias_ptr, hend_ptr, dts_ptr, idx_ptr,
    L, dim, dstate, dg, n_seg, seg_ck,
    sB_b, sB_g, rB,
    sxb, sxc, sxp, sdb, sdk, sdc, sdp,
    key_n, key_L, key_P, key_F,
    NB: tl.constexpr, S: tl.constexpr, T: tl.constexpr, BD: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, B_VAR: tl.constexpr, GATHER: tl.constexpr = False,
):
    """Sequence-parallel pass 1: each segment's end state from a zero start, and its sum of dt."""
    KS: tl.constexpr = S // T
    pid, bi, grp, offs_d, mask_d, ch, offs_n, mask_n, offs_t, mask_nd, row, xrow, base2 = _program_tile(
        dim, dg, dstate, L, sxb, sxc, sdb, sdk, sdc, NB, T, BD, GATHER)
    seg = tl.program_id(1)
    A2 = _state_matrix(A_ptr, ch, offs_n, dstate, mask_nd) * _LOG2E
    bias = _channel_vector(bias_ptr, ch, mask_d, BD, HAS_BIAS)
    if B_VAR:
        B_base = _seq_base(B_ptr, bi, grp, rB, sB_b, sB_g, offs_n, L)
    else:
        Bc = _state_matrix(B_ptr, ch, offs_n, dstate, mask_nd)
    is_first = (offs_t == 0)[:, None, None]
    is_last = (offs_t == T - 1)[:, None, None]
    h = tl.zeros([NB, BD], dtype=tl.float32)
    dsum = tl.zeros([BD], dtype=tl.float32)
    n_sub, c_begin, c_end = _sub_range(L, seg, seg_ck, KS, T)
    for c in range(c_begin, c_end):
        t = c * T + offs_t
        mask_t = t < L
        m2 = mask_t[:, None] & mask_d[None, :]
        ptr2, uoff, pos = _offsets(idx_ptr, grp, t, mask_t, L, row, xrow, base2, c, sxp, sdp, T, GATHER)
        u = tl.load(u_ptr + uoff, mask=m2, other=0.0).to(tl.float32)
        _, dt = _dt_of(tl.load(dt_ptr + ptr2, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS)
        a = tl.exp2(dt[:, None, :] * A2[None, :, :])
        if B_VAR:
            Bt = tl.load(B_base + pos[:, None], mask=mask_t[:, None] & mask_n[None, :], other=0.0)
            bx = (dt * u)[:, None, :] * Bt.to(tl.float32)[:, :, None]
        else:
            bx = (dt * u)[:, None, :] * Bc[None, :, :]
        bx = tl.where(is_first, bx + a * h[None, :, :], bx)
        _, hs = tl.associative_scan((a, bx), 0, _combine)
        h = _pick(hs, is_last, 0)
        dsum += tl.sum(dt, axis=0)
    segrow = (bi * n_seg + seg).to(tl.int64)
    tl.store(hend_ptr + (segrow * dstate + offs_n[:, None]) * dim + ch[None, :], h, mask=mask_nd)
    tl.store(dts_ptr + segrow * dim + ch, dsum, mask=mask_d)


@triton.jit
def _seg_fwd_combine_kernel(hend_ptr, dts_ptr, A_ptr, hin_ptr, dim, dstate, n_seg,
                            NB: tl.constexpr, BD: tl.constexpr):
    """State entering each segment: h_in[s + 1] = exp(A sum(dt of s)) h_in[s] + h_end[s]."""
    pid = tl.program_id(0)
    nblk = tl.cdiv(dim, BD)
    bi = pid // nblk
    ch = (pid % nblk) * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, NB)
    mask_d = ch < dim
    mask_nd = (offs_n < dstate)[:, None] & mask_d[None, :]
    A2 = _state_matrix(A_ptr, ch, offs_n, dstate, mask_nd) * _LOG2E
    h = tl.zeros([NB, BD], dtype=tl.float32)
    for s in range(0, n_seg):
        segrow = (bi * n_seg + s).to(tl.int64)
        off = (segrow * dstate + offs_n[:, None]) * dim + ch[None, :]
        tl.store(hin_ptr + off, h, mask=mask_nd)
        more = s < n_seg - 1
        dts = tl.load(dts_ptr + segrow * dim + ch, mask=mask_d & more, other=0.0)
        h = tl.exp2(A2 * dts[None, :]) * h + tl.load(hend_ptr + off, mask=mask_nd & more, other=0.0)


# ----------------------------------------------------------------------------- backward

@triton.jit
def _scan_bwd_seg_kernel(
    dt_ptr, z_ptr, A_ptr, C_ptr, bias_ptr, dout_ptr, dhl_ptr, dtsn_ptr, idx_ptr,
    L, dim, dstate, dg, n_seg, seg_ck,
    sC_b, sC_g, rC,
    sxb, sxc, sxp, sdb, sdk, sdc, sdp,
    key_n, key_L, key_P, key_F,
    NB: tl.constexpr, S: tl.constexpr, T: tl.constexpr, BD: tl.constexpr,
    HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, C_VAR: tl.constexpr,
    GATHER: tl.constexpr = False,
):
    """Sequence-parallel backward pass 1: for segments 1.., dh at the segment start with no gradient
    entering from later steps, and the sum of dt_{t+1} over the segment (its dh decay)."""
    KS: tl.constexpr = S // T
    pid, bi, grp, offs_d, mask_d, ch, offs_n, mask_n, offs_t, mask_nd, row, xrow, base2 = _program_tile(
        dim, dg, dstate, L, sxb, sxc, sdb, sdk, sdc, NB, T, BD, GATHER)
    seg = tl.program_id(1) + 1
    A2 = _state_matrix(A_ptr, ch, offs_n, dstate, mask_nd) * _LOG2E
    bias = _channel_vector(bias_ptr, ch, mask_d, BD, HAS_BIAS)
    if C_VAR:
        C_base = _seq_base(C_ptr, bi, grp, rC, sC_b, sC_g, offs_n, L)
    else:
        Cc = _state_matrix(C_ptr, ch, offs_n, dstate, mask_nd)
    is_first = (offs_t == 0)[:, None, None]
    is_last = (offs_t == T - 1)[:, None, None]
    dh = tl.zeros([NB, BD], dtype=tl.float32)
    dsum = tl.zeros([BD], dtype=tl.float32)
    n_sub, c_begin, c_end = _sub_range(L, seg, seg_ck, KS, T)
    for cr in range(0, c_end - c_begin):
        c = c_end - 1 - cr
        t = c * T + offs_t
        mask_t = t < L
        m2 = mask_t[:, None] & mask_d[None, :]
        ptr2, uoff, pos = _offsets(idx_ptr, grp, t, mask_t, L, row, xrow, base2, c, sxp, sdp, T, GATHER)
        m2n = (t + 1 < L)[:, None] & mask_d[None, :]
        nptr2 = _next_offsets(idx_ptr, grp, t, L, row, ptr2, sdp, GATHER)
        _, dt_next = _dt_of(tl.load(dt_ptr + nptr2, mask=m2n, other=0.0), bias, m2n, HAS_BIAS, SOFTPLUS)
        dy = tl.load(dout_ptr + uoff, mask=m2, other=0.0).to(tl.float32)  # GATHER: merged (b, c, L)
        if HAS_Z:
            zz = tl.load(z_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
            dy = dy * zz / (1.0 + tl.exp2(-zz * _LOG2E))
        if C_VAR:
            Ct = tl.load(C_base + pos[:, None], mask=mask_t[:, None] & mask_n[None, :], other=0.0)
            x = Ct.to(tl.float32)[:, :, None] * dy[:, None, :]
        else:
            x = Cc[None, :, :] * dy[:, None, :]
        a_next = tl.exp2(dt_next[:, None, :] * A2[None, :, :])
        x = tl.where(is_last, x + a_next * dh[None, :, :], x)
        _, dhs = tl.associative_scan((tl.flip(a_next, 0), tl.flip(x, 0)), 0, _combine)
        dh = _pick(tl.flip(dhs, 0), is_first, 0)
        dsum += tl.sum(dt_next, axis=0)
    segrow = (bi * n_seg + seg).to(tl.int64)
    tl.store(dhl_ptr + (segrow * dstate + offs_n[:, None]) * dim + ch[None, :], dh, mask=mask_nd)
    tl.store(dtsn_ptr + segrow * dim + ch, dsum, mask=mask_d)


@triton.jit
def _seg_bwd_combine_kernel(dhl_ptr, dtsn_ptr, A_ptr, dlast_ptr, dhin_ptr, dim, dstate, n_seg,
                            NB: tl.constexpr, BD: tl.constexpr, HAS_DLAST: tl.constexpr):
    """dh entering each segment from its end: dh_in[s - 1] = exp(A sum(dt_{t+1} of s)) dh_in[s] + dh_loc[s]."""
    pid = tl.program_id(0)
    nblk = tl.cdiv(dim, BD)
    bi = pid // nblk
    ch = (pid % nblk) * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, NB)
    mask_d = ch < dim
    mask_nd = (offs_n < dstate)[:, None] & mask_d[None, :]
    A2 = _state_matrix(A_ptr, ch, offs_n, dstate, mask_nd) * _LOG2E
    if HAS_DLAST:  # dlast: (b, d, n)
        carry = tl.load(dlast_ptr + (bi * dim + ch[None, :]).to(tl.int64) * dstate + offs_n[:, None],
                        mask=mask_nd, other=0.0)
    else:
        carry = tl.zeros([NB, BD], dtype=tl.float32)
    for sr in range(0, n_seg):
        s = n_seg - 1 - sr
        segrow = (bi * n_seg + s).to(tl.int64)
        off = (segrow * dstate + offs_n[:, None]) * dim + ch[None, :]
        tl.store(dhin_ptr + off, carry, mask=mask_nd)
        more = s > 0
        dtsn = tl.load(dtsn_ptr + segrow * dim + ch, mask=mask_d & more, other=0.0)
        carry = tl.exp2(A2 * dtsn[None, :]) * carry + tl.load(dhl_ptr + off, mask=mask_nd & more, other=0.0)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, st_ptr, dout_ptr, dh0_ptr, scr_ptr,
    du_ptr, ddt_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr, idx_ptr,
    L, dim, dstate, dg, n_ckpt, n_seg, seg_ck,
    sB_b, sB_g, rB, sC_b, sC_g, rC,
    sdB_b, sdB_g, sdC_b, sdC_g,
    sxb, sxc, sxp, sdb, sdk, sdc, sdp,
    key_n, key_L, key_P, key_F,
    NB: tl.constexpr, S: tl.constexpr, T: tl.constexpr, BD: tl.constexpr,
    HAS_Z: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    B_VAR: tl.constexpr, C_VAR: tl.constexpr, HAS_DH0: tl.constexpr,
    GATHER: tl.constexpr = False, ATOMIC_OUT: tl.constexpr = False,
):
    KS: tl.constexpr = S // T
    pid, bi, grp, offs_d, mask_d, ch, offs_n, mask_n, offs_t, mask_nd, row, xrow, base2 = _program_tile(
        dim, dg, dstate, L, sxb, sxc, sdb, sdk, sdc, NB, T, BD, GATHER)
    seg = tl.program_id(1)

    A = _state_matrix(A_ptr, ch, offs_n, dstate, mask_nd)
    A2 = A * _LOG2E
    bias = _channel_vector(bias_ptr, ch, mask_d, BD, HAS_BIAS)
    Dv = _channel_vector(D_ptr, ch, mask_d, BD, HAS_D)
    if B_VAR:
        B_base = _seq_base(B_ptr, bi, grp, rB, sB_b, sB_g, offs_n, L)
        dB_base = _seq_base(dB_ptr, bi, grp, rB, sdB_b, sdB_g, offs_n, L)
    else:
        Bc = _state_matrix(B_ptr, ch, offs_n, dstate, mask_nd)
        dBc = tl.zeros([NB, BD], dtype=tl.float32)
    if C_VAR:
        C_base = _seq_base(C_ptr, bi, grp, rC, sC_b, sC_g, offs_n, L)
        dC_base = _seq_base(dC_ptr, bi, grp, rC, sdC_b, sdC_g, offs_n, L)
    else:
        Cc = _state_matrix(C_ptr, ch, offs_n, dstate, mask_nd)
        dCc = tl.zeros([NB, BD], dtype=tl.float32)

    st_ptrs = st_ptr + (bi.to(tl.int64) * n_ckpt * dstate + offs_n[:, None]) * dim + ch[None, :]
    st_step = dstate * dim
    prog = seg.to(tl.int64) * tl.num_programs(0) + pid
    scr_ptrs = scr_ptr + prog * (KS * NB * BD) + offs_n[:, None] * BD + tl.arange(0, BD)[None, :]
    segrow = (bi * n_seg + seg).to(tl.int64)
    if HAS_DH0:  # dh entering this segment from its end: (b, n_seg, n, d)
        dh_carry = tl.load(dh0_ptr + (segrow * dstate + offs_n[:, None]) * dim + ch[None, :], mask=mask_nd,
                           other=0.0)
    else:
        dh_carry = tl.zeros([NB, BD], dtype=tl.float32)
    dA_acc = tl.zeros([NB, BD], dtype=tl.float32)
    dD_acc = tl.zeros([BD], dtype=tl.float32)
    dbias_acc = tl.zeros([BD], dtype=tl.float32)
    is_first = (offs_t == 0)[:, None, None]
    is_last = (offs_t == T - 1)[:, None, None]
    n_sub = tl.cdiv(L, T)
    ck_begin = seg * seg_ck
    ck_end = tl.minimum(n_ckpt, ck_begin + seg_ck)

    for sr in range(0, ck_end - ck_begin):
        s = ck_end - 1 - sr
        c0 = s * KS
        kcount = tl.minimum(n_sub - c0, KS)
        # (1) states before each sub-chunk of this checkpoint chunk -> scratch
        h = tl.load(st_ptrs + tl.cast(s - 1, tl.int64) * st_step, mask=mask_nd & (s > 0), other=0.0)
        tl.store(scr_ptrs, h)
        for k in range(0, kcount - 1):
            t = (c0 + k) * T + offs_t
            mask_t = t < L
            m2 = mask_t[:, None] & mask_d[None, :]
            ptr2, uoff, pos = _offsets(idx_ptr, grp, t, mask_t, L, row, xrow, base2, c0 + k, sxp, sdp, T, GATHER)
            u = tl.load(u_ptr + uoff, mask=m2, other=0.0).to(tl.float32)
            _, dt = _dt_of(tl.load(dt_ptr + ptr2, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS)
            a = tl.exp2(dt[:, None, :] * A2[None, :, :])
            if B_VAR:
                Bt = tl.load(B_base + pos[:, None], mask=mask_t[:, None] & mask_n[None, :], other=0.0)
                bx = (dt * u)[:, None, :] * Bt.to(tl.float32)[:, :, None]
            else:
                bx = (dt * u)[:, None, :] * Bc[None, :, :]
            bx = tl.where(is_first, bx + a * h[None, :, :], bx)
            _, hs = tl.associative_scan((a, bx), 0, _combine)
            h = _pick(hs, is_last, 0)
            tl.store(scr_ptrs + (k + 1) * (NB * BD), h)
        tl.debug_barrier()
        # (2) sub-chunks in reverse
        for kr in range(0, kcount):
            k = kcount - 1 - kr
            c = c0 + k
            t = c * T + offs_t
            mask_t = t < L
            m2 = mask_t[:, None] & mask_d[None, :]
            ptr2, uoff, pos = _offsets(idx_ptr, grp, t, mask_t, L, row, xrow, base2, c, sxp, sdp, T, GATHER)
            u = tl.load(u_ptr + uoff, mask=m2, other=0.0).to(tl.float32)
            raw, dt = _dt_of(tl.load(dt_ptr + ptr2, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS)
            m2n = (t + 1 < L)[:, None] & mask_d[None, :]
            nptr2 = _next_offsets(idx_ptr, grp, t, L, row, ptr2, sdp, GATHER)
            _, dt_next = _dt_of(tl.load(dt_ptr + nptr2, mask=m2n, other=0.0), bias, m2n, HAS_BIAS, SOFTPLUS)
            dout = tl.load(dout_ptr + uoff, mask=m2, other=0.0).to(tl.float32)  # GATHER: merged (b, c, L)
            h0 = tl.load(scr_ptrs + k * (NB * BD))
            mtn = mask_t[:, None] & mask_n[None, :]
            if B_VAR:
                Bt = tl.load(B_base + pos[:, None], mask=mtn, other=0.0).to(tl.float32)[:, :, None]
            else:
                Bt = Bc[None, :, :]
            if C_VAR:
                Ct = tl.load(C_base + pos[:, None], mask=mtn, other=0.0).to(tl.float32)[:, :, None]
            else:
                Ct = Cc[None, :, :]

            # forward recompute of the sub-chunk
            dtu = dt * u
            a = tl.exp2(dt[:, None, :] * A2[None, :, :])
            bx = dtu[:, None, :] * Bt
            bxh = tl.where(is_first, bx + a * h0[None, :, :], bx)
            _, hs = tl.associative_scan((a, bxh), 0, _combine)

            # output gate
            if HAS_Z:
                zz = tl.load(z_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
                y = tl.sum(hs * Ct, axis=1)
                if HAS_D:
                    y += Dv[None, :] * u
                sz = 1.0 / (1.0 + tl.exp2(-zz * _LOG2E))
                dz = dout * y * sz * (1.0 + zz * (1.0 - sz))
                tl.store(dz_ptr + ptr2, dz.to(dz_ptr.dtype.element_ty), mask=m2)
                dy = dout * zz * sz
            else:
                dy = dout
            if HAS_D:
                dD_acc += tl.sum(dy * u, axis=0)

            # reverse scan: dh_t = C_t dy_t + a_{t+1} dh_{t+1}
            a_next = tl.exp2(dt_next[:, None, :] * A2[None, :, :])
            x = Ct * dy[:, None, :]
            x = tl.where(is_last, x + a_next * dh_carry[None, :, :], x)
            # reverse scan as flip / forward scan / flip: free when T is in-thread, whereas
            # reverse=True lowers to lane shuffles even then
            _, dh = tl.associative_scan((tl.flip(a_next, 0), tl.flip(x, 0)), 0, _combine)
            dh = tl.flip(dh, 0)
            dh_carry = _pick(dh, is_first, 0)

            # gradients
            s1 = tl.sum(dh * Bt, axis=1)                      # sum_n dh B        [T, BD]
            w = dh * (hs - bx)                                 # dh a_t h_{t-1}    [T, NB, BD]
            dA_acc += tl.sum(w * dt[:, None, :], axis=0)
            ddt = u * s1 + tl.sum(w * A[None, :, :], axis=1)
            ddt = tl.where(m2, ddt, 0.0)
            du = dt * s1
            if HAS_D:
                du += dy * Dv[None, :]
            if ATOMIC_OUT:  # GATHER: sum the routes into the float32 (b, c, L) map
                tl.atomic_add(du_ptr + uoff, du, mask=m2, sem="relaxed")
            else:  # plain: scan order; GATHER: per-route rows at their pixels (b, K*c, L)
                tl.store(du_ptr + ptr2, du.to(du_ptr.dtype.element_ty), mask=m2)
            if SOFTPLUS:
                ddt = ddt / (1.0 + tl.exp2(-raw * _LOG2E))
            tl.store(ddt_ptr + ptr2, ddt.to(ddt_ptr.dtype.element_ty), mask=m2)
            if HAS_BIAS:
                dbias_acc += tl.sum(ddt, axis=0)
            if B_VAR:
                dBt = tl.sum(dh * dtu[:, None, :], axis=2)     # [T, NB]
                tl.atomic_add(dB_base + pos[:, None], dBt, mask=mtn, sem="relaxed")
            else:
                dBc += tl.sum(dh * dtu[:, None, :], axis=0)
            if C_VAR:
                dCt = tl.sum(hs * dy[:, None, :], axis=2)
                tl.atomic_add(dC_base + pos[:, None], dCt, mask=mtn, sem="relaxed")
            else:
                dCc += tl.sum(hs * dy[:, None, :], axis=0)
        tl.debug_barrier()

    # per (batch row, segment) partials, summed on the host: (b * n_seg, d, n) and (b * n_seg, d)
    dn_off = (segrow * dim + ch[None, :]) * dstate + offs_n[:, None]
    tl.store(dA_ptr + dn_off, dA_acc, mask=mask_nd)
    if not B_VAR:
        tl.store(dB_ptr + dn_off, dBc, mask=mask_nd)
    if not C_VAR:
        tl.store(dC_ptr + dn_off, dCc, mask=mask_nd)
    dvec_off = segrow * dim + ch
    if HAS_D:
        tl.store(dD_ptr + dvec_off, dD_acc, mask=mask_d)
    if HAS_BIAS:
        tl.store(dbias_ptr + dvec_off, dbias_acc, mask=mask_d)


# ----------------------------------------------------------------------------- tuning

def _next_pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def _l_bucket(length: int) -> int:
    return min(_next_pow2(length), 1 << 16)



def _configs(kind: str, nb: int, cap: int) -> list[triton.Config]:
    """Tile shapes (T, BD; one warp) for kernel ``kind`` ("fwd"/"bwd"), padded state nb, BD <= cap.

    The lanes of the warp split into ``lanes_n`` on NB and 32 / lanes_n on BD, so T stays inside a
    thread. Candidates: the base split, one with twice the lanes on NB (twice the programs), and
    for the forward kernel one with half (a cheaper sum over n). T is sized so a thread holds
    about 32-64 tile elements in the forward kernels and 16-32 in the backward one. One warp per
    program measured fastest on an H100 (two or more put warps on NB or cost occupancy).
    """
    if _interpreting():
        c = INTERPRET_CONFIG
        return [triton.Config({"T": c["T"], "BD": c["BD"]}, num_warps=c["num_warps"], num_stages=1)]
    base = min(nb, 4 if nb <= 16 else (16 if nb <= 64 else 32))
    splits = [base] + ([2 * base] if 2 * base <= min(nb, 32) else [])
    if kind == "fwd" and base >= 2 and nb // (base // 2) <= 8:
        splits.append(base // 2)
    out = []
    for lanes_n in splits:
        bd = 32 // lanes_n
        if bd > cap:
            continue
        per_thread_nd = nb // lanes_n
        if kind == "fwd":
            t_hi = max(8, min(32, 64 // per_thread_nd))
        else:
            t_hi = max(8, min(16, 32 // per_thread_nd))
        ts = {t_hi, max(8, t_hi // 2)}
        if per_thread_nd == 1:  # every [T, BD] tile is as large as the 3D one: also try short T
            ts.add(max(8, t_hi // 4))
        for t in sorted(ts):
            out.append(triton.Config({"T": t, "BD": bd}, num_warps=1, num_stages=1))
    if not out:  # fewer channels per group than lanes: T spreads over lanes (correct, slower)
        out.append(triton.Config({"T": 8, "BD": 1}, num_warps=1, num_stages=1))
    return out[:1] if FIRST_CONFIG_ONLY else out


class _Launcher:
    """An autotuned kernel whose chosen configuration is then launched directly.

    The first call for a key runs ``triton.autotune`` (which benchmarks the candidates and
    caches its pick); later calls with that key skip the autotuner's per-call bookkeeping.
    """

    def __init__(self, fn, configs, reset_to_zero=None):
        self.fn = fn
        self.tuner = triton.autotune(configs=configs, key=["key_n", "key_L", "key_P", "key_F"],
                                     reset_to_zero=reset_to_zero)(fn)
        self.best: dict = {}

    def __call__(self, grid, key, *args, **consts):
        cfg = self.best.get(key)
        if cfg is None:
            self.tuner[grid](*args, **consts)
            self.best[key] = self.tuner.best_config
        else:
            self.fn[grid](*args, **consts, **cfg.all_kwargs())


_TUNED: dict = {}
# outputs accumulated with atomics are zeroed between the autotuner's trial runs
_KERNELS = {"fwd": (_scan_fwd_kernel, "fwd", ["out_ptr"]), "fseg": (_scan_fwd_seg_kernel, "fwd", None),
            "bseg": (_scan_bwd_seg_kernel, "fwd", None),
            "bwd": (_scan_bwd_kernel, "bwd", ["dB_ptr", "dC_ptr", "du_ptr"])}


def _launcher(kind: str, nb: int, dg: int) -> _Launcher:
    """The launcher for (kernel, n bucket, channel cap); cached so its tuning persists."""
    cap = min(_next_pow2(dg), 128)
    key = (kind, nb, cap, _interpreting(), FIRST_CONFIG_ONLY)
    if key not in _TUNED:
        fn, cfg_kind, reset = _KERNELS[kind]
        _TUNED[key] = _Launcher(fn, _configs(cfg_kind, nb, cap), reset)
    return _TUNED[key]


def _segments(batch: int, dim: int, n_ckpt: int) -> tuple[int, int]:
    """(segments, checkpoint chunks per segment) the sequence is split into for parallelism."""
    if FORCE_SEGMENTS is not None:
        n = max(1, min(FORCE_SEGMENTS, n_ckpt))
    elif batch * dim >= SEGMENT_MIN_ROWS or n_ckpt < 2:
        n = 1
    else:
        n = min(n_ckpt, triton.cdiv(SEGMENT_TARGET_ROWS, batch * dim))
    seg_ck = triton.cdiv(n_ckpt, n)
    return triton.cdiv(n_ckpt, seg_ck), seg_ck


def _combine_block(nb: int) -> int:
    return max(1, min(64, 1024 // nb))


# ----------------------------------------------------------------------------- host side

def _bc_args(X: torch.Tensor, groups: int):
    """(tensor, varies-in-time, batch stride, group stride, group ratio) for a B or C argument."""
    if X.dim() == 2:
        return X, False, 0, 0, 1
    X4 = X if X.dim() == 4 else X.unsqueeze(1)
    return X4, True, X4.stride(0), X4.stride(1), groups // X4.shape[1]


def _sizes(delta, A, B, C):
    batch, dim, length = delta.shape
    dstate = A.shape[1]
    groups = num_groups(B, C)
    n_ckpt = triton.cdiv(length, CHECKPOINT_STEPS)
    return batch, dim, length, dstate, groups, dim // groups, _next_pow2(dstate), n_ckpt


def _gather_strides(u, delta, groups: int, gather: bool) -> tuple[int, ...]:
    """(sxb, sxc, sxp, sdb, sdk, sdc, sdp): element strides of x (b, c, L) and delta (b, K*c, L) by
    batch, (route,) channel and pixel for the fused pattern scan; zeros for the plain scan."""
    if not gather:
        return (0,) * 7
    dg = delta.shape[1] // groups
    return (u.stride(0), u.stride(1), u.stride(2), delta.stride(0), dg * delta.stride(1), delta.stride(1),
            delta.stride(2))


def _flags(*bits) -> int:
    return sum(int(bool(b)) << i for i, b in enumerate(bits))


def _forward(u, delta, A, B, C, D, z, delta_bias, softplus, save_all, save_last, out_dtype, index=None,
             atomic=True):
    """Forward launches. ``index`` (K, L) int32: fused pattern scan (u is then the map x (b, c, L),
    delta (b, K*c, L) and B/C (b, K, n, L) per pixel); the routes are summed into out (b, c, L)
    by float32 atomics (``atomic``) or through a per-route (b, K*c, L) buffer."""
    batch, dim, length, dstate, groups, dg, nb, n_ckpt = _sizes(delta, A, B, C)
    gather = index is not None
    Bk, b_var, sBb, sBg, rB = _bc_args(B, groups)
    Ck, c_var, sCb, sCg, rC = _bc_args(C, groups)
    dev = u.device
    n_seg, seg_ck = _segments(batch, dim, n_ckpt)
    if gather and atomic:  # float32 accumulator in x's memory layout
        out = torch.zeros_like(u, dtype=torch.float32)
    elif gather:  # per-route outputs in delta's memory layout
        out = torch.empty_like(delta, dtype=out_dtype)
    else:
        out = torch.empty((batch, dim, length), device=dev, dtype=out_dtype)
    idx = index if gather else A  # dummy pointer when not gathering
    gs = _gather_strides(u, delta, groups, gather)
    n_saved = n_ckpt if save_all else 1
    states = torch.empty((batch, n_saved, dstate, dim), device=dev, dtype=torch.float32)
    has_z, has_d, has_bias = z is not None, D is not None, delta_bias is not None
    keys = (nb, _l_bucket(length), _next_pow2(batch * dim))
    dtypes = (u.dtype, delta.dtype, B.dtype, C.dtype, z.dtype if has_z else None, out_dtype)
    h0 = states
    if n_seg > 1:
        hend = torch.empty((batch, n_seg, dstate, dim), device=dev, dtype=torch.float32)
        dts = torch.empty((batch, n_seg, dim), device=dev, dtype=torch.float32)
        flags = _flags(has_bias, softplus, b_var, gather)
        _launcher("fseg", nb, dg)(
            lambda meta: (batch * groups * triton.cdiv(dg, meta["BD"]), n_seg - 1), keys + (flags,) + dtypes,
            u, delta, A, Bk, delta_bias if has_bias else u, hend, dts, idx,
            length, dim, dstate, dg, n_seg, seg_ck, sBb, sBg, rB, *gs, *keys, flags,
            NB=nb, S=CHECKPOINT_STEPS, HAS_BIAS=has_bias, SOFTPLUS=bool(softplus), B_VAR=b_var, GATHER=gather,
        )
        h0 = torch.empty((batch, n_seg, dstate, dim), device=dev, dtype=torch.float32)
        cb = _combine_block(nb)
        _seg_fwd_combine_kernel[(batch * triton.cdiv(dim, cb),)](
            hend, dts, A, h0, dim, dstate, n_seg, NB=nb, BD=cb, num_warps=4)
    atomic_out = gather and atomic
    flags = _flags(has_z, has_d, has_bias, softplus, b_var, c_var, save_all, save_last, n_seg > 1, gather,
                   atomic_out)
    _launcher("fwd", nb, dg)(
        lambda meta: (batch * groups * triton.cdiv(dg, meta["BD"]), n_seg), keys + (flags,) + dtypes,
        u, delta, z if has_z else u, A, Bk, Ck, D if has_d else u, delta_bias if has_bias else u, out, states, h0,
        idx, length, dim, dstate, dg, n_saved, n_seg, seg_ck,
        sBb, sBg, rB, sCb, sCg, rC, *gs, *keys, flags,
        NB=nb, S=CHECKPOINT_STEPS,
        HAS_Z=has_z, HAS_D=has_d, HAS_BIAS=has_bias, SOFTPLUS=bool(softplus),
        B_VAR=b_var, C_VAR=c_var, SAVE_ALL=save_all, SAVE_LAST=save_last, HAS_H0=n_seg > 1,
        GATHER=gather, ATOMIC_OUT=atomic_out,
    )
    if gather:
        if not atomic:  # per-route rows at their pixels -> sum over routes in float32
            out = out.view(batch, groups, dg, length).sum(1, dtype=torch.float32)
        out = out.to(out_dtype)
    return out, states


def _backward(u, delta, A, B, C, D, z, delta_bias, softplus, states, dout, dlast, index=None, atomic=True):
    """Backward launches; ``index`` / ``atomic`` as in ``_forward`` (dout and du are then (b, c, L))."""
    batch, dim, length, dstate, groups, dg, nb, n_ckpt = _sizes(delta, A, B, C)
    gather = index is not None
    atomic_out = gather and atomic
    idx = index if gather else A
    gs = _gather_strides(u, delta, groups, gather)
    if gather and dout.stride() != u.stride():  # dout is read in x's memory layout
        dout = torch.empty_like(u, dtype=dout.dtype).copy_(dout)
    Bk, b_var, sBb, sBg, rB = _bc_args(B, groups)
    Ck, c_var, sCb, sCg, rC = _bc_args(C, groups)
    dev = u.device
    f32 = torch.float32
    n_seg, seg_ck = _segments(batch, dim, n_ckpt)
    has_z, has_d, has_bias = z is not None, D is not None, delta_bias is not None
    keys = (nb, _l_bucket(length), _next_pow2(batch * dim))
    dtypes = (u.dtype, delta.dtype, B.dtype, C.dtype, z.dtype if has_z else None, dout.dtype)
    if atomic_out:
        du = torch.zeros_like(u, dtype=f32)
    elif gather:
        du = torch.empty_like(delta, dtype=f32)
    else:
        du = torch.empty_like(u)
    ddelta = torch.empty_like(delta)
    dz = torch.empty_like(z) if has_z else None
    rows = batch * n_seg  # partial sums per (batch row, segment)
    dA = torch.empty((rows, dim, dstate), device=dev, dtype=f32)
    dB = torch.zeros(Bk.shape, device=dev, dtype=f32) if b_var else torch.empty((rows, dim, dstate), device=dev, dtype=f32)
    dC = torch.zeros(Ck.shape, device=dev, dtype=f32) if c_var else torch.empty((rows, dim, dstate), device=dev, dtype=f32)
    dD = torch.empty((rows, dim), device=dev, dtype=f32) if has_d else dA
    dbias = torch.empty((rows, dim), device=dev, dtype=f32) if has_bias else dA
    # per-program scratch for the states before each sub-chunk: programs * (S / T) * NB * BD floats,
    # at most segments * batch * groups * (dg + BD) * NB * S / 8 for any tile the autotuner may pick
    max_bd = min(_next_pow2(dg), 128)
    scratch = torch.empty(n_seg * batch * groups * (dg + max_bd) * nb * (CHECKPOINT_STEPS // 8), device=dev, dtype=f32)
    dh0 = dA
    if n_seg > 1:
        dhl = torch.empty((batch, n_seg, dstate, dim), device=dev, dtype=f32)
        dtsn = torch.empty((batch, n_seg, dim), device=dev, dtype=f32)
        flags = _flags(has_z, has_bias, softplus, c_var, gather)
        _launcher("bseg", nb, dg)(
            lambda meta: (batch * groups * triton.cdiv(dg, meta["BD"]), n_seg - 1), keys + (flags,) + dtypes,
            delta, z if has_z else delta, A, Ck, delta_bias if has_bias else A, dout, dhl, dtsn, idx,
            length, dim, dstate, dg, n_seg, seg_ck, sCb, sCg, rC, *gs, *keys, flags,
            NB=nb, S=CHECKPOINT_STEPS, HAS_Z=has_z, HAS_BIAS=has_bias, SOFTPLUS=bool(softplus), C_VAR=c_var,
            GATHER=gather,
        )
        dh0 = torch.empty((batch, n_seg, dstate, dim), device=dev, dtype=f32)
        cb = _combine_block(nb)
        _seg_bwd_combine_kernel[(batch * triton.cdiv(dim, cb),)](
            dhl, dtsn, A, dlast if dlast is not None else A, dh0, dim, dstate, n_seg,
            NB=nb, BD=cb, HAS_DLAST=dlast is not None, num_warps=4)
    elif dlast is not None:
        dh0 = dlast.transpose(1, 2).contiguous()  # (b, n, d) = (b, 1 segment, n, d)
    has_dh0 = n_seg > 1 or dlast is not None
    flags = _flags(has_z, has_d, has_bias, softplus, b_var, c_var, has_dh0, gather, atomic_out)
    _launcher("bwd", nb, dg)(
        lambda meta: (batch * groups * triton.cdiv(dg, meta["BD"]), n_seg), keys + (flags,) + dtypes,
        u, delta, z if has_z else u, A, Bk, Ck, D if has_d else A, delta_bias if has_bias else A,
        states, dout, dh0, scratch,
        du, ddelta, dz if has_z else u, dA, dB, dC, dD, dbias, idx,
        length, dim, dstate, dg, n_ckpt, n_seg, seg_ck,
        sBb, sBg, rB, sCb, sCg, rC,
        dB.stride(0) if b_var else 0, dB.stride(1) if b_var else 0,
        dC.stride(0) if c_var else 0, dC.stride(1) if c_var else 0,
        *gs, *keys, flags,
        NB=nb, S=CHECKPOINT_STEPS,
        HAS_Z=has_z, HAS_D=has_d, HAS_BIAS=has_bias, SOFTPLUS=bool(softplus),
        B_VAR=b_var, C_VAR=c_var, HAS_DH0=has_dh0, GATHER=gather, ATOMIC_OUT=atomic_out,
    )
    if gather:
        if not atomic:
            du = du.view(batch, groups, dg, length).sum(1)
        du = du.to(u.dtype)
    dA = dA.sum(0)
    dB = dB.reshape(B.shape) if b_var else dB.sum(0)
    dC = dC.reshape(C.shape) if c_var else dC.sum(0)
    return (
        du, ddelta, dA, dB.to(B.dtype), dC.to(C.dtype),
        dD.sum(0) if has_d else None,
        dz,
        dbias.sum(0) if has_bias else None,
    )


class SelectiveScanTritonFn(torch.autograd.Function):
    """Autograd wrapper: Triton forward, Triton backward from saved chunk states."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, out_dtype):
        u, delta, A = u.contiguous(), delta.contiguous(), A.contiguous()
        B, C = B.contiguous(), C.contiguous()
        z = z.contiguous() if z is not None else None
        D = D.contiguous() if D is not None else None
        delta_bias = delta_bias.contiguous() if delta_bias is not None else None
        need_grad = any(ctx.needs_input_grad[:8])
        out, states = _forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                               save_all=need_grad, save_last=return_last_state, out_dtype=out_dtype or u.dtype)
        ctx.delta_softplus = delta_softplus
        ctx.return_last_state = return_last_state
        if need_grad:
            ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states)
        if return_last_state:
            return out, states[:, -1].transpose(1, 2).contiguous()
        return out

    @staticmethod
    def backward(ctx, dout, *rest):
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        dlast = rest[0] if ctx.return_last_state and rest and rest[0] is not None else None
        if dlast is not None:
            dlast = dlast.float().contiguous()
        grads = _backward(u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, states,
                          dout.contiguous(), dlast)
        grads = [g if need else None for g, need in zip(grads, ctx.needs_input_grad[:8])]
        return (*grads, None, None, None)


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    out_dtype: torch.dtype | None = None,
):
    """The selective scan through Triton kernels; arguments as ``selective_scan`` (inputs not re-validated).

    ``out_dtype``: dtype of ``out`` (default u's), e.g. float32 output from 16-bit inputs.
    Returns ``out`` or ``(out, last_state)`` with last_state (b, d, n) float32.
    """
    return SelectiveScanTritonFn.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                                       bool(return_last_state), out_dtype)


#: Fused pattern scan: sum the routes into the merged map with float32 atomics (True) or through a
#: per-route (b, K*c, L) buffer in spatial order summed afterwards (False).
FUSED_ATOMIC = True


class SelectiveScanGatherTritonFn(torch.autograd.Function):
    """Fused pattern scan (see ``selective_scan_gather_triton``): forward and backward through the
    same kernels as the plain scan, with GATHER on."""

    @staticmethod
    def forward(ctx, x, delta, A, B, C, D, delta_bias, delta_softplus, index, out_dtype):
        A = A.contiguous()  # x and delta: any strides (read through them)
        B, C = B.contiguous(), C.contiguous()
        D = D.contiguous() if D is not None else None
        delta_bias = delta_bias.contiguous() if delta_bias is not None else None
        need_grad = any(ctx.needs_input_grad[:7])
        atomic = FUSED_ATOMIC
        out, states = _forward(x, delta, A, B, C, D, None, delta_bias, delta_softplus,
                               save_all=need_grad, save_last=False, out_dtype=out_dtype or x.dtype,
                               index=index, atomic=atomic)
        ctx.delta_softplus = delta_softplus
        ctx.atomic = atomic
        if need_grad:
            ctx.save_for_backward(x, delta, A, B, C, D, delta_bias, states, index)
        return out

    @staticmethod
    def backward(ctx, dout):
        x, delta, A, B, C, D, delta_bias, states, index = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, _, dbias = _backward(
            x, delta, A, B, C, D, None, delta_bias, ctx.delta_softplus, states, dout, None,
            index=index, atomic=ctx.atomic)
        grads = [du, ddelta, dA, dB, dC, dD, dbias]
        grads = [g if need else None for g, need in zip(grads, ctx.needs_input_grad[:7])]
        return (*grads, None, None, None)


def selective_scan_gather_triton(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    index: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    *,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """K-route selective scan read straight from a map and merged back (inputs not re-validated).

    Args:
        x: (b, c, P) the map, flattened (P pixels), any strides; fastest with unit channel stride
            (channels-last memory, (b, P, c)): a warp's lanes then read consecutive channels.
        delta: (b, K*c, P) per pixel: row k*c + i holds channel i of route k at each pixel; any
            strides with the route stride c times the channel stride; fastest with memory (b, P, K, c).
        A: (K*c, n) float32; D, delta_bias: (K*c,) float32.
        B, C: (b, K, n, P) per pixel (route k's channels read group k).
        index: (K, P) int32 on x's device, every row a permutation of 0..P-1: route k visits
            pixel index[k, t] at step t.

    Returns:
        (b, c, P) in ``out_dtype`` (default x's), in x's memory layout: at each pixel the sum over
        routes of the scan output at the step that visits it. Equals scanning u_k = x[..., index[k]], delta_k, B_k,
        C_k gathered the same way, and summing each y_k back at index[k].
    """
    return SelectiveScanGatherTritonFn.apply(x, delta, A, B, C, D, delta_bias, bool(delta_softplus), index,
                                             out_dtype)
