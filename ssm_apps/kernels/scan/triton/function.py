"""The autograd Function of the Triton selective scan."""
from __future__ import annotations

import torch

from ..options import TritonScanOptions, check_options
from .bwd import _backward
from .fwd import _forward


class SelectiveScanTritonFn(torch.autograd.Function):
    """Autograd wrapper: Triton forward, Triton backward from saved chunk states."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, out_dtype, options):
        u, delta, A = u.contiguous(), delta.contiguous(), A.contiguous()
        B, C = B.contiguous(), C.contiguous()
        z = z.contiguous() if z is not None else None
        D = D.contiguous() if D is not None else None
        delta_bias = delta_bias.contiguous() if delta_bias is not None else None
        need_grad = any(ctx.needs_input_grad[:8])
        out, states = _forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                               save_all=need_grad, save_last=return_last_state, out_dtype=out_dtype or u.dtype,
                               options=options)
        ctx.delta_softplus = delta_softplus
        ctx.return_last_state = return_last_state
        ctx.options = options
        if need_grad:
            ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states)
        if return_last_state:
            return out, states[:, -1].transpose(1, 2).contiguous()
        return out

    @staticmethod
    def backward(ctx, dout, *rest):
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        dlast = rest[0] if ctx.return_last_state and rest and rest[0] is not None else None
        if dlast is not None:
            dlast = dlast.float().contiguous()
        grads = _backward(u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, states,
                          dout.contiguous(), dlast, ctx.options)
        grads = [g if need else None for g, need in zip(grads, ctx.needs_input_grad[:8])]
        return (*grads, None, None, None, None)


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    out_dtype: torch.dtype | None = None,
    options: TritonScanOptions | None = None,
):
    """The selective scan through Triton kernels; arguments as ``selective_scan`` (inputs not re-validated).

    ``out_dtype``: dtype of ``out`` (default u's), e.g. float32 output from 16-bit inputs.
    ``options``: how the kernels run (``TritonScanOptions``; None = the defaults).
    Returns ``out`` or ``(out, last_state)`` with last_state (b, d, n) float32.
    """
    options = check_options("selective_scan_triton", options)
    return SelectiveScanTritonFn.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                                       bool(return_last_state), out_dtype, options)
