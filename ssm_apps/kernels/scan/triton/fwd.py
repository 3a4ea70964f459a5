"""Forward kernel of the Triton selective scan and its launch."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..._backend import device_guard
from ..options import TritonScanOptions
from ._common import (
    _LOG2E,
    _bc_args,
    _cdiv,
    _channel_vector,
    _dt_of,
    _flags,
    _gather_strides,
    _offsets,
    _program_tile,
    _seq_base,
    _sizes,
    _state_matrix,
    _sub_range,
    _subchunk_states,
)
from .autotune import _launcher, _tuning_keys, register
from .segments import _segments, segment_entry_states

# ----------------------------------------------------------------------------- forward

@triton.jit
def _scan_fwd_kernel(
    # Pointers
    u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr, st_ptr, h0_ptr, idx_ptr,
    # Dimensions
    L, dim, dstate, dg, n_ckpt, n_seg, seg_ck,
    # Strides (B / C by batch and group, and the ratio of channel groups to B / C groups)
    stride_B_batch, stride_B_group, ratio_B_group,
    stride_C_batch, stride_C_group, ratio_C_group,
    # Strides of the fused pattern scan (GATHER; zeros otherwise)
    stride_x_batch, stride_x_channel, stride_x_pixel,
    stride_delta_batch, stride_delta_route, stride_delta_channel, stride_delta_pixel,
    # Autotuning keys
    key_n, key_L, key_P, key_F,
    # Meta-parameters
    NB: tl.constexpr, S: tl.constexpr, T: tl.constexpr, BD: tl.constexpr,
    HAS_Z: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    B_VAR: tl.constexpr, C_VAR: tl.constexpr, SAVE_ALL: tl.constexpr, SAVE_LAST: tl.constexpr,
    HAS_H0: tl.constexpr, GATHER: tl.constexpr = False, ATOMIC_OUT: tl.constexpr = False,
):
    KS: tl.constexpr = S // T
    pid, bi, grp, offs_d, mask_d, ch, offs_n, mask_n, offs_t, mask_nd, row, xrow, base2 = _program_tile(
        dim, dg, dstate, L, stride_x_batch, stride_x_channel, stride_delta_batch, stride_delta_route,
        stride_delta_channel, NB, T, BD, GATHER)
    seg = tl.program_id(1)

    A2 = _state_matrix(A_ptr, ch, offs_n, dstate, mask_nd) * _LOG2E
    bias = _channel_vector(bias_ptr, ch, mask_d, BD, HAS_BIAS)
    Dv = _channel_vector(D_ptr, ch, mask_d, BD, HAS_D)
    if B_VAR:
        B_base = _seq_base(B_ptr, bi, grp, ratio_B_group, stride_B_batch, stride_B_group, offs_n, L)
    else:
        Bc = _state_matrix(B_ptr, ch, offs_n, dstate, mask_nd)
    if C_VAR:
        C_base = _seq_base(C_ptr, bi, grp, ratio_C_group, stride_C_batch, stride_C_group, offs_n, L)
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
        ptr2, uoff, pos = _offsets(idx_ptr, grp, t, mask_t, L, row, xrow, base2, c, stride_x_pixel,
                                   stride_delta_pixel, T, GATHER)
        u = tl.load(u_ptr + uoff, mask=m2, other=0.0).to(tl.float32)
        _, dt = _dt_of(tl.load(dt_ptr + ptr2, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS)
        if B_VAR:
            mtn = mask_t[:, None] & mask_n[None, :]
            Bt = tl.load(B_base + pos[:, None], mask=mtn, other=0.0).to(tl.float32)[:, :, None]
        else:
            Bt = Bc[None, :, :]
        _, _, hs, h = _subchunk_states(u, dt, A2, Bt, h, is_first, is_last)
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


register("fwd", _scan_fwd_kernel, "fwd", ["out_ptr"])


def _forward(u, delta, A, B, C, D, z, delta_bias, softplus, save_all, save_last, out_dtype,
             options: TritonScanOptions, index=None):
    """Forward launches. ``index`` (K, L) int32: fused pattern scan (u is then the map x (b, c, L),
    delta (b, K*c, L) and B/C (b, K, n, L) per pixel); the routes are summed into out (b, c, L)
    by float32 atomics (``options.fused_atomic``) or through a per-route (b, K*c, L) buffer."""
    batch, dim, length, dstate, groups, dg, nb, n_ckpt = _sizes(delta, A, B, C, options.checkpoint_steps)
    gather = index is not None
    atomic = options.fused_atomic
    Bk, b_var, b_strides = _bc_args(B, groups, "B")
    Ck, c_var, c_strides = _bc_args(C, groups, "C")
    dev = u.device
    n_seg, seg_ck = _segments(batch, dim, n_ckpt, options.segments)
    if gather and atomic:  # float32 accumulator in x's memory layout
        out = torch.zeros_like(u, dtype=torch.float32)
    elif gather:  # per-route outputs in delta's memory layout
        out = torch.empty_like(delta, dtype=out_dtype)
    else:
        out = torch.empty((batch, dim, length), device=dev, dtype=out_dtype)
    idx = index if gather else A  # dummy pointer when not gathering
    gather_strides = _gather_strides(u, delta, groups, gather)
    n_saved = n_ckpt if save_all else 1
    states = torch.empty((batch, n_saved, dstate, dim), device=dev, dtype=torch.float32)
    has_z, has_d, has_bias = z is not None, D is not None, delta_bias is not None
    keys = _tuning_keys(nb, length, batch, dim)
    dtypes = (u.dtype, delta.dtype, B.dtype, C.dtype, z.dtype if has_z else None, out_dtype)
    with device_guard(dev):
        if n_seg > 1:
            h0 = segment_entry_states(
                u, delta, A, Bk, delta_bias, idx, softplus=softplus, b_var=b_var, gather=gather, nb=nb,
                groups=groups, dg=dg, n_seg=n_seg, seg_ck=seg_ck, keys=keys, dtypes=dtypes,
                b_strides=b_strides, gather_strides=gather_strides, options=options)
        else:
            h0 = states  # dummy pointer: not read
        atomic_out = gather and atomic
        flags = _flags(has_z, has_d, has_bias, softplus, b_var, c_var, save_all, save_last, n_seg > 1, gather,
                       atomic_out)
        _launcher("fwd", nb, dg, dev, options)(
            lambda meta: (batch * groups * _cdiv(dg, meta["BD"]), n_seg), (*keys.values(), flags, *dtypes),
            # Pointers
            u_ptr=u, dt_ptr=delta, z_ptr=z if has_z else u, A_ptr=A, B_ptr=Bk, C_ptr=Ck,
            D_ptr=D if has_d else u, bias_ptr=delta_bias if has_bias else u, out_ptr=out, st_ptr=states,
            h0_ptr=h0, idx_ptr=idx,
            # Dimensions
            L=length, dim=dim, dstate=dstate, dg=dg, n_ckpt=n_saved, n_seg=n_seg, seg_ck=seg_ck,
            # Strides
            **b_strides, **c_strides, **gather_strides,
            # Autotuning keys
            **keys, key_F=flags,
            # Meta-parameters
            NB=nb, S=options.checkpoint_steps,
            HAS_Z=has_z, HAS_D=has_d, HAS_BIAS=has_bias, SOFTPLUS=bool(softplus),
            B_VAR=b_var, C_VAR=c_var, SAVE_ALL=save_all, SAVE_LAST=save_last, HAS_H0=n_seg > 1,
            GATHER=gather, ATOMIC_OUT=atomic_out,
        )
    if gather:
        if not atomic:  # per-route rows at their pixels -> sum over routes in float32
            out = out.view(batch, groups, dg, length).sum(1, dtype=torch.float32)
        out = out.to(out_dtype)
    return out, states
