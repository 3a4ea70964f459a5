"""Fused 2-D neighbourhood attention in Triton, forward and backward (NATTEN 0.17 semantics, dilation 1).

Computes, for every query pixel (i, j) of a (B, heads, H, W, D) map, in one kernel::

    s[(a, b)] = q[i, j] . k[a, b] + rpb[head, a - i + k - 1, b - j + k - 1]    (no scaling)
    out[i, j] = sum_{(a, b) in window(i, j)} softmax(s)[(a, b)] v[a, b]

over the clamped k x k window ``start(i) <= a < start(i) + k``, ``start(j) <= b < start(j) + k``
with ``start(x) = min(max(x - k // 2, 0), L - k)`` (shifted at the borders, never shrunk); the
logits never reach memory.

Forward
-------
Grid: (query tiles, B * heads). A program owns a tile of ``TH x TW`` query pixels (BLOCK_M =
TH * TW rows of the score matrix) of one (batch, head). Every key that a query of the tile can
see lies in the key region rows ``[start(r0), start(r_last) + k)`` x columns ``[start(c0),
start(c_last) + k)`` (r0 / r_last the first / last row of the tile inside the map; at most (TH +
k - 1) x (TW + k - 1) pixels, fewer at the borders). The program walks that region flattened
row-major in blocks of ``BLOCK_N`` key pixels: a (BLOCK_D, BLOCK_N) tile of K^T and a (BLOCK_N,
BLOCK_D) tile of V are gathered through their strides, ``S = Q @ K^T`` by ``tl.dot`` (float32
accumulation), the bias is gathered from the (heads, 2k - 1, 2k - 1) table per (query, key)
pair, keys outside a query's window are set to -inf, and a flash-attention online softmax
(running max / sum, exp2 with log2(e) folded in) accumulates ``P @ V`` in float32 registers.
The running max starts at a large finite negative value so that a block in which a query sees
no key contributes nothing (no inf - inf). The output is written once, in q's dtype; on request
also the natural-log log-sum-exp of each query's logits, ``lse`` (B, heads, H, W) float32, for
the backward.

Backward
--------
Flash-attention style, from the saved q, k, v, rpb, out and lse: ``P = exp(S - lse)`` is
recomputed block by block and never stored. ``Delta = rowsum(dO * O)`` (B, heads, H, W) float32
is formed by torch first. Then two kernels, neither with atomics:

* ``_na2d_bwd_dq_kernel``, query-centric, the forward's grid and tiling (query tile x key
  region blocks): ``dP = dO @ V^T``, ``dS = P * (dP - Delta)``, ``dQ += dS @ K``; where the bias
  needs a gradient it also stores dS per (query, neighbour), the (B, heads, H, W, k*k) float32
  logit gradient ``dlogits`` in neighbour order ``kh * k + kw`` (each pair is written by exactly
  one program), which the caller reduces onto the bias table (dRPB[h, a-i+k-1, b-j+k-1] summed
  over batch and queries).
* ``_na2d_bwd_dkdv_kernel``, key-centric: grid (key tiles, B * heads). Key row a is seen by the
  query rows ``[0 if a < k else a - k // 2, L - 1 if a >= L - k else a + k // 2]`` (the inverse
  of start(); k rows in the interior, up to 2k - 1 near the borders), so a tile of ``TH x TW``
  keys (BLOCK_N = TH * TW rows of S^T) is seen by a rectangular query region that the program
  walks flattened in blocks of ``BLOCK_M`` queries (the forward's BLOCK_N): ``S^T = K @ Q^T +
  bias^T``, ``P^T = exp(S^T - lse)``, ``dV += P^T @ dO``, ``dP^T = V @ dO^T``, ``dS^T = P^T *
  (dP^T - Delta)``, ``dK += dS^T @ Q``, with the forward's window masks. dK and dV stay in
  float32 registers and are written once.

Each kernel computes only the gradients asked for (``WRITE_*``); the dq kernel runs when q or
the bias needs a gradient, the dk/dv kernel when k or v does. Gradients are written contiguous
in the inputs' dtype.

Precision, tiles
----------------
D is padded to ``BLOCK_D`` = the next power of two >= max(D, 16) with masked loads (D = 36 -> 64),
so that every ``tl.dot`` has M, N, K >= 16. float32 inputs are multiplied in IEEE float32 (no
TF32: the same numbers as the "torch" backend); bf16 / fp16 inputs feed the tensor cores
directly, P and dS are cast to the operand dtype before their products as in flash attention.
Under the interpreter the half-precision operands are upcast to float32 before ``tl.dot``
(``DOT_F32``: Triton 3.8's interpreter multiplies bf16 operands wrongly), which gives the same
products.

Strides: q, k, v, dO are read through arbitrary (batch, head, row, col, channel) strides (SegMAN
passes permuted views of one qkv tensor); lse, Delta and dlogits are contiguous. The per-(batch,
head) base offset is int64, offsets inside a map int32 unless ``WIDE`` (a map spans 2^31
elements or more).

Tiles (compiled): 8 x 8 queries (BLOCK_M = 64) and ``BLOCK_N`` = 32 key pixels with 4 warps for
bf16 / fp16, 4 x 8 queries, 32 keys, 4 warps for float32 (``TILE_*``, ``*_F32``; H200 sweep of the
forward, e.g. bf16 (8, 2, 128, 128, 32), k = 11: 0.25 ms, float32 0.83 ms; the "torch" backend
16.6 / 19.5 ms). Both backward kernels use the same tiles (the dk/dv kernel with the roles of
queries and keys swapped), not tuned separately. Under ``TRITON_INTERPRET=1`` (CPU tests) 4 x 4
pixels and blocks of 16, so that tiny test maps span several tiles, partial tiles and several
blocks.

The autograd Function (and the reduction of dlogits onto the bias table) lives with its caller
in ``ssm_apps.layers.neighborhood_attention``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._backend import device_guard, interpreting

#: Query tile (rows x cols), key block (pixels of the flattened key region) and warps, compiled:
#: bf16 / fp16 inputs (tensor cores), and float32 inputs (IEEE products, more registers per element:
#: a smaller tile, else D = 36 / 48 -> BLOCK_D = 64 spills). Picked on an H200 from 9 candidates for
#: the forward; the backward kernels reuse them (the dk/dv kernel as key tile x query block).
TILE_H, TILE_W, BLOCK_N, NUM_WARPS = 8, 8, 32, 4
TILE_H_F32, TILE_W_F32, BLOCK_N_F32, NUM_WARPS_F32 = 4, 8, 32, 4
#: The same under the Triton interpreter: small, so that tiny maps span several tiles and blocks.
INTERPRET_TILE_H, INTERPRET_TILE_W, INTERPRET_BLOCK_N = 4, 4, 16
#: Largest head dim held in one register tile (BLOCK_D, a power of two).
MAX_HEAD_DIM = 256

_LOG2E = tl.constexpr(1.4426950408889634)
_LN2 = tl.constexpr(0.6931471805599453)
#: Initial running max: finite, so that a block with no visible key gives exp2(-inf) = 0, not NaN.
_NEG_BIG = tl.constexpr(-1.0e30)


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _window_start(x, L, KS: tl.constexpr):
    """First key index of the clamped window of query index ``x`` along an axis of length ``L``."""
    return tl.minimum(tl.maximum(x - KS // 2, 0), L - KS)


@triton.jit
def _first_query(a, KS: tl.constexpr):
    """First query index whose clamped window contains key index ``a`` (the inverse of _window_start)."""
    return tl.where(a < KS, 0, a - KS // 2)


@triton.jit
def _last_query(a, L, KS: tl.constexpr):
    """Last query index whose clamped window contains key index ``a`` along an axis of length ``L``."""
    return tl.where(a >= L - KS, L - 1, a + KS // 2)


@triton.jit
def _mm(a, b, IEEE: tl.constexpr, DOT_F32: tl.constexpr):
    """a @ b accumulated in float32: IEEE float32 products (float32 inputs), or the operands' own
    dtype on the tensor cores; DOT_F32 upcasts the operands first (interpreter: its bf16 dot is wrong)."""
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    elif DOT_F32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b)


@triton.jit
def _query_tile(pid_t, n_tiles_w, H, W, KS: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr):
    """Tile ``pid_t``'s TH*TW queries (rows qi, cols qj clamped into the map, validity mask, window starts
    si, sj) and the key region they see, flattened row-major: key n -> (kr0 + n // RW, kc0 + n % RW)."""
    r0 = (pid_t // n_tiles_w) * TH
    c0 = (pid_t % n_tiles_w) * TW
    offs_m = tl.arange(0, TH * TW)
    qi = r0 + offs_m // TW
    qj = c0 + offs_m % TW
    mask_m = (qi < H) & (qj < W)
    qi = tl.minimum(qi, H - 1)
    qj = tl.minimum(qj, W - 1)
    si = _window_start(qi, H, KS)
    sj = _window_start(qj, W, KS)
    kr0 = _window_start(r0, H, KS)
    kc0 = _window_start(c0, W, KS)
    kr1 = _window_start(tl.minimum(r0 + TH - 1, H - 1), H, KS) + KS
    kc1 = _window_start(tl.minimum(c0 + TW - 1, W - 1), W, KS) + KS
    RW = kc1 - kc0
    return qi, qj, mask_m, si, sj, kr0, kc0, RW, (kr1 - kr0) * RW


@triton.jit
def _offsets(qi, qj, D, BLOCK_D: tl.constexpr, WIDE: tl.constexpr):
    """Row / col / head-dim offsets (int64 when ``WIDE``) and the head-dim mask of a block of queries."""
    offs_d = tl.arange(0, BLOCK_D)
    if WIDE:
        return qi.to(tl.int64), qj.to(tl.int64), offs_d.to(tl.int64), offs_d < D
    return qi, qj, offs_d, offs_d < D


@triton.jit
def _na2d_fwd_kernel(
    # Pointers
    q_ptr, k_ptr, v_ptr, rpb_ptr, out_ptr, lse_ptr,
    # Dimensions
    heads, H, W, D, n_tiles_w,
    # Strides
    stride_q_b, stride_q_h, stride_q_row, stride_q_col, stride_q_d,
    stride_k_b, stride_k_h, stride_k_row, stride_k_col, stride_k_d,
    stride_v_b, stride_v_h, stride_v_row, stride_v_col, stride_v_d,
    stride_o_b, stride_o_h, stride_o_row, stride_o_col, stride_o_d,
    # Meta-parameters
    KS: tl.constexpr, HAS_RPB: tl.constexpr, STORE_LSE: tl.constexpr, IEEE: tl.constexpr,
    DOT_F32: tl.constexpr, WIDE: tl.constexpr,
    TH: tl.constexpr, TW: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    BLOCK_M: tl.constexpr = TH * TW
    NB: tl.constexpr = 2 * KS - 1  # side of the bias table
    pid_bh = tl.program_id(1)
    bi = (pid_bh // heads).to(tl.int64)
    hi = pid_bh % heads
    # the program's tile of queries (clamped into the map) and the key region they see
    qi, qj, mask_m, si, sj, kr0, kc0, RW, n_region = _query_tile(tl.program_id(0), n_tiles_w, H, W, KS, TH, TW)
    qi_o, qj_o, dd, mask_d = _offsets(qi, qj, D, BLOCK_D, WIDE)

    q_base = q_ptr + bi * stride_q_b + hi.to(tl.int64) * stride_q_h
    k_base = k_ptr + bi * stride_k_b + hi.to(tl.int64) * stride_k_h
    v_base = v_ptr + bi * stride_v_b + hi.to(tl.int64) * stride_v_h
    q = tl.load(
        q_base + (qi_o * stride_q_row + qj_o * stride_q_col)[:, None] + dd[None, :] * stride_q_d,
        mask=mask_m[:, None] & mask_d[None, :], other=0.0,
    )

    m_i = tl.full([BLOCK_M], _NEG_BIG, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for n0 in range(0, n_region, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_region
        ka = kr0 + offs_n // RW  # key rows (BLOCK_N,)
        kb = kc0 + offs_n % RW  # key cols
        if WIDE:
            ka_o, kb_o = ka.to(tl.int64), kb.to(tl.int64)
        else:
            ka_o, kb_o = ka, kb
        kv_mask = mask_n[:, None] & mask_d[None, :]
        kt = tl.load(
            k_base + (ka_o * stride_k_row + kb_o * stride_k_col)[None, :] + dd[:, None] * stride_k_d,
            mask=mask_d[:, None] & mask_n[None, :], other=0.0,
        )  # (BLOCK_D, BLOCK_N)
        vv = tl.load(
            v_base + (ka_o * stride_v_row + kb_o * stride_v_col)[:, None] + dd[None, :] * stride_v_d,
            mask=kv_mask, other=0.0,
        )  # (BLOCK_N, BLOCK_D)
        s = _mm(q, kt, IEEE, DOT_F32)
        # relative offsets of the key inside each query's window: (BLOCK_M, BLOCK_N)
        da = ka[None, :] - si[:, None]
        db = kb[None, :] - sj[:, None]
        valid = (da >= 0) & (da < KS) & (db >= 0) & (db < KS) & mask_n[None, :]
        if HAS_RPB:
            bias_idx = (ka[None, :] - qi[:, None] + KS - 1) * NB + (kb[None, :] - qj[:, None] + KS - 1)
            s += tl.load(rpb_ptr + hi * (NB * NB) + bias_idx, mask=valid, other=0.0)
        s = tl.where(valid, s * _LOG2E, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + _mm(p.to(vv.dtype), vv, IEEE, DOT_F32)
        m_i = m_new

    out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
    o_ptrs = (out_ptr + bi * stride_o_b + hi.to(tl.int64) * stride_o_h
              + (qi_o * stride_o_row + qj_o * stride_o_col)[:, None] + dd[None, :] * stride_o_d)
    tl.store(o_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])
    if STORE_LSE:
        # natural-log log-sum-exp; a query of the map sees k*k keys, its largest term is 1: l_i >= 1
        lse = (m_i + tl.log2(l_i)) * _LN2
        tl.store(lse_ptr + pid_bh.to(tl.int64) * H * W + qi_o * W + qj_o, lse, mask=mask_m)


@triton.jit
def _na2d_bwd_dq_kernel(
    # Pointers
    q_ptr, k_ptr, v_ptr, rpb_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr, ds_ptr,
    # Dimensions
    heads, H, W, D, n_tiles_w,
    # Strides
    stride_q_b, stride_q_h, stride_q_row, stride_q_col, stride_q_d,
    stride_k_b, stride_k_h, stride_k_row, stride_k_col, stride_k_d,
    stride_v_b, stride_v_h, stride_v_row, stride_v_col, stride_v_d,
    stride_do_b, stride_do_h, stride_do_row, stride_do_col, stride_do_d,
    stride_dq_b, stride_dq_h, stride_dq_row, stride_dq_col, stride_dq_d,
    # Meta-parameters
    KS: tl.constexpr, HAS_RPB: tl.constexpr, WRITE_DQ: tl.constexpr, WRITE_DS: tl.constexpr,
    IEEE: tl.constexpr, DOT_F32: tl.constexpr, WIDE: tl.constexpr,
    TH: tl.constexpr, TW: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    BLOCK_M: tl.constexpr = TH * TW
    NB: tl.constexpr = 2 * KS - 1  # side of the bias table
    KK: tl.constexpr = KS * KS  # neighbours per query
    pid_bh = tl.program_id(1)
    bi = (pid_bh // heads).to(tl.int64)
    hi = pid_bh % heads
    # the program's tile of queries (clamped into the map) and the key region they see
    qi, qj, mask_m, si, sj, kr0, kc0, RW, n_region = _query_tile(tl.program_id(0), n_tiles_w, H, W, KS, TH, TW)
    qi_o, qj_o, dd, mask_d = _offsets(qi, qj, D, BLOCK_D, WIDE)

    hb = hi.to(tl.int64)
    k_base = k_ptr + bi * stride_k_b + hb * stride_k_h
    v_base = v_ptr + bi * stride_v_b + hb * stride_v_h
    qd_mask = mask_m[:, None] & mask_d[None, :]
    q = tl.load(
        q_ptr + bi * stride_q_b + hb * stride_q_h
        + (qi_o * stride_q_row + qj_o * stride_q_col)[:, None] + dd[None, :] * stride_q_d,
        mask=qd_mask, other=0.0,
    )  # (BLOCK_M, BLOCK_D)
    do = tl.load(
        do_ptr + bi * stride_do_b + hb * stride_do_h
        + (qi_o * stride_do_row + qj_o * stride_do_col)[:, None] + dd[None, :] * stride_do_d,
        mask=qd_mask, other=0.0,
    )  # (BLOCK_M, BLOCK_D)
    pix = qi_o * W + qj_o  # query pixel inside the (batch, head) map
    stat_off = pid_bh.to(tl.int64) * H * W + pix
    lse2 = tl.load(lse_ptr + stat_off, mask=mask_m, other=0.0) * _LOG2E
    delta = tl.load(delta_ptr + stat_off, mask=mask_m, other=0.0)

    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for n0 in range(0, n_region, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_region
        ka = kr0 + offs_n // RW  # key rows (BLOCK_N,)
        kb = kc0 + offs_n % RW  # key cols
        if WIDE:
            ka_o, kb_o = ka.to(tl.int64), kb.to(tl.int64)
        else:
            ka_o, kb_o = ka, kb
        kk = tl.load(
            k_base + (ka_o * stride_k_row + kb_o * stride_k_col)[:, None] + dd[None, :] * stride_k_d,
            mask=mask_n[:, None] & mask_d[None, :], other=0.0,
        )  # (BLOCK_N, BLOCK_D)
        vt = tl.load(
            v_base + (ka_o * stride_v_row + kb_o * stride_v_col)[None, :] + dd[:, None] * stride_v_d,
            mask=mask_d[:, None] & mask_n[None, :], other=0.0,
        )  # (BLOCK_D, BLOCK_N)
        s = _mm(q, tl.trans(kk), IEEE, DOT_F32)  # (BLOCK_M, BLOCK_N)
        da = ka[None, :] - si[:, None]
        db = kb[None, :] - sj[:, None]
        valid = (da >= 0) & (da < KS) & (db >= 0) & (db < KS) & mask_n[None, :] & mask_m[:, None]
        if HAS_RPB:
            bias_idx = (ka[None, :] - qi[:, None] + KS - 1) * NB + (kb[None, :] - qj[:, None] + KS - 1)
            s += tl.load(rpb_ptr + hi * (NB * NB) + bias_idx, mask=valid, other=0.0)
        p = tl.exp2(tl.where(valid, s * _LOG2E - lse2[:, None], float("-inf")))
        dp = _mm(do, vt, IEEE, DOT_F32)
        ds = p * (dp - delta[:, None])  # dL / dlogit, 0 off the windows
        if WRITE_DQ:
            dq += _mm(ds.to(kk.dtype), kk, IEEE, DOT_F32)
        if WRITE_DS:
            # neighbour kh * k + kw of the query: each (query, neighbour) is met once, in one block
            ds_ptrs = ds_ptr + pid_bh.to(tl.int64) * H * W * KK + (pix * KK)[:, None] + da * KS + db
            tl.store(ds_ptrs, ds, mask=valid)

    if WRITE_DQ:
        dq_ptrs = (dq_ptr + bi * stride_dq_b + hb * stride_dq_h
                   + (qi_o * stride_dq_row + qj_o * stride_dq_col)[:, None] + dd[None, :] * stride_dq_d)
        tl.store(dq_ptrs, dq.to(dq_ptr.dtype.element_ty), mask=qd_mask)


@triton.jit
def _na2d_bwd_dkdv_kernel(
    # Pointers
    q_ptr, k_ptr, v_ptr, rpb_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr,
    # Dimensions
    heads, H, W, D, n_tiles_w,
    # Strides
    stride_q_b, stride_q_h, stride_q_row, stride_q_col, stride_q_d,
    stride_k_b, stride_k_h, stride_k_row, stride_k_col, stride_k_d,
    stride_v_b, stride_v_h, stride_v_row, stride_v_col, stride_v_d,
    stride_do_b, stride_do_h, stride_do_row, stride_do_col, stride_do_d,
    stride_dk_b, stride_dk_h, stride_dk_row, stride_dk_col, stride_dk_d,
    stride_dv_b, stride_dv_h, stride_dv_row, stride_dv_col, stride_dv_d,
    # Meta-parameters
    KS: tl.constexpr, HAS_RPB: tl.constexpr, WRITE_DK: tl.constexpr, WRITE_DV: tl.constexpr,
    IEEE: tl.constexpr, DOT_F32: tl.constexpr, WIDE: tl.constexpr,
    TH: tl.constexpr, TW: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    BLOCK_N: tl.constexpr = TH * TW  # keys of the tile (rows of S^T)
    NB: tl.constexpr = 2 * KS - 1  # side of the bias table
    pid_t = tl.program_id(0)
    pid_bh = tl.program_id(1)
    bi = (pid_bh // heads).to(tl.int64)
    hi = pid_bh % heads
    r0 = (pid_t // n_tiles_w) * TH
    c0 = (pid_t % n_tiles_w) * TW

    # keys of the tile: (BLOCK_N,) rows / cols, clamped into the map (the clamped copies are not stored)
    offs_n = tl.arange(0, BLOCK_N)
    ka = r0 + offs_n // TW
    kb = c0 + offs_n % TW
    mask_n = (ka < H) & (kb < W)
    ka = tl.minimum(ka, H - 1)
    kb = tl.minimum(kb, W - 1)

    # query region that sees the tile, flattened row-major: m -> (qr0 + m // RW, qc0 + m % RW)
    qr0 = _first_query(r0, KS)
    qc0 = _first_query(c0, KS)
    qr1 = _last_query(tl.minimum(r0 + TH - 1, H - 1), H, KS) + 1
    qc1 = _last_query(tl.minimum(c0 + TW - 1, W - 1), W, KS) + 1
    RW = qc1 - qc0
    n_region = (qr1 - qr0) * RW

    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    if WIDE:
        ka_o, kb_o, dd = ka.to(tl.int64), kb.to(tl.int64), offs_d.to(tl.int64)
    else:
        ka_o, kb_o, dd = ka, kb, offs_d

    hb = hi.to(tl.int64)
    q_base = q_ptr + bi * stride_q_b + hb * stride_q_h
    do_base = do_ptr + bi * stride_do_b + hb * stride_do_h
    stat_base = pid_bh.to(tl.int64) * H * W
    kd_mask = mask_n[:, None] & mask_d[None, :]
    kk = tl.load(
        k_ptr + bi * stride_k_b + hb * stride_k_h
        + (ka_o * stride_k_row + kb_o * stride_k_col)[:, None] + dd[None, :] * stride_k_d,
        mask=kd_mask, other=0.0,
    )  # (BLOCK_N, BLOCK_D)
    vv = tl.load(
        v_ptr + bi * stride_v_b + hb * stride_v_h
        + (ka_o * stride_v_row + kb_o * stride_v_col)[:, None] + dd[None, :] * stride_v_d,
        mask=kd_mask, other=0.0,
    )  # (BLOCK_N, BLOCK_D)

    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for m0 in range(0, n_region, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m = offs_m < n_region
        qi = qr0 + offs_m // RW  # query rows (BLOCK_M,)
        qj = qc0 + offs_m % RW  # query cols
        si = _window_start(qi, H, KS)
        sj = _window_start(qj, W, KS)
        if WIDE:
            qi_o, qj_o = qi.to(tl.int64), qj.to(tl.int64)
        else:
            qi_o, qj_o = qi, qj
        qd_mask = mask_m[:, None] & mask_d[None, :]
        q = tl.load(
            q_base + (qi_o * stride_q_row + qj_o * stride_q_col)[:, None] + dd[None, :] * stride_q_d,
            mask=qd_mask, other=0.0,
        )  # (BLOCK_M, BLOCK_D)
        do = tl.load(
            do_base + (qi_o * stride_do_row + qj_o * stride_do_col)[:, None] + dd[None, :] * stride_do_d,
            mask=qd_mask, other=0.0,
        )  # (BLOCK_M, BLOCK_D)
        stat_off = stat_base + qi_o * W + qj_o
        lse2 = tl.load(lse_ptr + stat_off, mask=mask_m, other=0.0) * _LOG2E
        st = _mm(kk, tl.trans(q), IEEE, DOT_F32)  # S^T (BLOCK_N, BLOCK_M)
        # key offsets inside each query's window: (BLOCK_N, BLOCK_M)
        da = ka[:, None] - si[None, :]
        db = kb[:, None] - sj[None, :]
        valid = (da >= 0) & (da < KS) & (db >= 0) & (db < KS) & mask_m[None, :]
        if HAS_RPB:
            bias_idx = (ka[:, None] - qi[None, :] + KS - 1) * NB + (kb[:, None] - qj[None, :] + KS - 1)
            st += tl.load(rpb_ptr + hi * (NB * NB) + bias_idx, mask=valid, other=0.0)
        pt = tl.exp2(tl.where(valid, st * _LOG2E - lse2[None, :], float("-inf")))
        if WRITE_DV:
            dv += _mm(pt.to(do.dtype), do, IEEE, DOT_F32)
        if WRITE_DK:
            delta = tl.load(delta_ptr + stat_off, mask=mask_m, other=0.0)
            dpt = _mm(vv, tl.trans(do), IEEE, DOT_F32)
            dst = pt * (dpt - delta[None, :])
            dk += _mm(dst.to(q.dtype), q, IEEE, DOT_F32)

    if WRITE_DK:
        dk_ptrs = (dk_ptr + bi * stride_dk_b + hb * stride_dk_h
                   + (ka_o * stride_dk_row + kb_o * stride_dk_col)[:, None] + dd[None, :] * stride_dk_d)
        tl.store(dk_ptrs, dk.to(dk_ptr.dtype.element_ty), mask=kd_mask)
    if WRITE_DV:
        dv_ptrs = (dv_ptr + bi * stride_dv_b + hb * stride_dv_h
                   + (ka_o * stride_dv_row + kb_o * stride_dv_col)[:, None] + dd[None, :] * stride_dv_d)
        tl.store(dv_ptrs, dv.to(dv_ptr.dtype.element_ty), mask=kd_mask)


# ----------------------------------------------------------------------------- launchers


def _tiles(dtype: torch.dtype) -> tuple[int, int, int, int]:
    """(TH, TW, BLOCK_N, num_warps) of the launch: interpreter tiles, or the compiled ones for ``dtype``."""
    if interpreting():
        return INTERPRET_TILE_H, INTERPRET_TILE_W, INTERPRET_BLOCK_N, 1
    if dtype == torch.float32:
        return TILE_H_F32, TILE_W_F32, BLOCK_N_F32, NUM_WARPS_F32
    return TILE_H, TILE_W, BLOCK_N, NUM_WARPS


def _wide(t: torch.Tensor) -> bool:
    """True when an offset inside one (batch, head) map of ``t`` may overflow int32."""
    _, _, h, w, d = t.shape
    return (h - 1) * abs(t.stride(2)) + (w - 1) * abs(t.stride(3)) + (d - 1) * abs(t.stride(4)) >= 2**31


def _check_head_dim(d: int) -> int:
    """BLOCK_D for head dim ``d``: the next power of two >= max(d, 16); ValueError beyond MAX_HEAD_DIM."""
    if d > MAX_HEAD_DIM:
        raise ValueError(f"na2d_triton: head dim D must be at most {MAX_HEAD_DIM}; got {d}")
    return max(16, triton.next_power_of_2(d))


def na2d_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel_size: int,
    rpb: torch.Tensor | None,
    return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The fused forward kernel's launcher: the arguments and the result of ``ssm_apps.kernels.na.na2d_triton``
    (which checks devices and dtypes; ``neighborhood_attention_2d`` checks shapes), output contiguous;
    with ``return_lse`` also the (B, heads, H, W) float32 natural-log log-sum-exp of each query's logits."""
    b, heads, h, w, d = q.shape
    block_d = _check_head_dim(d)
    out = torch.empty((b, heads, h, w, d), dtype=q.dtype, device=q.device)
    lse = torch.empty((b, heads, h, w), dtype=torch.float32, device=q.device) if return_lse else None
    if out.numel() == 0:
        return (out, lse) if return_lse else out
    if rpb is not None:
        rpb = rpb.to(device=q.device, dtype=torch.float32).contiguous()
    th, tw, block_n, warps = _tiles(q.dtype)
    n_tiles_w = triton.cdiv(w, tw)
    grid = (triton.cdiv(h, th) * n_tiles_w, b * heads)
    with device_guard(q.device):
        _na2d_fwd_kernel[grid](
            q, k, v, rpb, out, lse,
            heads, h, w, d, n_tiles_w,
            *q.stride(),
            *k.stride(),
            *v.stride(),
            *out.stride(),
            KS=kernel_size, HAS_RPB=rpb is not None, STORE_LSE=return_lse, IEEE=q.dtype == torch.float32,
            DOT_F32=interpreting(), WIDE=any(_wide(t) for t in (q, k, v, out)),
            TH=th, TW=tw, BLOCK_N=block_n, BLOCK_D=block_d, num_warps=warps,
        )
    return (out, lse) if return_lse else out


def na2d_bwd(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    kernel_size: int,
    rpb: torch.Tensor | None,
    needs_grad: tuple[bool, bool, bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The backward kernels' launcher: the arguments and the result of
    ``ssm_apps.kernels.na.na2d_triton_backward`` (dq, dk, dv contiguous in q's dtype, dlogits
    (B, heads, H, W, k*k) float32 contiguous; None where ``needs_grad`` is False)."""
    need_q, need_k, need_v, need_rpb = needs_grad
    need_rpb = need_rpb and rpb is not None
    b, heads, h, w, d = q.shape
    block_d = _check_head_dim(d)
    shape = (b, heads, h, w, d)
    dq = torch.empty(shape, dtype=q.dtype, device=q.device) if need_q else None
    dk = torch.empty(shape, dtype=q.dtype, device=q.device) if need_k else None
    dv = torch.empty(shape, dtype=q.dtype, device=q.device) if need_v else None
    # every (query, neighbour) of the map is written by the dq kernel
    dlogits = (torch.empty((b, heads, h, w, kernel_size**2), dtype=torch.float32, device=q.device)
               if need_rpb else None)
    if q.numel() == 0 or not any((need_q, need_k, need_v, need_rpb)):
        return dq, dk, dv, dlogits
    if rpb is not None:
        rpb = rpb.to(device=q.device, dtype=torch.float32).contiguous()
    lse = lse.contiguous()
    delta = (grad_out.float() * out.float()).sum(-1).contiguous()  # rowsum(dO * O): (B, heads, H, W)
    th, tw, block, warps = _tiles(q.dtype)
    n_tiles_w = triton.cdiv(w, tw)
    grid = (triton.cdiv(h, th) * n_tiles_w, b * heads)
    wide = any(_wide(t) for t in (q, k, v, grad_out)) or h * w * kernel_size**2 >= 2**31
    meta = dict(KS=kernel_size, HAS_RPB=rpb is not None, IEEE=q.dtype == torch.float32, DOT_F32=interpreting(),
                WIDE=wide, TH=th, TW=tw, BLOCK_D=block_d, num_warps=warps)
    with device_guard(q.device):
        if need_q or need_rpb:
            _na2d_bwd_dq_kernel[grid](
                q, k, v, rpb, grad_out, lse, delta, dq, dlogits,
                heads, h, w, d, n_tiles_w,
                *q.stride(),
                *k.stride(),
                *v.stride(),
                *grad_out.stride(),
                *(dq.stride() if need_q else (0,) * 5),
                WRITE_DQ=need_q, WRITE_DS=need_rpb, BLOCK_N=block, **meta,
            )
        if need_k or need_v:
            _na2d_bwd_dkdv_kernel[grid](
                q, k, v, rpb, grad_out, lse, delta, dk, dv,
                heads, h, w, d, n_tiles_w,
                *q.stride(),
                *k.stride(),
                *v.stride(),
                *grad_out.stride(),
                *(dk.stride() if need_k else (0,) * 5),
                *(dv.stride() if need_v else (0,) * 5),
                WRITE_DK=need_k, WRITE_DV=need_v, BLOCK_M=block, **meta,
            )
    return dq, dk, dv, dlogits
