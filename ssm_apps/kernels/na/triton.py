"""Fused 2-D neighbourhood attention forward in Triton (NATTEN 0.17 semantics, dilation 1).

Computes, for every query pixel (i, j) of a (B, heads, H, W, D) map, in one kernel::

    s[(a, b)] = q[i, j] . k[a, b] + rpb[head, a - i + k - 1, b - j + k - 1]    (no scaling)
    out[i, j] = sum_{(a, b) in window(i, j)} softmax(s)[(a, b)] v[a, b]

over the clamped k x k window ``start(i) <= a < start(i) + k``, ``start(j) <= b < start(j) + k``
with ``start(x) = min(max(x - k // 2, 0), L - k)`` (shifted at the borders, never shrunk); the
logits never reach memory.

Design
------
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
no key contributes nothing (no inf - inf). The output is written once, in q's dtype.

D is padded to ``BLOCK_D`` = the next power of two >= max(D, 16) with masked loads (D = 36 -> 64),
so that every ``tl.dot`` has M, N, K >= 16. float32 inputs are multiplied in IEEE float32 (no
TF32: the same numbers as the "torch" backend); bf16 / fp16 inputs feed the tensor cores
directly, P is cast to V's dtype before ``P @ V`` as in flash attention. Under the interpreter the
half-precision operands are upcast to float32 before ``tl.dot`` (``DOT_F32``: Triton 3.8's
interpreter multiplies bf16 operands wrongly), which gives the same products.

Strides: q, k, v are read through arbitrary (batch, head, row, col, channel) strides (SegMAN
passes permuted views of one qkv tensor); the per-(batch, head) base offset is int64, offsets
inside a map int32 unless ``WIDE`` (a map spans 2^31 elements or more).

Tiles (compiled): 8 x 8 queries (BLOCK_M = 64) and ``BLOCK_N`` = 32 key pixels with 4 warps for
bf16 / fp16, 4 x 8 queries, 32 keys, 4 warps for float32 (``TILE_*``, ``*_F32``; H200 sweep, e.g.
bf16 (8, 2, 128, 128, 32), k = 11: 0.25 ms, float32 0.83 ms; the "torch" backend 16.6 / 19.5 ms).
Under ``TRITON_INTERPRET=1`` (CPU tests) 4 x 4 queries and 16 keys, so that tiny test maps span
several tiles, partial tiles and several key blocks.

Forward only: the autograd Function (backward recomputed through the "torch" backend) lives
with its caller in ``ssm_apps.layers.neighborhood_attention``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._backend import device_guard, interpreting

#: Query tile (rows x cols), key block (pixels of the flattened key region) and warps, compiled:
#: bf16 / fp16 inputs (tensor cores), and float32 inputs (IEEE products, more registers per element:
#: a smaller tile, else D = 36 / 48 -> BLOCK_D = 64 spills). Picked on an H200 from 9 candidates.
TILE_H, TILE_W, BLOCK_N, NUM_WARPS = 8, 8, 32, 4
TILE_H_F32, TILE_W_F32, BLOCK_N_F32, NUM_WARPS_F32 = 4, 8, 32, 4
#: The same under the Triton interpreter: small, so that tiny maps span several tiles and blocks.
INTERPRET_TILE_H, INTERPRET_TILE_W, INTERPRET_BLOCK_N = 4, 4, 16
#: Largest head dim held in one register tile (BLOCK_D, a power of two).
MAX_HEAD_DIM = 256

_LOG2E = tl.constexpr(1.4426950408889634)
#: Initial running max: finite, so that a block with no visible key gives exp2(-inf) = 0, not NaN.
_NEG_BIG = tl.constexpr(-1.0e30)


# ----------------------------------------------------------------------------- kernel


@triton.jit
def _window_start(x, L, KS: tl.constexpr):
    """First key index of the clamped window of query index ``x`` along an axis of length ``L``."""
    return tl.minimum(tl.maximum(x - KS // 2, 0), L - KS)


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
def _na2d_fwd_kernel(
    # Pointers
    q_ptr, k_ptr, v_ptr, rpb_ptr, out_ptr,
    # Dimensions
    heads, H, W, D, n_tiles_w,
    # Strides
    stride_q_b, stride_q_h, stride_q_row, stride_q_col, stride_q_d,
    stride_k_b, stride_k_h, stride_k_row, stride_k_col, stride_k_d,
    stride_v_b, stride_v_h, stride_v_row, stride_v_col, stride_v_d,
    stride_o_b, stride_o_h, stride_o_row, stride_o_col, stride_o_d,
    # Meta-parameters
    KS: tl.constexpr, HAS_RPB: tl.constexpr, IEEE: tl.constexpr, DOT_F32: tl.constexpr, WIDE: tl.constexpr,
    TH: tl.constexpr, TW: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    BLOCK_M: tl.constexpr = TH * TW
    NB: tl.constexpr = 2 * KS - 1  # side of the bias table
    pid_t = tl.program_id(0)
    pid_bh = tl.program_id(1)
    bi = (pid_bh // heads).to(tl.int64)
    hi = pid_bh % heads
    r0 = (pid_t // n_tiles_w) * TH
    c0 = (pid_t % n_tiles_w) * TW

    # queries of the tile: (BLOCK_M,) rows / cols, clamped into the map for the window arithmetic
    offs_m = tl.arange(0, BLOCK_M)
    qi = r0 + offs_m // TW
    qj = c0 + offs_m % TW
    mask_m = (qi < H) & (qj < W)
    qi = tl.minimum(qi, H - 1)
    qj = tl.minimum(qj, W - 1)
    si = _window_start(qi, H, KS)
    sj = _window_start(qj, W, KS)

    # key region seen by the tile, flattened row-major: n -> (kr0 + n // RW, kc0 + n % RW)
    kr0 = _window_start(r0, H, KS)
    kc0 = _window_start(c0, W, KS)
    kr1 = _window_start(tl.minimum(r0 + TH - 1, H - 1), H, KS) + KS
    kc1 = _window_start(tl.minimum(c0 + TW - 1, W - 1), W, KS) + KS
    RW = kc1 - kc0
    n_region = (kr1 - kr0) * RW

    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    if WIDE:
        qi_o, qj_o, dd = qi.to(tl.int64), qj.to(tl.int64), offs_d.to(tl.int64)
    else:
        qi_o, qj_o, dd = qi, qj, offs_d

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


# ----------------------------------------------------------------------------- launcher


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


def na2d_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel_size: int,
    rpb: torch.Tensor | None,
) -> torch.Tensor:
    """The fused forward kernel's launcher: the arguments and the result of ``ssm_apps.kernels.na.na2d_triton``
    (which checks devices and dtypes; ``neighborhood_attention_2d`` checks shapes), output contiguous."""
    b, heads, h, w, d = q.shape
    if d > MAX_HEAD_DIM:
        raise ValueError(f"na2d_triton: head dim D must be at most {MAX_HEAD_DIM}; got {d}")
    out = torch.empty((b, heads, h, w, d), dtype=q.dtype, device=q.device)
    if out.numel() == 0:
        return out
    if rpb is not None:
        rpb = rpb.to(device=q.device, dtype=torch.float32).contiguous()
    th, tw, block_n, warps = _tiles(q.dtype)
    block_d = max(16, triton.next_power_of_2(d))
    n_tiles_w = triton.cdiv(w, tw)
    grid = (triton.cdiv(h, th) * n_tiles_w, b * heads)
    with device_guard(q.device):
        _na2d_fwd_kernel[grid](
            q, k, v, rpb, out,
            heads, h, w, d, n_tiles_w,
            *q.stride(),
            *k.stride(),
            *v.stride(),
            *out.stride(),
            KS=kernel_size, HAS_RPB=rpb is not None, IEEE=q.dtype == torch.float32, DOT_F32=interpreting(),
            WIDE=any(_wide(t) for t in (q, k, v, out)),
            TH=th, TW=tw, BLOCK_N=block_n, BLOCK_D=block_d, num_warps=warps,
        )
    return out
