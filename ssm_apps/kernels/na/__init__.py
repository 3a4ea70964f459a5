"""2-D neighbourhood attention kernels (NATTEN 0.17 semantics): ``na2d_triton``, the fused Triton forward,
and ``na2d_triton_backward``, its fused backward.

``triton.py`` holds the kernels and their launchers (imported lazily, so that this package imports
without triton). No autograd here: the autograd Function (which also reduces the backward's logit
gradient onto the bias table), and the argument checks, live with the caller,
``ssm_apps.layers.neighborhood_attention.neighborhood_attention_2d(..., backend="triton")``.
"""
from __future__ import annotations

import torch

from .._backend import interpreting, triton_available

__all__ = ["na2d_triton", "na2d_triton_backward", "na_triton_supported"]


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
    return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """softmax(q . k + rpb) @ v over the clamped k x k windows, one fused Triton kernel, no autograd.

    Arguments are assumed valid (``neighborhood_attention_2d`` checks shapes and the kernel size).

    Args:
        q: (B, heads, H, W, D) queries (already scaled), float16 / bfloat16 / float32, any strides.
        k: (B, heads, H, W, D) keys, q's dtype, any strides.
        v: (B, heads, H, W, D) values, q's dtype, any strides.
        kernel_size: odd window side k, 1 < k <= min(H, W).
        rpb: (heads, 2k - 1, 2k - 1) relative position bias (read as float32), or None.
        return_lse: also return the log-sum-exp of each query's logits (what the backward needs).

    Returns:
        out: (B, heads, H, W, D) contiguous, in q's dtype (float32 accumulation); with ``return_lse``
        the pair (out, lse), lse (B, heads, H, W) float32 contiguous, natural log:
        ``logsumexp_{(a, b) in window(i, j)} (q[i, j] . k[a, b] + bias)``.

    Raises:
        RuntimeError: triton cannot run on q's device (needs CUDA, or TRITON_INTERPRET=1 on CPU).
        ValueError: k / v differ from q in dtype or device, or q is not a float16 / bfloat16 / float32 tensor.
    """
    _check_inputs("na2d_triton", q, k, v)
    from .triton import na2d_fwd  # lazily: it imports triton

    return na2d_fwd(q, k, v, kernel_size, rpb, return_lse)


def na2d_triton_backward(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    kernel_size: int,
    rpb: torch.Tensor | None = None,
    needs_grad: tuple[bool, bool, bool, bool] = (True, True, True, True),
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients of ``na2d_triton`` (flash-attention style: the softmax is recomputed from ``lse``), no autograd.

    Arguments are assumed valid, as for ``na2d_triton``.

    Args:
        grad_out: (B, heads, H, W, D) gradient of the output, q's dtype, any strides.
        q: (B, heads, H, W, D) the forward's queries (any strides).
        k: (B, heads, H, W, D) the forward's keys.
        v: (B, heads, H, W, D) the forward's values.
        out: (B, heads, H, W, D) the forward's output.
        lse: (B, heads, H, W) float32, the forward's log-sum-exp (``na2d_triton(..., return_lse=True)``).
        kernel_size: odd window side k, 1 < k <= min(H, W).
        rpb: the forward's (heads, 2k - 1, 2k - 1) bias table, or None.
        needs_grad: which of (q, k, v, rpb) need a gradient; only those are computed.

    Returns:
        (dq, dk, dv, dlogits): dq, dk, dv (B, heads, H, W, D) contiguous in q's dtype; dlogits
        (B, heads, H, W, k*k) float32 contiguous, the gradient of the logits in neighbour order
        ``kh * k + kw`` (as ``na2d_qk``'s output), from which the bias gradient is a sum over batch and
        queries onto the table index ``(a - i + k - 1, b - j + k - 1)``. None where not needed
        (dlogits also when rpb is None).

    Raises:
        RuntimeError: triton cannot run on q's device (needs CUDA, or TRITON_INTERPRET=1 on CPU).
        ValueError: k / v / grad_out / out differ from q in dtype or device, or q is not a float16 /
            bfloat16 / float32 tensor.
    """
    _check_inputs("na2d_triton_backward", q, k, v, grad_out=grad_out, out=out)
    from .triton import na2d_bwd  # lazily: it imports triton

    return na2d_bwd(grad_out, q, k, v, out, lse, kernel_size, rpb, needs_grad)


def _check_inputs(fn: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **others: torch.Tensor) -> None:
    """The device and dtype checks shared by the two entry points (see their Raises)."""
    if not na_triton_supported(q.device):
        raise RuntimeError(
            f"{fn}: needs a CUDA tensor and triton installed (or TRITON_INTERPRET=1); got device {q.device}"
        )
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"{fn}: argument 'q' must be float16, bfloat16 or float32; got {q.dtype}")
    for name, t in (("k", k), ("v", v), *others.items()):
        if t.dtype != q.dtype or t.device != q.device:
            raise ValueError(
                f"{fn}: argument '{name}' must have q's dtype and device ({q.dtype}, {q.device}); "
                f"got ({t.dtype}, {t.device})"
            )
