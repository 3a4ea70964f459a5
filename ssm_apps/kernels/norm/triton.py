"""Channel-first LayerNorm in Triton: forward and backward kernels over (B, C, H, W) maps.

Statistics are taken over C at every pixel, in float32, two-pass (mean, then the variance of the
centred values) from one register tile; the output is written in the requested dtype::

    mean = sum_c x / C,  rstd = 1 / sqrt(sum_c (x - mean)^2 / C + eps)
    y    = (x - mean) * rstd * weight + bias

Design
------
The map is read in place through its strides: a pixel p = h * W + w of batch row b and channel c
lives at ``b * stride_x_b + c * stride_x_c + p * stride_x_p``, which holds for any map whose (H, W)
strides collapse into one pixel stride (``stride_h == W * stride_w``): contiguous NCHW
(stride_x_p = 1), channels_last (stride_x_c = 1) and channel slices. Triton specialises a stride
equal to 1, so the same kernel compiles to loads coalesced along the pixels (NCHW) or along the
channels (channels_last). Other maps are copied once (``_pixel_view``).

A program owns a tile of ``BLOCK_C`` (all C, rounded up to a power of two) x ``BLOCK_P`` pixels of
one batch row (forward) or of ``rows_per_program`` batch rows at the same pixels (backward, so
that its per-channel partial sums cover more pixels). The backward recomputes x_hat from
the saved float32 mean and rstd and forms, per pixel::

    g  = dy * weight
    dx = rstd * (g - mean_c(g) - x_hat * mean_c(g * x_hat))

while accumulating sum(dy * x_hat) and sum(dy) per channel over its pixels and rows in registers;
those partial sums (one row of ``C`` per program, float32) are reduced on the host side by one
``sum``. Bytes moved: forward x in, y out (+ 8 bytes per pixel of statistics); backward x, dy in,
dx out.

Tiles: ``FWD_TILE_ELEMS`` / ``BWD_TILE_ELEMS`` elements per program (``BLOCK_P`` = that / ``BLOCK_C``,
at least 1) with ``FWD_NUM_WARPS`` / ``BWD_NUM_WARPS`` warps; offsets inside a batch row are int32
(``WIDE``: int64 where a row spans 2^31 elements). Under ``TRITON_INTERPRET=1`` (CPU tests) a small tile (``INTERPRET_TILE``)
so that tiny test maps span several programs and a partial last block.
"""
from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl

#: Elements of one program's tile (BLOCK_C x BLOCK_P) and its warps, compiled, forward and backward
#: (sm_90 compile check: no spills, at most 64 / 146 registers at VMamba's shapes).
FWD_TILE_ELEMS, FWD_NUM_WARPS = 4096, 8
BWD_TILE_ELEMS, BWD_NUM_WARPS = 2048, 8
#: A backward program walks enough batch rows to cover this many pixels (fewer partial sums to
#: write and reduce), as long as at least BWD_MIN_PROGRAMS programs remain.
BWD_MIN_PIXELS = 32
BWD_MIN_PROGRAMS = 1024
#: Largest channel count held in one tile (power of two); beyond it the Triton path refuses.
MAX_BLOCK_C = 8192
#: The tile under the Triton interpreter (elements), small so tiny maps span several programs.
INTERPRET_TILE = 16


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _in_row(offs_c, offs_p, WIDE: tl.constexpr):
    """(channel [BLOCK_C, 1], pixel [1, BLOCK_P]) indices for offsets inside one batch row: int32
    (one register per element of the tile), or int64 when WIDE."""
    if WIDE:
        return offs_c[:, None].to(tl.int64), offs_p[None, :].to(tl.int64)
    else:
        return offs_c[:, None], offs_p[None, :]


