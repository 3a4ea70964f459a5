"""Sequence parallelism of the Triton scan: per-segment passes and the chains that join them.

Sequence parallelism: with fewer than SEGMENT_MIN_ROWS (batch x channel) rows, the sequence is
split into segments (whole checkpoint chunks) scanned in parallel, aiming at SEGMENT_TARGET_ROWS
row-segments; ``TritonScanOptions.segments`` (tests) fixes their number.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..options import TritonScanOptions
from ._common import (
    _LOG2E,
    _cdiv,
    _channel_vector,
    _combine,
    _dt_of,
    _flags,
    _next_offsets,
    _offsets,
    _pick,
    _program_tile,
    _seq_base,
    _state_matrix,
    _sub_range,
    _subchunk_states,
)
from .autotune import _launcher, register

SEGMENT_MIN_ROWS = 4096
SEGMENT_TARGET_ROWS = 16384


@triton.jit
def _scan_fwd_seg_kernel(
    # Pointers
    u_ptr, dt_ptr, A_ptr, B_ptr, bias_ptr, hend_ptr, dts_ptr, idx_ptr,
    # Dimensions
    L, dim, dstate, dg, n_seg, seg_ck,
    # Strides (B by batch and group, and the ratio of channel groups to B groups)
    stride_B_batch, stride_B_group, ratio_B_group,
    # Strides of the fused pattern scan (GATHER; zeros otherwise)
    stride_x_batch, stride_x_channel, stride_x_pixel,
    stride_delta_batch, stride_delta_route, stride_delta_channel, stride_delta_pixel,
    # Autotuning keys
    key_n, key_L, key_P, key_F,
    # Meta-parameters
    NB: tl.constexpr, S: tl.constexpr, T: tl.constexpr, BD: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, B_VAR: tl.constexpr, GATHER: tl.constexpr = False,
):
    """Sequence-parallel pass 1: each segment's end state from a zero start, and its sum of dt."""
    KS: tl.constexpr = S // T
    pid, bi, grp, offs_d, mask_d, ch, offs_n, mask_n, offs_t, mask_nd, row, xrow, base2 = _program_tile(
        dim, dg, dstate, L, stride_x_batch, stride_x_channel, stride_delta_batch, stride_delta_route,
        stride_delta_channel, NB, T, BD, GATHER)
    seg = tl.program_id(1)
    A2 = _state_matrix(A_ptr, ch, offs_n, dstate, mask_nd) * _LOG2E
    bias = _channel_vector(bias_ptr, ch, mask_d, BD, HAS_BIAS)
    if B_VAR:
        B_base = _seq_base(B_ptr, bi, grp, ratio_B_group, stride_B_batch, stride_B_group, offs_n, L)
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
        ptr2, uoff, pos = _offsets(idx_ptr, grp, t, mask_t, L, row, xrow, base2, c, stride_x_pixel,
                                   stride_delta_pixel, T, GATHER)
        u = tl.load(u_ptr + uoff, mask=m2, other=0.0).to(tl.float32)
        _, dt = _dt_of(tl.load(dt_ptr + ptr2, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS)
        if B_VAR:
            Bt = tl.load(B_base + pos[:, None], mask=mask_t[:, None] & mask_n[None, :], other=0.0)
            Bt = Bt.to(tl.float32)[:, :, None]
        else:
            Bt = Bc[None, :, :]
        _, _, _, h = _subchunk_states(u, dt, A2, Bt, h, is_first, is_last)
        dsum += tl.sum(dt, axis=0)
    segrow = (bi * n_seg + seg).to(tl.int64)
    tl.store(hend_ptr + (segrow * dstate + offs_n[:, None]) * dim + ch[None, :], h, mask=mask_nd)
    tl.store(dts_ptr + segrow * dim + ch, dsum, mask=mask_d)


register("fseg", _scan_fwd_seg_kernel, "fwd")


@triton.jit
def _seg_fwd_combine_kernel(
    # Pointers
    hend_ptr, dts_ptr, A_ptr, hin_ptr,
    # Dimensions
    dim, dstate, n_seg,
    # Meta-parameters
    NB: tl.constexpr, BD: tl.constexpr,
):
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


@triton.jit
def _scan_bwd_seg_kernel(
    # Pointers
    dt_ptr, z_ptr, A_ptr, C_ptr, bias_ptr, dout_ptr, dhl_ptr, dtsn_ptr, idx_ptr,
    # Dimensions
    L, dim, dstate, dg, n_seg, seg_ck,
    # Strides (C by batch and group, and the ratio of channel groups to C groups)
    stride_C_batch, stride_C_group, ratio_C_group,
    # Strides of the fused pattern scan (GATHER; zeros otherwise)
    stride_x_batch, stride_x_channel, stride_x_pixel,
    stride_delta_batch, stride_delta_route, stride_delta_channel, stride_delta_pixel,
    # Autotuning keys
    key_n, key_L, key_P, key_F,
    # Meta-parameters
    NB: tl.constexpr, S: tl.constexpr, T: tl.constexpr, BD: tl.constexpr,
    HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, C_VAR: tl.constexpr,
    GATHER: tl.constexpr = False,
):
    """Sequence-parallel backward pass 1: for segments 1.., dh at the segment start with no gradient
    entering from later steps, and the sum of dt_{t+1} over the segment (its dh decay)."""
    KS: tl.constexpr = S // T
    pid, bi, grp, offs_d, mask_d, ch, offs_n, mask_n, offs_t, mask_nd, row, xrow, base2 = _program_tile(
        dim, dg, dstate, L, stride_x_batch, stride_x_channel, stride_delta_batch, stride_delta_route,
        stride_delta_channel, NB, T, BD, GATHER)
    seg = tl.program_id(1) + 1
    A2 = _state_matrix(A_ptr, ch, offs_n, dstate, mask_nd) * _LOG2E
    bias = _channel_vector(bias_ptr, ch, mask_d, BD, HAS_BIAS)
    if C_VAR:
        C_base = _seq_base(C_ptr, bi, grp, ratio_C_group, stride_C_batch, stride_C_group, offs_n, L)
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
        ptr2, uoff, pos = _offsets(idx_ptr, grp, t, mask_t, L, row, xrow, base2, c, stride_x_pixel,
                                   stride_delta_pixel, T, GATHER)
        m2n = (t + 1 < L)[:, None] & mask_d[None, :]
        nptr2 = _next_offsets(idx_ptr, grp, t, L, row, ptr2, stride_delta_pixel, GATHER)
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


register("bseg", _scan_bwd_seg_kernel, "fwd")


@triton.jit
def _seg_bwd_combine_kernel(
    # Pointers
    dhl_ptr, dtsn_ptr, A_ptr, dlast_ptr, dhin_ptr,
    # Dimensions
    dim, dstate, n_seg,
    # Meta-parameters
    NB: tl.constexpr, BD: tl.constexpr, HAS_DLAST: tl.constexpr,
):
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



def _segments(batch: int, dim: int, n_ckpt: int, forced: int | None = None) -> tuple[int, int]:
    """(segments, checkpoint chunks per segment) the sequence is split into for parallelism;
    ``forced`` (``TritonScanOptions.segments``) fixes the number, at most one per chunk."""
    if forced is not None:
        n = max(1, min(forced, n_ckpt))
    elif batch * dim >= SEGMENT_MIN_ROWS or n_ckpt < 2:
        n = 1
    else:
        n = min(n_ckpt, _cdiv(SEGMENT_TARGET_ROWS, batch * dim))
    seg_ck = _cdiv(n_ckpt, n)
    return _cdiv(n_ckpt, seg_ck), seg_ck


def _combine_block(nb: int) -> int:
    return max(1, min(64, 1024 // nb))


def segment_entry_states(u, delta, A, Bk, delta_bias, idx, *, softplus, b_var, gather, nb, groups, dg, n_seg,
                         seg_ck, keys, dtypes, b_strides, gather_strides, options: TritonScanOptions) -> torch.Tensor:
    """Forward pass 1 and its chain: the state entering each segment, (b, n_seg, n, d) float32.

    Arguments as prepared by ``fwd._forward`` (its launch runs under the device guard)."""
    batch, dim, length = delta.shape
    dstate = A.shape[1]
    dev = u.device
    has_bias = delta_bias is not None
    hend = torch.empty((batch, n_seg, dstate, dim), device=dev, dtype=torch.float32)
    dts = torch.empty((batch, n_seg, dim), device=dev, dtype=torch.float32)
    flags = _flags(has_bias, softplus, b_var, gather)
    _launcher("fseg", nb, dg, dev, options)(
        lambda meta: (batch * groups * _cdiv(dg, meta["BD"]), n_seg - 1), (*keys.values(), flags, *dtypes),
        # Pointers
        u_ptr=u, dt_ptr=delta, A_ptr=A, B_ptr=Bk, bias_ptr=delta_bias if has_bias else u, hend_ptr=hend,
        dts_ptr=dts, idx_ptr=idx,
        # Dimensions
        L=length, dim=dim, dstate=dstate, dg=dg, n_seg=n_seg, seg_ck=seg_ck,
        # Strides
        **b_strides, **gather_strides,
        # Autotuning keys
        **keys, key_F=flags,
        # Meta-parameters
        NB=nb, S=options.checkpoint_steps, HAS_BIAS=has_bias, SOFTPLUS=bool(softplus), B_VAR=b_var, GATHER=gather,
    )
    h0 = torch.empty((batch, n_seg, dstate, dim), device=dev, dtype=torch.float32)
    cb = _combine_block(nb)
    _seg_fwd_combine_kernel[(batch * _cdiv(dim, cb),)](
        hend_ptr=hend, dts_ptr=dts, A_ptr=A, hin_ptr=h0, dim=dim, dstate=dstate, n_seg=n_seg,
        NB=nb, BD=cb, num_warps=4)
    return h0


def segment_exit_grads(delta, z, A, Ck, delta_bias, dout, dlast, idx, *, softplus, c_var, gather, nb, groups, dg,
                       n_seg, seg_ck, keys, dtypes, c_strides, gather_strides, options: TritonScanOptions) -> torch.Tensor:
    """Backward pass 1 and its reverse chain: dh entering each segment from its end, (b, n_seg, n, d)
    float32 (``dlast`` (b, d, n) or None seeds it after the last step).

    Arguments as prepared by ``bwd._backward`` (its launch runs under the device guard)."""
    batch, dim, length = delta.shape
    dstate = A.shape[1]
    dev = delta.device
    f32 = torch.float32
    has_z, has_bias = z is not None, delta_bias is not None
    dhl = torch.empty((batch, n_seg, dstate, dim), device=dev, dtype=f32)
    dtsn = torch.empty((batch, n_seg, dim), device=dev, dtype=f32)
    flags = _flags(has_z, has_bias, softplus, c_var, gather)
    _launcher("bseg", nb, dg, dev, options)(
        lambda meta: (batch * groups * _cdiv(dg, meta["BD"]), n_seg - 1), (*keys.values(), flags, *dtypes),
        # Pointers
        dt_ptr=delta, z_ptr=z if has_z else delta, A_ptr=A, C_ptr=Ck, bias_ptr=delta_bias if has_bias else A,
        dout_ptr=dout, dhl_ptr=dhl, dtsn_ptr=dtsn, idx_ptr=idx,
        # Dimensions
        L=length, dim=dim, dstate=dstate, dg=dg, n_seg=n_seg, seg_ck=seg_ck,
        # Strides
        **c_strides, **gather_strides,
        # Autotuning keys
        **keys, key_F=flags,
        # Meta-parameters
        NB=nb, S=options.checkpoint_steps, HAS_Z=has_z, HAS_BIAS=has_bias, SOFTPLUS=bool(softplus), C_VAR=c_var,
        GATHER=gather,
    )
    dh0 = torch.empty((batch, n_seg, dstate, dim), device=dev, dtype=f32)
    cb = _combine_block(nb)
    _seg_bwd_combine_kernel[(batch * _cdiv(dim, cb),)](
        dhl_ptr=dhl, dtsn_ptr=dtsn, A_ptr=A, dlast_ptr=dlast if dlast is not None else A, dhin_ptr=dh0,
        dim=dim, dstate=dstate, n_seg=n_seg, NB=nb, BD=cb, HAS_DLAST=dlast is not None, num_warps=4)
    return dh0
