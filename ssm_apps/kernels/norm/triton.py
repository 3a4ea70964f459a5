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

A forward program owns a tile of ``BLOCK_C`` (all C, rounded up to a power of two) x ``BLOCK_P``
pixels of one batch row. The backward recomputes x_hat from the saved float32 mean and rstd and
forms, per pixel::

    g  = dy * weight
    dx = rstd * (g - mean_c(g) - x_hat * mean_c(g * x_hat))

A backward program walks a contiguous run of ``tiles_per_program`` tiles (batch row by batch row,
pixel block by pixel block) and adds dy * x_hat and dy into two register tiles, reduced over the
pixels once at its end: one row of ``C`` float32 partial sums of dweight / dbias per program,
summed by one ``sum`` afterwards. (The first version gave each program one tile and reduced
across its warps per tile: 0.3 ms per call, 14.3 ms of a VMamba-T step on an H200, 13x the
bytes-moved floor.) Bytes moved: forward x in, y out (+ 8 bytes per pixel of statistics);
backward x, dy in, dx out.

Tiles: the forward uses ``FWD_TILE_ELEMS`` elements per program (``BLOCK_P`` = that / ``BLOCK_C``,
at least 1) with ``FWD_NUM_WARPS`` warps; the backward's tile (elements, warps, ``BWD_TILES``) and
tiles per program (``BWD_TILES_PER_PROGRAM``) are chosen on the GPU by Triton's autotuner per
channel count, pixel count, batch, strides and dtypes (the first call of a new shape times them;
warm up before a CUDA-graph capture). Offsets inside a batch row are int32 (``WIDE``: int64 where
a row spans 2^31 elements). Under ``TRITON_INTERPRET=1`` (CPU tests) a small tile
(``INTERPRET_TILE``) and ``INTERPRET_TILES_PER_PROGRAM`` tiles per backward program, so that tiny
test maps span several tiles per program, across batch rows, and a partial last block.
"""
from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl

#: Elements of one forward program's tile (BLOCK_C x BLOCK_P) and its warps, compiled.
FWD_TILE_ELEMS, FWD_NUM_WARPS = 4096, 8
#: The backward tiles (elements of BLOCK_C x BLOCK_P, warps) the autotuner times on a GPU; a tile
#: smaller than BLOCK_C is left out for that channel count (above 4,096 channels: one pixel, 8 warps).
#: sm_90 compile of VMamba's shapes: 64-128 registers, no spills; 8,192-element tiles spill.
BWD_TILES = ((1024, 4), (2048, 4), (2048, 8), (4096, 8))
#: Tiles one backward program walks (timed by the autotuner too): more amortise its partial sums,
#: fewer leave more programs to balance across the multiprocessors.
BWD_TILES_PER_PROGRAM = (4, 16, 64)
#: Largest channel count held in one tile (power of two); beyond it the Triton path refuses.
MAX_BLOCK_C = 8192
#: The tile under the Triton interpreter (elements), small so tiny maps span several programs, and
#: the tiles per backward program there.
INTERPRET_TILE = 16
INTERPRET_TILES_PER_PROGRAM = 3


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


@triton.jit(do_not_specialize=["tiles_per_program"])
def _ln2d_bwd_kernel(
    # pointers
    x_ptr, w_ptr, dy_ptr, mean_ptr, rstd_ptr, dx_ptr, dw_part_ptr, db_part_ptr,
    # sizes
    B, C, P,
    # strides
    stride_x_b, stride_x_c, stride_x_p,
    stride_dy_b, stride_dy_c, stride_dy_p,
    stride_dx_b, stride_dx_c, stride_dx_p,
    # work per program
    tiles_per_program,
    # meta-parameters
    HAS_WEIGHT: tl.constexpr, NEED_DW: tl.constexpr, NEED_DB: tl.constexpr, WIDE: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):
    # program pid walks tiles [pid * tiles_per_program, +tiles_per_program) of the B * n_pblk tiles
    # (tile t: batch row t // n_pblk, pixel block t % n_pblk) and writes one row of C partial sums
    # of dweight / dbias at row pid of the (programs, C) partial buffers
    pid = tl.program_id(0)
    n_pblk = tl.cdiv(P, BLOCK_P)
    start = pid * tiles_per_program
    end = tl.minimum(start + tiles_per_program, B * n_pblk)
    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    if HAS_WEIGHT:
        w = tl.load(w_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    dw_acc = tl.zeros([BLOCK_C, BLOCK_P], dtype=tl.float32)
    db_acc = tl.zeros([BLOCK_C, BLOCK_P], dtype=tl.float32)
    for t in range(start, end):
        row = t // n_pblk
        offs_p = (t - row * n_pblk) * BLOCK_P + tl.arange(0, BLOCK_P)
        mask_p = offs_p < P
        mask = mask_c[:, None] & mask_p[None, :]
        cc, pp = _in_row(offs_c, offs_p, WIDE)
        row = row.to(tl.int64)
        x = tl.load(x_ptr + row * stride_x_b + cc * stride_x_c + pp * stride_x_p, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + row * stride_dy_b + cc * stride_dy_c + pp * stride_dy_p, mask=mask,
                     other=0.0).to(tl.float32)
        mean = tl.load(mean_ptr + row * P + offs_p, mask=mask_p, other=0.0)
        rstd = tl.load(rstd_ptr + row * P + offs_p, mask=mask_p, other=0.0)
        xhat = tl.where(mask, (x - mean[None, :]) * rstd[None, :], 0.0)
        if HAS_WEIGHT:
            g = dy * w[:, None]
        else:
            g = dy
        mean_g = tl.sum(g, axis=0) / C
        mean_gx = tl.sum(g * xhat, axis=0) / C
        dx = (g - mean_g[None, :] - xhat * mean_gx[None, :]) * rstd[None, :]
        tl.store(dx_ptr + row * stride_dx_b + cc * stride_dx_c + pp * stride_dx_p, dx.to(dx_ptr.dtype.element_ty),
                 mask=mask)
        if NEED_DW:
            dw_acc += dy * xhat
        if NEED_DB:
            db_acc += dy
    part = pid.to(tl.int64) * C
    if NEED_DW:
        tl.store(dw_part_ptr + part + offs_c, tl.sum(dw_acc, axis=1), mask=mask_c)
    if NEED_DB:
        tl.store(db_part_ptr + part + offs_c, tl.sum(db_acc, axis=1), mask=mask_c)


def _bwd_configs_for(configs, named_args, **kwargs):
    """Autotuner pruning: the configs whose tile (BLOCK_C x BLOCK_P elements, warps) is one of ``BWD_TILES``
    (a one-pixel tile with 8 warps where BLOCK_C exceeds them all)."""
    block_c = kwargs["BLOCK_C"]
    tiles = [tile for tile in BWD_TILES if tile[0] >= block_c] or [(block_c, 8)]
    return [cfg for cfg in configs if (cfg.kwargs["BLOCK_P"] * block_c, cfg.num_warps) in tiles]


#: Every (BLOCK_P, tiles per program, warps) the autotuner may time; pruned per BLOCK_C to BWD_TILES.
_BWD_CONFIGS = [triton.Config({"BLOCK_P": 2**k, "tiles_per_program": tiles}, num_warps=warps)
                for k in range(14) for tiles in BWD_TILES_PER_PROGRAM for warps in sorted({w for _, w in BWD_TILES})]

#: The backward kernel as launched on a GPU: tile, warps and tiles per program chosen per shape by timing.
_ln2d_bwd_tuned = triton.autotune(
    configs=_BWD_CONFIGS,
    key=["B", "C", "P", "stride_x_c", "stride_x_p", "stride_dy_c", "stride_dy_p", "stride_dx_c", "stride_dx_p",
         "HAS_WEIGHT", "NEED_DW", "NEED_DB"],
    prune_configs_by={"early_config_prune": _bwd_configs_for},
)(_ln2d_bwd_kernel)


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


def _block_c(c: int) -> int:
    """BLOCK_C for ``c`` channels: the next power of two, refused beyond ``MAX_BLOCK_C``."""
    block_c = triton.next_power_of_2(c)
    if block_c > MAX_BLOCK_C:
        raise ValueError(f"layer_norm_2d (triton): at most {MAX_BLOCK_C} channels fit one tile; got C={c}")
    return block_c


def _tile(c: int, elems: int, warps: int) -> tuple[int, int, int]:
    """(BLOCK_C, BLOCK_P, num_warps) for ``c`` channels and a tile of about ``elems`` elements."""
    block_c = _block_c(c)
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
    block_c = _block_c(c)

    def programs(config: dict) -> int:
        return triton.cdiv(b * triton.cdiv(p, config["BLOCK_P"]), config["tiles_per_program"])

    if _interpreting():
        configs = [{"BLOCK_P": max(1, INTERPRET_TILE // block_c), "tiles_per_program": INTERPRET_TILES_PER_PROGRAM}]
    else:
        configs = [cfg.kwargs for cfg in _bwd_configs_for(_BWD_CONFIGS, {}, BLOCK_C=block_c)]
    # one row of partial sums per program, for the config that needs the most programs
    parts = torch.empty((2, max(map(programs, configs)), c), dtype=torch.float32, device=x.device)
    used = 0
    if x.numel() > 0:
        args = (x, weight, dy, mean, rstd, dx, parts[0], parts[1],
                b, c, p,
                sxb, sxc, sxp,
                sdyb, sdyc, sdyp,
                sdxb, sdxc, sdxp)
        meta = dict(HAS_WEIGHT=weight is not None, NEED_DW=need_dweight, NEED_DB=need_dbias,
                    WIDE=_wide(c, p, (sxb, sxc, sxp), (sdyb, sdyc, sdyp), (sdxb, sdxc, sdxp)), BLOCK_C=block_c)
        with _device(x):
            if _interpreting():
                used = programs(configs[0])
                _ln2d_bwd_kernel[(used,)](*args, configs[0]["tiles_per_program"], **meta,
                                          BLOCK_P=configs[0]["BLOCK_P"], num_warps=1)
            else:
                _ln2d_bwd_tuned[lambda bound: (programs(bound),)](*args, **meta)
                used = programs(_ln2d_bwd_tuned.best_config.kwargs)
    parts = parts[:, :used]
    if need_dweight and need_dbias:
        sums = parts.sum(dim=1)
        return dx, sums[0], sums[1]
    return dx, parts[0].sum(dim=0) if need_dweight else None, parts[1].sum(dim=0) if need_dbias else None
