"""2-D neighbourhood attention kernels: ``na2d_triton``, the fused Triton forward (NATTEN 0.17 semantics).

``triton.py`` holds the kernel and its launcher (imported lazily, so that this package imports
without triton). Forward only: the autograd Function whose backward recomputes through the
"torch" backend, and the argument checks, live with the caller,
``ssm_apps.layers.neighborhood_attention.neighborhood_attention_2d(..., backend="triton")``.
"""
from __future__ import annotations

import torch

from .._backend import interpreting, triton_available

__all__ = ["na2d_triton", "na_triton_supported"]


def na_triton_supported(device: torch.device) -> bool:
    """Whether ``na2d_triton`` can run on ``device``: CUDA with triton installed, or the interpreter (CPU)."""
    if triton_available(device):
        return True
    if not interpreting():
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def na2d_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel_size: int,
    rpb: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q . k + rpb) @ v over the clamped k x k windows, one fused Triton kernel, no autograd.

    Arguments are assumed valid (``neighborhood_attention_2d`` checks shapes and the kernel size).

    Args:
        q: (B, heads, H, W, D) queries (already scaled), float16 / bfloat16 / float32, any strides.
        k: (B, heads, H, W, D) keys, q's dtype, any strides.
        v: (B, heads, H, W, D) values, q's dtype, any strides.
        kernel_size: odd window side k, 1 < k <= min(H, W).
        rpb: (heads, 2k - 1, 2k - 1) relative position bias (read as float32), or None.

    Returns:
        (B, heads, H, W, D) contiguous, in q's dtype (float32 accumulation).

    Raises:
        RuntimeError: triton cannot run on q's device (needs CUDA, or TRITON_INTERPRET=1 on CPU).
        ValueError: k / v differ from q in dtype or device, or q is not a float16 / bfloat16 / float32 tensor.
    """
    if not na_triton_supported(q.device):
        raise RuntimeError(
            f"na2d_triton: needs a CUDA tensor and triton installed (or TRITON_INTERPRET=1); got device {q.device}"
        )
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"na2d_triton: argument 'q' must be float16, bfloat16 or float32; got {q.dtype}")
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype or t.device != q.device:
            raise ValueError(
                f"na2d_triton: argument '{name}' must have q's dtype and device ({q.dtype}, {q.device}); "
                f"got ({t.dtype}, {t.device})"
            )
    from .triton import na2d_fwd  # lazily: it imports triton

    return na2d_fwd(q, k, v, kernel_size, rpb)
