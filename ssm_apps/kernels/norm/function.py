"""``layer_norm_2d``: the channel-first LayerNorm entry point, dispatching to Triton or PyTorch.

The Triton path is a ``torch.autograd.Function`` over the kernels of ``triton.py`` (imported
lazily, so the package works without triton); the PyTorch path is ``layer_norm_2d_torch`` of this
package's ``torch.py``.
"""
from __future__ import annotations

import os
from typing import Literal

import torch

from .torch import layer_norm_2d_torch

Backend = Literal["triton", "torch"]
BACKENDS: tuple[str, ...] = ("triton", "torch")
_MEMORY_FORMATS = (torch.channels_last, torch.contiguous_format, torch.preserve_format)
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def triton_supported(device: torch.device) -> bool:
    """Whether the Triton kernels can run on ``device`` (CUDA with triton installed, or the interpreter)."""
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET", "0") != "1":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


class LayerNorm2dTritonFn(torch.autograd.Function):
    """y = layer_norm over C of x (B, C, H, W), forward and backward in Triton (see ``triton.py``)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, out_dtype, memory_format):
        from .triton import ln2d_fwd

        y, mean, rstd, x_read = ln2d_fwd(x, weight, bias, eps, out_dtype, memory_format)
        ctx.save_for_backward(x_read, weight, mean, rstd)
        ctx.bias_dtype = None if bias is None else bias.dtype
        return y

    @staticmethod
    def backward(ctx, dy):
        from .triton import ln2d_bwd

        x, weight, mean, rstd = ctx.saved_tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        dx, dw, db = ln2d_bwd(dy, x, weight, mean, rstd, need_dw and weight is not None,
                              need_db and ctx.bias_dtype is not None)
        dw = None if dw is None else dw.to(weight.dtype)
        db = None if db is None else db.to(ctx.bias_dtype)
        return dx if need_dx else None, dw, db, None, None, None


def _check(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> None:
    if x.dim() != 4:
        raise ValueError(f"layer_norm_2d: argument 'x' must be a (B, C, H, W) map; got shape {tuple(x.shape)}")
    if x.dtype not in _DTYPES:
        raise ValueError(f"layer_norm_2d: argument 'x' must be float16/bfloat16/float32/float64; got {x.dtype}")
    c = x.shape[1]
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"layer_norm_2d: argument '{name}' must have shape ({c},) (C of x); got {tuple(t.shape)}")
        if t is not None and t.device != x.device:
            raise ValueError(f"layer_norm_2d: argument '{name}' is on {t.device}, x on {x.device}")


def layer_norm_2d(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    backend: Backend | None = None,
    memory_format: torch.memory_format = torch.channels_last,
) -> torch.Tensor:
    """LayerNorm over the channels of a (B, C, H, W) map, statistics per pixel in float32.

    Equal to ``F.layer_norm`` over the last dim of ``x.permute(0, 2, 3, 1)``, permuted back (the
    ``LayerNorm2d`` semantics). Under autocast the output is in the autocast dtype; otherwise in
    x's dtype. The Triton path reads x in its own dtype and strides (no permute copy) and applies
    weight / bias in float32 in their own dtype (the PyTorch path first rounds them to the autocast
    dtype); their gradients come back in float32 sums cast to their dtype. The Triton path computes in
    float32 for every input dtype (float64 maps too, with float32-level errors).

    Args:
        x: (B, C, H, W) map, any strides.
        weight: (C,) scale or None.
        bias: (C,) shift or None.
        eps: added to the variance.
        backend: "triton", "torch", or None (Triton on CUDA when triton is installed, else PyTorch).
        memory_format: layout of the Triton path's output: ``torch.channels_last`` (default, the
            layout the PyTorch path's permute-back gives), ``torch.contiguous_format`` or
            ``torch.preserve_format`` (x's). The PyTorch path always returns channels-last memory.

    Returns:
        (B, C, H, W) normalised map.
    """
    _check(x, weight, bias)
    if memory_format not in _MEMORY_FORMATS:
        raise ValueError(f"layer_norm_2d: argument 'memory_format' must be one of {_MEMORY_FORMATS}; got {memory_format}")
    if backend is None:
        backend = "triton" if x.is_cuda and triton_supported(x.device) else "torch"
    if backend == "torch":
        return layer_norm_2d_torch(x, weight, bias, eps)
    if backend != "triton":
        raise ValueError(f"layer_norm_2d: argument 'backend' must be one of {BACKENDS} or None; got {backend!r}")
    if not triton_supported(x.device):
        raise ValueError(f"layer_norm_2d: backend 'triton' needs triton and a CUDA tensor (or TRITON_INTERPRET=1); "
                         f"got a tensor on {x.device}")
    device = x.device.type
    out_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    return LayerNorm2dTritonFn.apply(x, weight, bias, float(eps), out_dtype, memory_format)
