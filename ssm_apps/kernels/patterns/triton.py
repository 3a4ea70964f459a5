"""Triton kernels of the scan patterns: cross scan (gather) and cross merge.

Both kernels work from the cached int32 maps of ``maps.route_maps``, derived from the one
definition of every route (``maps.index_cpu``); nothing here knows a pattern's geometry, so
every 2-D pattern ("cross4", "bidi", "omni8", "atrous") and the 3-D "tri6" run through the
same two kernels:

* scan: x (b, c, N) -> ys (b, K, c, L) with ys[:, k, :, i] = x[:, :, src[k, i]],
  and 0 where src[k, i] < 0 (the zero padding of "atrous", never materialised);
* merge: ys (b, K, c, L) -> out (b, c, N) with, at each map position q,
  acc = 0; for k = 0 .. K - 1: if inv[k, q] >= 0: acc = acc + ys[:, k, :, inv[k, q]]
  -- a gather-and-sum over the inverse map, no atomics, no scratch, and the crop of
  "atrous" is built into the inverse map (padding cells are never computed).

The accumulator is float32 for float16/bfloat16 (rounded once at the end), else the
input dtype: exactly the order and dtype of the PyTorch merge, so results are
bit-identical to it (see the package docstring).

Entry points: ``scan_routes`` / ``merge_routes`` (the raw kernels, no autograd; ``autograd``
dispatches to them). The validated, differentiable Triton-only functions
(``cross_scan_triton`` ...) are in ``api``.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .._backend import device_guard, interpreting
from .maps import route_maps

__all__ = ["merge_routes", "scan_routes"]

#: Tile (channels x steps or positions) of one program, compiled: 4 x 512 with 4 warps.
BLOCK_C = 4
BLOCK_N = 512
NUM_WARPS = 4
#: The tile under the Triton interpreter: small, so that tiny test shapes span several tiles.
INTERPRET_BLOCK_C = 2
INTERPRET_BLOCK_N = 32

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _tile() -> tuple[int, int, int]:
    if interpreting():
        return INTERPRET_BLOCK_C, INTERPRET_BLOCK_N, 1
    return BLOCK_C, BLOCK_N, NUM_WARPS


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _scan_kernel(
    # Pointers
    x_ptr, src_ptr, out_ptr,
    # Dimensions (channels, map positions, route length, channel / step blocks)
    C, N, L, n_cblk, n_lblk,
    # Meta-parameters
    K: tl.constexpr, BC: tl.constexpr, BL: tl.constexpr,
):
    # program (pid, k): batch b, channels [cb * BC, +BC), steps [lb * BL, +BL) of route k
    pid = tl.program_id(0)
    k = tl.program_id(1)
    lb = pid % n_lblk
    rest = pid // n_lblk
    cb = rest % n_cblk
    b = rest // n_cblk
    steps = lb * BL + tl.arange(0, BL)
    m_l = steps < L
    src = tl.load(src_ptr + k * L + steps, mask=m_l, other=-1)
    chans = cb * BC + tl.arange(0, BC)
    m_c = chans < C
    rows = (b * C + chans).to(tl.int64)
    vals = tl.load(x_ptr + rows[:, None] * N + src[None, :], mask=m_c[:, None] & (src >= 0)[None, :], other=0.0)
    out_rows = ((b * K + k) * C + chans).to(tl.int64)
    tl.store(out_ptr + out_rows[:, None] * L + steps[None, :], vals, mask=m_c[:, None] & m_l[None, :])


@triton.jit
def _bf16_to_f32(v):
    """Exact widening by bit placement (the same compiled and in the interpreter)."""
    return (v.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(tl.float32, bitcast=True)


@triton.jit
def _f32_to_bf16(x):
    """Round to nearest even, NaN -> 0x7FC0: torch's float -> bfloat16 conversion, bit for bit.

    Written out because the Triton interpreter's own cast truncates."""
    bits = x.to(tl.uint32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    out = tl.where(x != x, 0x7FC0, rounded)
    return out.to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def _merge_kernel(
    # Pointers
    ys_ptr, inv_ptr, out_ptr,
    # Dimensions (channels, map positions, route length, channel / position blocks)
    C, N, L, n_cblk, n_nblk,
    # Meta-parameters
    K: tl.constexpr, ACC_F64: tl.constexpr, IS_BF16: tl.constexpr, BC: tl.constexpr, BN: tl.constexpr,
):
    # program pid: batch b, channels [cb * BC, +BC), map positions [nb * BN, +BN)
    pid = tl.program_id(0)
    nb = pid % n_nblk
    rest = pid // n_nblk
    cb = rest % n_cblk
    b = rest // n_cblk
    pos = nb * BN + tl.arange(0, BN)
    m_n = pos < N
    chans = cb * BC + tl.arange(0, BC)
    m_c = chans < C
    if ACC_F64:
        acc = tl.zeros([BC, BN], dtype=tl.float64)
    else:
        acc = tl.zeros([BC, BN], dtype=tl.float32)
    for k in tl.static_range(K):  # route order 0, 1, ..., K - 1, like the PyTorch merge
        step = tl.load(inv_ptr + k * N + pos, mask=m_n, other=-1)
        hit = step >= 0
        rows = ((b * K + k) * C + chans).to(tl.int64)
        v = tl.load(ys_ptr + rows[:, None] * L + step[None, :], mask=m_c[:, None] & hit[None, :], other=0.0)
        if IS_BF16:
            v = _bf16_to_f32(v)
        acc = tl.where(hit[None, :], acc + v.to(acc.dtype), acc)
    if IS_BF16:
        res = _f32_to_bf16(acc)
    else:
        res = acc.to(out_ptr.dtype.element_ty)
    out_rows = (b * C + chans).to(tl.int64)
    tl.store(out_ptr + out_rows[:, None] * N + pos[None, :], res, mask=m_c[:, None] & m_n[None, :])


# ----------------------------------------------------------------------------- launchers


def _check_dtype(fn: str, name: str, t: torch.Tensor) -> None:
    if t.dtype not in _DTYPES:
        raise ValueError(f"{fn}: argument '{name}' must be float16/bfloat16/float32/float64; got {t.dtype}")


def scan_routes(x: torch.Tensor, pattern: str, sizes: tuple[int, ...]) -> torch.Tensor:
    """The scan kernel, no autograd: x (b, c, *sizes) -> (b, K, c, L_k), contiguous, x's dtype.

    ``sizes`` is (H, W) for a 2-D pattern, (D, H, W) for "tri6"; arguments are assumed
    valid (the public functions check them). Non-contiguous x is copied first.
    """
    _check_dtype("scan_routes", "x", x)
    src, _ = route_maps(pattern, tuple(sizes), x.device)
    k, length = src.shape
    b, c = x.shape[:2]
    n = math.prod(sizes)
    out = torch.empty((b, k, c, length), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    x = x.contiguous()
    bc, bl, warps = _tile()
    n_cblk, n_lblk = -(-c // bc), -(-length // bl)
    with device_guard(x.device):
        _scan_kernel[(b * n_cblk * n_lblk, k)](
            x_ptr=x, src_ptr=src, out_ptr=out, C=c, N=n, L=length, n_cblk=n_cblk, n_lblk=n_lblk,
            K=k, BC=bc, BL=bl, num_warps=warps)
    return out


def merge_routes(ys: torch.Tensor, pattern: str, sizes: tuple[int, ...]) -> torch.Tensor:
    """The merge kernel, no autograd: ys (b, K, c, L_k) -> (b, c, *sizes), contiguous, ys's dtype.

    Sums route 0 + route 1 + ... at each position, accumulating float16/bfloat16 in
    float32 (one rounding at the end), other dtypes in their own: bit-identical to
    the PyTorch merge. Arguments are assumed valid; non-contiguous ys is copied first.
    """
    _check_dtype("merge_routes", "ys", ys)
    _, inv = route_maps(pattern, tuple(sizes), ys.device)
    k, n = inv.shape
    b, _, c, length = ys.shape
    out = torch.empty((b, c, *sizes), dtype=ys.dtype, device=ys.device)
    if out.numel() == 0:
        return out
    ys = ys.contiguous()
    bc, bn, warps = _tile()
    n_cblk, n_nblk = -(-c // bc), -(-n // bn)
    with device_guard(ys.device):
        _merge_kernel[(b * n_cblk * n_nblk,)](
            ys_ptr=ys, inv_ptr=inv, out_ptr=out, C=c, N=n, L=length, n_cblk=n_cblk, n_nblk=n_nblk,
            K=k, ACC_F64=ys.dtype == torch.float64, IS_BF16=ys.dtype == torch.bfloat16, BC=bc, BN=bn,
            num_warps=warps)
    return out
