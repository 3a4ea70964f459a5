"""Backward kernel of the Triton selective scan and its launch."""
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
    _combine,
    _dt_of,
    _flags,
    _gather_strides,
    _next_offsets,
    _next_pow2,
    _offsets,
    _pick,
    _program_tile,
    _seq_base,
    _sizes,
    _state_matrix,
    _subchunk_states,
)
from .autotune import _launcher, _tuning_keys, register
from .segments import _segments, segment_exit_grads


@triton.jit
def _scan_bwd_kernel(
    # Pointers: inputs, saved states, incoming gradients, scratch
    u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, st_ptr, dout_ptr, dh0_ptr, scr_ptr,
    # Pointers: gradients
    du_ptr, ddt_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr, idx_ptr,
    # Dimensions
    L, dim, dstate, dg, n_ckpt, n_seg, seg_ck,
    # Strides (B / C by batch and group, and the ratio of channel groups to B / C groups)
    stride_B_batch, stride_B_group, ratio_B_group,
    stride_C_batch, stride_C_group, ratio_C_group,
    # Strides of the time-varying dB / dC buffers (b, g, n, L) by batch and group
    stride_dB_batch, stride_dB_group, stride_dC_batch, stride_dC_group,
    # Strides of the fused pattern scan (GATHER; zeros otherwise)
    stride_x_batch, stride_x_channel, stride_x_pixel,
    stride_delta_batch, stride_delta_route, stride_delta_channel, stride_delta_pixel,
    # Autotuning keys
    key_n, key_L, key_P, key_F,
    # Meta-parameters
    NB: tl.constexpr, S: tl.constexpr, T: tl.constexpr, BD: tl.constexpr,
    HAS_Z: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    B_VAR: tl.constexpr, C_VAR: tl.constexpr, HAS_DH0: tl.constexpr,
    GATHER: tl.constexpr = False, ATOMIC_OUT: tl.constexpr = False,
):
    KS: tl.constexpr = S // T
    pid, bi, grp, offs_d, mask_d, ch, offs_n, mask_n, offs_t, mask_nd, row, xrow, base2 = _program_tile(
        dim, dg, dstate, L, stride_x_batch, stride_x_channel, stride_delta_batch, stride_delta_route,
        stride_delta_channel, NB, T, BD, GATHER)
    seg = tl.program_id(1)

    A = _state_matrix(A_ptr, ch, offs_n, dstate, mask_nd)
    A2 = A * _LOG2E
    bias = _channel_vector(bias_ptr, ch, mask_d, BD, HAS_BIAS)
    Dv = _channel_vector(D_ptr, ch, mask_d, BD, HAS_D)
    if B_VAR:
        B_base = _seq_base(B_ptr, bi, grp, ratio_B_group, stride_B_batch, stride_B_group, offs_n, L)
        dB_base = _seq_base(dB_ptr, bi, grp, ratio_B_group, stride_dB_batch, stride_dB_group, offs_n, L)
    else:
        Bc = _state_matrix(B_ptr, ch, offs_n, dstate, mask_nd)
        dBc = tl.zeros([NB, BD], dtype=tl.float32)
    if C_VAR:
        C_base = _seq_base(C_ptr, bi, grp, ratio_C_group, stride_C_batch, stride_C_group, offs_n, L)
        dC_base = _seq_base(dC_ptr, bi, grp, ratio_C_group, stride_dC_batch, stride_dC_group, offs_n, L)
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
            ptr2, uoff, pos = _offsets(idx_ptr, grp, t, mask_t, L, row, xrow, base2, c0 + k, stride_x_pixel,
                                       stride_delta_pixel, T, GATHER)
            u = tl.load(u_ptr + uoff, mask=m2, other=0.0).to(tl.float32)
            _, dt = _dt_of(tl.load(dt_ptr + ptr2, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS)
            if B_VAR:
                Bt = tl.load(B_base + pos[:, None], mask=mask_t[:, None] & mask_n[None, :], other=0.0)
                Bt = Bt.to(tl.float32)[:, :, None]
            else:
                Bt = Bc[None, :, :]
            _, _, _, h = _subchunk_states(u, dt, A2, Bt, h, is_first, is_last)
            tl.store(scr_ptrs + (k + 1) * (NB * BD), h)
        tl.debug_barrier()
        # (2) sub-chunks in reverse
        for kr in range(0, kcount):
            k = kcount - 1 - kr
            c = c0 + k
            t = c * T + offs_t
            mask_t = t < L
            m2 = mask_t[:, None] & mask_d[None, :]
            ptr2, uoff, pos = _offsets(idx_ptr, grp, t, mask_t, L, row, xrow, base2, c, stride_x_pixel,
                                       stride_delta_pixel, T, GATHER)
            u = tl.load(u_ptr + uoff, mask=m2, other=0.0).to(tl.float32)
            raw, dt = _dt_of(tl.load(dt_ptr + ptr2, mask=m2, other=0.0), bias, m2, HAS_BIAS, SOFTPLUS)
            m2n = (t + 1 < L)[:, None] & mask_d[None, :]
            nptr2 = _next_offsets(idx_ptr, grp, t, L, row, ptr2, stride_delta_pixel, GATHER)
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
            _, bx, hs, _ = _subchunk_states(u, dt, A2, Bt, h0, is_first, is_last)
            dtu = dt * u

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


register("bwd", _scan_bwd_kernel, "bwd", ["dB_ptr", "dC_ptr", "du_ptr"])


def _backward(u, delta, A, B, C, D, z, delta_bias, softplus, states, dout, dlast, options: TritonScanOptions,
              index=None):
    """Backward launches; ``options`` and ``index`` as in ``_forward`` (dout and du are then (b, c, L))."""
    batch, dim, length, dstate, groups, dg, nb, n_ckpt = _sizes(delta, A, B, C, options.checkpoint_steps)
    gather = index is not None
    atomic = options.fused_atomic
    atomic_out = gather and atomic
    idx = index if gather else A
    gather_strides = _gather_strides(u, delta, groups, gather)
    if gather and dout.stride() != u.stride():  # dout is read in x's memory layout
        dout = torch.empty_like(u, dtype=dout.dtype).copy_(dout)
    Bk, b_var, b_strides = _bc_args(B, groups, "B")
    Ck, c_var, c_strides = _bc_args(C, groups, "C")
    dev = u.device
    f32 = torch.float32
    n_seg, seg_ck = _segments(batch, dim, n_ckpt, options.segments)
    has_z, has_d, has_bias = z is not None, D is not None, delta_bias is not None
    keys = _tuning_keys(nb, length, batch, dim)
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
    scratch = torch.empty(n_seg * batch * groups * (dg + max_bd) * nb * (options.checkpoint_steps // 8), device=dev,
                          dtype=f32)
    with device_guard(dev):
        if n_seg > 1:
            dh0 = segment_exit_grads(
                delta, z, A, Ck, delta_bias, dout, dlast, idx, softplus=softplus, c_var=c_var, gather=gather,
                nb=nb, groups=groups, dg=dg, n_seg=n_seg, seg_ck=seg_ck, keys=keys, dtypes=dtypes,
                c_strides=c_strides, gather_strides=gather_strides, options=options)
        elif dlast is not None:
            dh0 = dlast.transpose(1, 2).contiguous()  # (b, n, d) = (b, 1 segment, n, d)
        else:
            dh0 = dA  # dummy pointer: not read
        has_dh0 = n_seg > 1 or dlast is not None
        flags = _flags(has_z, has_d, has_bias, softplus, b_var, c_var, has_dh0, gather, atomic_out)
        _launcher("bwd", nb, dg, dev, options)(
            lambda meta: (batch * groups * _cdiv(dg, meta["BD"]), n_seg), (*keys.values(), flags, *dtypes),
            # Pointers: inputs, saved states, incoming gradients, scratch
            u_ptr=u, dt_ptr=delta, z_ptr=z if has_z else u, A_ptr=A, B_ptr=Bk, C_ptr=Ck, D_ptr=D if has_d else A,
            bias_ptr=delta_bias if has_bias else A, st_ptr=states, dout_ptr=dout, dh0_ptr=dh0, scr_ptr=scratch,
            # Pointers: gradients
            du_ptr=du, ddt_ptr=ddelta, dz_ptr=dz if has_z else u, dA_ptr=dA, dB_ptr=dB, dC_ptr=dC, dD_ptr=dD,
            dbias_ptr=dbias, idx_ptr=idx,
            # Dimensions
            L=length, dim=dim, dstate=dstate, dg=dg, n_ckpt=n_ckpt, n_seg=n_seg, seg_ck=seg_ck,
            # Strides
            **b_strides, **c_strides,
            stride_dB_batch=dB.stride(0) if b_var else 0, stride_dB_group=dB.stride(1) if b_var else 0,
            stride_dC_batch=dC.stride(0) if c_var else 0, stride_dC_group=dC.stride(1) if c_var else 0,
            **gather_strides,
            # Autotuning keys
            **keys, key_F=flags,
            # Meta-parameters
            NB=nb, S=options.checkpoint_steps,
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
