"""2-D neighbourhood attention with relative position bias, as NATTEN 0.17's unfused ``na2d_qk`` / ``na2d_av``.

Semantics (dilation 1; checked against NATTEN 0.17.3 by the SegMAN fixtures):

* q, k, v: (B, heads, H, W, D); kernel size k odd, 1 < k <= min(H, W).
* Along an axis of length L, query i attends keys ``start(i) .. start(i) + k - 1`` with
  ``start(i) = min(max(i - k // 2, 0), L - k)``: the window is shifted to stay inside the map at
  the borders, never shrunk or zero-padded.
* Neighbour order ``kh * k + kw`` (``kh``, ``kw`` the offsets inside the window).
* Logit of query (i, j) for key (a, b): ``q . k + rpb[head, a - i + k - 1, b - j + k - 1]`` with the
  bias table ``rpb`` (heads, 2k - 1, 2k - 1); no scaling inside (scale q beforehand).

Backends of :func:`neighborhood_attention_2d`:

* ``"torch"``: two autograd Functions (:func:`na2d_qk`, :func:`na2d_av`) that loop over the k rows of
  the window and gather keys/values by index, saving only their inputs for backward (memory
  O(|q| + |attn|), like NATTEN's unfused path; no (k^2 x |k|) unfolded copies).
* ``"flex"``: ``torch.nn.attention.flex_attention`` over the H*W tokens with a block mask for the
  clamped window (mask_mod) and the bias added in a score_mod; compiled when on CUDA.
* ``"triton"``: the fused Triton forward ``ssm_apps.kernels.na.na2d_triton`` (tiles of queries, keys
  of the tile's window region, online softmax; the logits never reach memory); CUDA, or CPU under
  ``TRITON_INTERPRET=1``. Its backward (:class:`_NATritonFn`) is fused as well,
  ``ssm_apps.kernels.na.na2d_triton_backward`` (flash-attention style, from the saved log-sum-exp).
* ``"auto"``: "triton" on CUDA tensors where triton is installed (inference and training: on an H200 in
  bf16 its forward+backward is 12-60x faster than "torch" at SegMAN's shapes and closer to the float64
  oracle, ``benchmarks/bench_segmentation_gpu.py``), else "torch".
"""
from __future__ import annotations

import functools
from typing import Literal

import torch
from torch.autograd.function import once_differentiable

from ..kernels import needs_autograd, tensor_cache

__all__ = ["NA_BACKENDS", "na2d_av", "na2d_qk", "na_window_start", "neighborhood_attention_2d"]

NABackend = Literal["torch", "flex", "triton", "auto"]
NA_BACKENDS: tuple[str, ...] = ("torch", "flex", "triton", "auto")


def _check_kernel(fn: str, kernel_size: int, height: int, width: int) -> None:
    if not isinstance(kernel_size, int) or kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"{fn}: argument 'kernel_size' must be an odd int > 1; got {kernel_size!r}")
    if height < kernel_size or width < kernel_size:
        raise ValueError(
            f"{fn}: the map (H, W) = ({height}, {width}) must be at least kernel_size = {kernel_size} on each side"
        )


def _check_map(fn: str, name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor) or t.dim() != 5:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{fn}: argument '{name}' must be a (B, heads, H, W, D) tensor; got {shape}")