@triton.jit
def _ln2d_fwd_kernel(
    # pointers
    x_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr,
    # sizes
    C, P,
    # strides
    stride_x_b, stride_x_c, stride_x_p,
    stride_y_b, stride_y_c, stride_y_p,
    # scalars
    eps,
    # meta-parameters
    HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, WIDE: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):
    # program (pid_p, row): pixels [pid_p * BLOCK_P, +BLOCK_P) of batch row ``row``, all channels;
    # offsets inside a batch row in int32 unless WIDE (a row spans 2^31 elements or more)
    pid_p = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    offs_c = tl.arange(0, BLOCK_C)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_c = offs_c < C
    mask_p = offs_p < P
    mask = mask_c[:, None] & mask_p[None, :]
    cc, pp = _in_row(offs_c, offs_p, WIDE)
    x = tl.load(x_ptr + row * stride_x_b + cc * stride_x_c + pp * stride_x_p, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / C
    xc = tl.where(mask, x - mean[None, :], 0.0)
    var = tl.sum(xc * xc, axis=0) / C
    rstd = 1.0 / tl.sqrt(var + eps)
    y = xc * rstd[None, :]
    if HAS_WEIGHT:
        w = tl.load(w_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
        y = y * w[:, None]
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
        y = y + bias[:, None]
    tl.store(y_ptr + row * stride_y_b + cc * stride_y_c + pp * stride_y_p, y.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(mean_ptr + row * P + offs_p, mean, mask=mask_p)
    tl.store(rstd_ptr + row * P + offs_p, rstd, mask=mask_p)


@triton.jit
def _ln2d_bwd_kernel(
    # pointers
    x_ptr, w_ptr, dy_ptr, mean_ptr, rstd_ptr, dx_ptr, dw_part_ptr, db_part_ptr,
    # sizes
    B, C, P, rows_per_program,
    # strides
    stride_x_b, stride_x_c, stride_x_p,
    stride_dy_b, stride_dy_c, stride_dy_p,
    stride_dx_b, stride_dx_c, stride_dx_p,
    # meta-parameters
    HAS_WEIGHT: tl.constexpr, NEED_DW: tl.constexpr, NEED_DB: tl.constexpr, WIDE: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):
    # program (pid_p, pid_b) as in the forward; writes one row of C partial sums of dweight / dbias
    # at row pid_b * n_pblk + pid_p of the (programs, C) partial buffers
    pid_p = tl.program_id(0)
    pid_b = tl.program_id(1)
    n_pblk = tl.num_programs(0)
    offs_c = tl.arange(0, BLOCK_C)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_c = offs_c < C
    mask_p = offs_p < P
    mask = mask_c[:, None] & mask_p[None, :]
    if HAS_WEIGHT:
        w = tl.load(w_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    cc, pp = _in_row(offs_c, offs_p, WIDE)
    dw_acc = tl.zeros([BLOCK_C], dtype=tl.float32)
    db_acc = tl.zeros([BLOCK_C], dtype=tl.float32)
    for i in range(rows_per_program):
        row = pid_b * rows_per_program + i
        row_mask = mask & (row < B)
        stat_mask = mask_p & (row < B)
        x_ptrs = x_ptr + row.to(tl.int64) * stride_x_b + cc * stride_x_c + pp * stride_x_p
        dy_ptrs = dy_ptr + row.to(tl.int64) * stride_dy_b + cc * stride_dy_c + pp * stride_dy_p
        x = tl.load(x_ptrs, mask=row_mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptrs, mask=row_mask, other=0.0).to(tl.float32)
        mean = tl.load(mean_ptr + row.to(tl.int64) * P + offs_p, mask=stat_mask, other=0.0)
        rstd = tl.load(rstd_ptr + row.to(tl.int64) * P + offs_p, mask=stat_mask, other=0.0)
        xhat = tl.where(row_mask, (x - mean[None, :]) * rstd[None, :], 0.0)
        if HAS_WEIGHT:
            g = dy * w[:, None]
        else:
            g = dy
        mean_g = tl.sum(g, axis=0) / C
        mean_gx = tl.sum(g * xhat, axis=0) / C
        dx = (g - mean_g[None, :] - xhat * mean_gx[None, :]) * rstd[None, :]
        dx_ptrs = dx_ptr + row.to(tl.int64) * stride_dx_b + cc * stride_dx_c + pp * stride_dx_p
        tl.store(dx_ptrs, dx.to(dx_ptr.dtype.element_ty), mask=row_mask)
        if NEED_DW:
            dw_acc += tl.sum(dy * xhat, axis=1)
        if NEED_DB:
            db_acc += tl.sum(dy, axis=1)
    part = (pid_b * n_pblk + pid_p).to(tl.int64) * C
    if NEED_DW:
        tl.store(dw_part_ptr + part + offs_c, dw_acc, mask=mask_c)
    if NEED_DB:
        tl.store(db_part_ptr + part + offs_c, db_acc, mask=mask_c)


# ----------------------------------------------------------------------------- launchers


def _pixel_view(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """``t`` (B, C, H, W) and its (batch, channel, pixel) strides; copied to contiguous when its
    (H, W) strides do not collapse into one pixel stride (e.g. a transposed map)."""
    _, _, h, w = t.shape
    sb, sc, sh, sw = t.stride()
    if w == 1:
        return t, (sb, sc, sh)
    if h == 1 or sh == w * sw:
        return t, (sb, sc, sw)
    t = t.contiguous()
    return t, (t.stride(0), t.stride(1), t.stride(3))


def _wide(c: int, p: int, *strides: tuple[int, int, int]) -> bool:
    """True when a channel or pixel offset inside a batch row may overflow int32."""
    return any(max((c - 1) * abs(sc), (p - 1) * abs(sp)) >= 2**31 for _, sc, sp in strides)


def _tile(c: int, elems: int, warps: int) -> tuple[int, int, int]:
    """(BLOCK_C, BLOCK_P, num_warps) for ``c`` channels and a tile of about ``elems`` elements."""
    block_c = triton.next_power_of_2(c)
    if block_c > MAX_BLOCK_C:
        raise ValueError(f"layer_norm_2d (triton): at most {MAX_BLOCK_C} channels fit one tile; got C={c}")
    if _interpreting():
        return block_c, max(1, INTERPRET_TILE // block_c), 1
    return block_c, max(1, elems // block_c), warps


def _device(t: torch.Tensor):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _empty_map(x: torch.Tensor, dtype: torch.dtype, memory_format: torch.memory_format) -> torch.Tensor:
    if memory_format == torch.preserve_format:
        return torch.empty_like(x, dtype=dtype)
    return torch.empty(x.shape, dtype=dtype, device=x.device, memory_format=memory_format)


def ln2d_fwd(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    out_dtype: torch.dtype,
    memory_format: torch.memory_format = torch.channels_last,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The forward kernel, no autograd; arguments assumed valid (``function.layer_norm_2d`` checks).

    Args:
        x: (B, C, H, W) map, any float dtype and strides.
        weight: (C,) scale or None.
        bias: (C,) shift or None.
        eps: added to the variance.
        out_dtype: dtype of the output.
        memory_format: layout of the output (``torch.preserve_format``: x's, where x is dense).

    Returns:
        (y (B, C, H, W) in ``out_dtype``, mean (B, H*W) float32, rstd (B, H*W) float32, the x the
        kernel read: ``x`` itself, or its contiguous copy when its strides needed one).
    """
    b, c, h, w = x.shape
    p = h * w
    x, (sxb, sxc, sxp) = _pixel_view(x)
    y = _empty_map(x, out_dtype, memory_format)
    y, (syb, syc, syp) = _pixel_view(y)
    mean = torch.empty((b, p), dtype=torch.float32, device=x.device)
    rstd = torch.empty((b, p), dtype=torch.float32, device=x.device)
    if x.numel() == 0:
        return y, mean, rstd, x
    block_c, block_p, warps = _tile(c, FWD_TILE_ELEMS, FWD_NUM_WARPS)
    grid = (triton.cdiv(p, block_p), b)
    with _device(x):
        _ln2d_fwd_kernel[grid](
            x, weight, bias, y, mean, rstd,
            c, p,
            sxb, sxc, sxp,
            syb, syc, syp,
            eps,
            HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None,
            WIDE=_wide(c, p, (sxb, sxc, sxp), (syb, syc, syp)),
            BLOCK_C=block_c, BLOCK_P=block_p, num_warps=warps,
        )
    return y, mean, rstd, x


def ln2d_bwd(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor | None,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    need_dweight: bool,
    need_dbias: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The backward kernel, no autograd.

    Args:
        dy: (B, C, H, W) gradient of the output, any strides (an expanded one is read in place).
        x: the map the forward kernel read (its strides collapse, see ``_pixel_view``).
        weight: (C,) scale or None.
        mean: (B, H*W) float32 from ``ln2d_fwd``.
        rstd: (B, H*W) float32 from ``ln2d_fwd``.
        need_dweight: form the weight gradient.
        need_dbias: form the bias gradient.

    Returns:
        (dx in x's dtype and layout, dweight (C,) float32 or None, dbias (C,) float32 or None).
    """
    b, c, h, w = x.shape
    p = h * w
    x, (sxb, sxc, sxp) = _pixel_view(x)
    dy, (sdyb, sdyc, sdyp) = _pixel_view(dy)
    dx = torch.empty_like(x)
    dx, (sdxb, sdxc, sdxp) = _pixel_view(dx)
    block_c, block_p, warps = _tile(c, BWD_TILE_ELEMS, BWD_NUM_WARPS)
    n_pblk = triton.cdiv(p, block_p)
    if _interpreting():
        rows = 2
    else:
        rows = max(1, min(triton.cdiv(BWD_MIN_PIXELS, block_p), (b * n_pblk) // BWD_MIN_PROGRAMS, b))
    n_bblk = triton.cdiv(b, rows)
    parts = torch.empty((2, n_bblk * n_pblk, c), dtype=torch.float32, device=x.device)
    if x.numel() == 0:
        parts.zero_()
    else:
        with _device(x):
            _ln2d_bwd_kernel[(n_pblk, n_bblk)](
                x, weight, dy, mean, rstd, dx, parts[0], parts[1],
                b, c, p, rows,
                sxb, sxc, sxp,
                sdyb, sdyc, sdyp,
                sdxb, sdxc, sdxp,
                HAS_WEIGHT=weight is not None, NEED_DW=need_dweight, NEED_DB=need_dbias,
                WIDE=_wide(c, p, (sxb, sxc, sxp), (sdyb, sdyc, sdyp), (sdxb, sdxc, sdxp)),
                BLOCK_C=block_c, BLOCK_P=block_p, num_warps=warps,
            )
    if need_dweight and need_dbias:
        sums = parts.sum(dim=1)
        return dx, sums[0], sums[1]
    return dx, parts[0].sum(dim=0) if need_dweight else None, parts[1].sum(dim=0) if need_dbias else None