def na_window_start(length: int, kernel_size: int, device: torch.device | None = None) -> torch.Tensor:
    """First key index of each query's clamped window along an axis: (length,) int64."""
    idx = torch.arange(length, device=device)
    return (idx - kernel_size // 2).clamp(min=0, max=length - kernel_size)


@tensor_cache(maxsize=64)
def _indices(height: int, width: int, kernel_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat key index (k, H*W, k) of neighbour (kh, q, kw), and the flat rpb index (H*W, k*k)."""
    k = kernel_size
    off = torch.arange(k, device=device)
    rows = na_window_start(height, k, device)[:, None] + off  # (H, k): key row of (i, kh)
    cols = na_window_start(width, k, device)[:, None] + off  # (W, k): key col of (j, kw)
    # key (kh, i, j, kw) -> rows[i, kh] * W + cols[j, kw]
    key = rows.t()[:, :, None, None] * width + cols[None, None, :, :]  # (k, H, W, k)
    key = key.reshape(k, height * width, k)
    # bias index: (a - i + k - 1, b - j + k - 1) in the (2k-1, 2k-1) table
    dr = rows - torch.arange(height, device=device)[:, None] + k - 1  # (H, k)
    dc = cols - torch.arange(width, device=device)[:, None] + k - 1  # (W, k)
    bias = dr[:, None, :, None] * (2 * k - 1) + dc[None, :, None, :]  # (H, W, k, k)
    return key.contiguous(), bias.reshape(height * width, k * k).contiguous()


class _QK(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, key_idx: torch.Tensor) -> torch.Tensor:
        b, h, n, d = q.shape
        kk = key_idx.shape[0]
        attn = q.new_empty(b, h, n, kk, kk)
        for r in range(kk):  # one row of the window at a time: (b, h, n, k, d) gathered keys
            keys = k[:, :, key_idx[r].reshape(-1)].view(b, h, n, kk, d)
            attn[:, :, :, r] = torch.matmul(keys, q.unsqueeze(-1)).squeeze(-1)
        ctx.save_for_backward(q, k, key_idx)
        return attn.view(b, h, n, kk * kk)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        q, k, key_idx = ctx.saved_tensors
        b, h, n, d = q.shape
        kk = key_idx.shape[0]
        grad = grad.view(b, h, n, kk, kk)
        dq = torch.zeros_like(q)
        dk = torch.zeros_like(k)
        for r in range(kk):
            flat = key_idx[r].reshape(-1)
            g = grad[:, :, :, r]  # (b, h, n, k)
            keys = k[:, :, flat].view(b, h, n, kk, d)
            dq += torch.matmul(g.unsqueeze(-2), keys).squeeze(-2)
            dk.index_add_(2, flat, (g.unsqueeze(-1) * q.unsqueeze(-2)).reshape(b, h, n * kk, d))
        return dq, dk, None


class _AV(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attn: torch.Tensor, v: torch.Tensor, key_idx: torch.Tensor) -> torch.Tensor:
        b, h, n, d = v.shape
        kk = key_idx.shape[0]
        a = attn.view(b, h, n, kk, kk)
        out = torch.zeros_like(v)
        for r in range(kk):
            vals = v[:, :, key_idx[r].reshape(-1)].view(b, h, n, kk, d)
            out += torch.matmul(a[:, :, :, r].unsqueeze(-2), vals).squeeze(-2)
        ctx.save_for_backward(attn, v, key_idx)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        attn, v, key_idx = ctx.saved_tensors
        b, h, n, d = v.shape
        kk = key_idx.shape[0]
        a = attn.view(b, h, n, kk, kk)
        dattn = torch.empty_like(a)
        dv = torch.zeros_like(v)
        for r in range(kk):
            flat = key_idx[r].reshape(-1)
            vals = v[:, :, flat].view(b, h, n, kk, d)
            dattn[:, :, :, r] = torch.matmul(vals, grad.unsqueeze(-1)).squeeze(-1)
            dv.index_add_(2, flat, (a[:, :, :, r].unsqueeze(-1) * grad.unsqueeze(-2)).reshape(b, h, n * kk, d))
        return dattn.view_as(attn), dv, None


def na2d_qk(q: torch.Tensor, k: torch.Tensor, kernel_size: int, rpb: torch.Tensor | None = None) -> torch.Tensor:
    """Neighbourhood logits, NATTEN 0.17 ``na2d_qk`` (dilation 1).

    Args:
        q: (B, heads, H, W, D) queries (already scaled).
        k: (B, heads, H, W, D) keys.
        kernel_size: odd window side k, 1 < k <= min(H, W).
        rpb: optional (heads, 2k - 1, 2k - 1) relative position bias table.

    Returns:
        (B, heads, H, W, k*k) logits in neighbour order kh * k + kw.
    """
    _check_map("na2d_qk", "q", q)
    _check_map("na2d_qk", "k", k)
    if k.shape != q.shape:
        raise ValueError(f"na2d_qk: 'k' must have the shape of 'q' {tuple(q.shape)}; got {tuple(k.shape)}")
    b, heads, height, width, d = q.shape
    _check_kernel("na2d_qk", kernel_size, height, width)
    key_idx, bias_idx = _indices(height, width, kernel_size, q.device)
    attn = _QK.apply(q.reshape(b, heads, height * width, d), k.reshape(b, heads, height * width, d), key_idx)
    if rpb is not None:
        expected = (heads, 2 * kernel_size - 1, 2 * kernel_size - 1)
        if tuple(rpb.shape) != expected:
            raise ValueError(f"na2d_qk: argument 'rpb' must have shape {expected}; got {tuple(rpb.shape)}")
        attn = attn + rpb.reshape(heads, -1)[:, bias_idx].to(attn.dtype)
    return attn.view(b, heads, height, width, kernel_size * kernel_size)


def na2d_av(attn: torch.Tensor, v: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Weighted sum of the neighbourhood values, NATTEN 0.17 ``na2d_av`` (dilation 1).

    Args:
        attn: (B, heads, H, W, k*k) weights in neighbour order kh * k + kw.
        v: (B, heads, H, W, D) values.
        kernel_size: the odd window side k.

    Returns:
        (B, heads, H, W, D).
    """
    _check_map("na2d_av", "v", v)
    b, heads, height, width, d = v.shape
    _check_kernel("na2d_av", kernel_size, height, width)
    if tuple(attn.shape) != (b, heads, height, width, kernel_size * kernel_size):
        raise ValueError(
            f"na2d_av: argument 'attn' must have shape {(b, heads, height, width, kernel_size * kernel_size)}; "
            f"got {tuple(attn.shape)}"
        )
    key_idx, _ = _indices(height, width, kernel_size, v.device)
    out = _AV.apply(attn.reshape(b, heads, height * width, -1).to(v.dtype), v.reshape(b, heads, height * width, d),
                    key_idx)
    return out.view(b, heads, height, width, d)


@tensor_cache(maxsize=32)
def _block_mask(height: int, width: int, kernel_size: int, device: torch.device):
    from torch.nn.attention.flex_attention import create_block_mask

    k = kernel_size

    def clamped_window(b, h, q_idx, kv_idx):
        qi, qj = q_idx // width, q_idx % width
        ki, kj = kv_idx // width, kv_idx % width
        si = (qi - k // 2).clamp(0, height - k)
        sj = (qj - k // 2).clamp(0, width - k)
        return (ki >= si) & (ki < si + k) & (kj >= sj) & (kj < sj + k)

    n = height * width
    # _compile: build the block mask tile by tile instead of materialising the dense (n, n) mask
    # (a 256 x 512 stage-1 grid would need 128 GiB); eager on CPU
    return create_block_mask(clamped_window, B=None, H=None, Q_LEN=n, KV_LEN=n, device=str(device),
                             _compile=device.type == "cuda")


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _flex_na(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: int, rpb: torch.Tensor | None):
    from torch.nn.attention.flex_attention import flex_attention

    b, heads, height, width, d = q.shape
    ks = kernel_size
    score_mod = None
    if rpb is not None:
        table = rpb.to(q.dtype)

        def score_mod(score, bb, h, q_idx, kv_idx):
            di = (kv_idx // width - q_idx // width + ks - 1).clamp(0, 2 * ks - 2)
            dj = (kv_idx % width - q_idx % width + ks - 1).clamp(0, 2 * ks - 2)
            return score + table[h, di, dj]

    fn = _compiled_flex() if q.is_cuda else flex_attention
    out = fn(
        q.reshape(b, heads, height * width, d),
        k.reshape(b, heads, height * width, d),
        v.reshape(b, heads, height * width, d),
        score_mod=score_mod,
        block_mask=_block_mask(height, width, ks, q.device),
        scale=1.0,
    )
    return out.view(b, heads, height, width, d)


def _check_fused_inputs(
    fn: str,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel_size: int,
    rpb: torch.Tensor | None,
) -> None:
    """The argument checks of the fused backends ("flex", "triton"): maps, kernel size, bias table."""
    _check_map(fn, "q", q)
    for name, t in (("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.shape != q.shape:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{fn}: '{name}' must have the shape of 'q' {tuple(q.shape)}; got {shape}")
    _check_kernel(fn, kernel_size, q.shape[2], q.shape[3])
    expected = (q.shape[1], 2 * kernel_size - 1, 2 * kernel_size - 1)
    if rpb is not None and (not isinstance(rpb, torch.Tensor) or tuple(rpb.shape) != expected):
        shape = tuple(rpb.shape) if isinstance(rpb, torch.Tensor) else type(rpb).__name__
        raise ValueError(f"{fn}: argument 'rpb' must have shape {expected}; got {shape}")


class _NATritonFn(torch.autograd.Function):
    """Fused Triton forward and backward (``kernels.na.na2d_triton`` / ``na2d_triton_backward``); the
    backward's logit gradient (B, heads, H, W, k*k) is summed onto the bias table here, by ``_indices``."""

    @staticmethod
    def forward(ctx, q, k, v, rpb, kernel_size):
        from ..kernels.na import na2d_triton

        out, lse = na2d_triton(q, k, v, kernel_size, rpb, return_lse=True)
        ctx.kernel_size = kernel_size
        ctx.save_for_backward(q, k, v, rpb, out, lse)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        from ..kernels.na import na2d_triton_backward

        q, k, v, rpb, out, lse = ctx.saved_tensors
        ks = ctx.kernel_size
        dq, dk, dv, dlogits = na2d_triton_backward(grad, q, k, v, out, lse, ks, rpb, ctx.needs_input_grad[:4])
        drpb = None
        if dlogits is not None:
            b, heads, height, width, _ = q.shape
            _, bias_idx = _indices(height, width, ks, q.device)
            drpb = torch.zeros(heads, (2 * ks - 1) ** 2, dtype=torch.float32, device=q.device)
            drpb.index_add_(1, bias_idx.reshape(-1), dlogits.sum(0).reshape(heads, -1))
            drpb = drpb.view(rpb.shape).to(device=rpb.device, dtype=rpb.dtype)
        return dq, dk, dv, drpb, None


@torch.compiler.disable  # a graph break under torch.compile: the Triton launches run as they are
def _triton_na(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: int,
               rpb: torch.Tensor | None) -> torch.Tensor:
    if needs_autograd(q, k, v, rpb):
        return _NATritonFn.apply(q, k, v, rpb, kernel_size)
    from ..kernels.na import na2d_triton

    return na2d_triton(q, k, v, kernel_size, rpb)


def neighborhood_attention_2d(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel_size: int,
    rpb: torch.Tensor | None = None,
    backend: NABackend = "torch",
) -> torch.Tensor:
    """softmax(na2d_qk(q, k) + rpb) applied to v over the clamped k x k windows.

    Args:
        q: (B, heads, H, W, D) queries (already scaled; no scaling is applied here).
        k: (B, heads, H, W, D) keys.
        v: (B, heads, H, W, D) values.
        kernel_size: odd window side k, 1 < k <= min(H, W).
        rpb: optional (heads, 2k - 1, 2k - 1) relative position bias.
        backend: "torch" (memory-lean gathers), "flex" (flex_attention with a block mask),
            "triton" (fused Triton forward and backward; see the module docstring) or
            "auto" ("triton" on CUDA where triton is installed, else "torch").

    Returns:
        (B, heads, H, W, D).
    """
    if backend == "auto":
        from ..kernels.na import na_triton_supported

        backend = "triton" if q.is_cuda and na_triton_supported(q.device) else "torch"
    if backend == "torch":
        attn = na2d_qk(q, k, kernel_size, rpb).softmax(dim=-1)
        return na2d_av(attn, v, kernel_size)
    if backend == "flex":
        _check_fused_inputs("neighborhood_attention_2d", q, k, v, kernel_size, rpb)
        return _flex_na(q, k, v, kernel_size, rpb)
    if backend == "triton":
        _check_fused_inputs("neighborhood_attention_2d", q, k, v, kernel_size, rpb)
        return _triton_na(q, k, v, kernel_size, rpb)
    raise ValueError(f"neighborhood_attention_2d: argument 'backend' must be one of {NA_BACKENDS}; got {backend!r}")
