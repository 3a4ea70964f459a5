"""The fused pattern scan on the Triton kernels (GATHER): its autograd Function."""
from __future__ import annotations

import torch

from ..scan.options import TritonScanOptions, check_options
from ..scan.triton.bwd import _backward
from ..scan.triton.fwd import _forward


class SelectiveScanGatherTritonFn(torch.autograd.Function):
    """Fused pattern scan (see ``selective_scan_gather_triton``): forward and backward through the
    same kernels as the plain scan, with GATHER on."""

    @staticmethod
    def forward(ctx, x, delta, A, B, C, D, delta_bias, delta_softplus, index, out_dtype, options):
        A = A.contiguous()  # x and delta: any strides (read through them)
        B, C = B.contiguous(), C.contiguous()
        D = D.contiguous() if D is not None else None
        delta_bias = delta_bias.contiguous() if delta_bias is not None else None
        need_grad = any(ctx.needs_input_grad[:7])
        out, states = _forward(x, delta, A, B, C, D, None, delta_bias, delta_softplus,
                               save_all=need_grad, save_last=False, out_dtype=out_dtype or x.dtype,
                               options=options, index=index)
        ctx.delta_softplus = delta_softplus
        ctx.options = options
        if need_grad:
            ctx.save_for_backward(x, delta, A, B, C, D, delta_bias, states, index)
        return out

    @staticmethod
    def backward(ctx, dout):
        x, delta, A, B, C, D, delta_bias, states, index = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, _, dbias = _backward(
            x, delta, A, B, C, D, None, delta_bias, ctx.delta_softplus, states, dout, None,
            ctx.options, index=index)
        grads = [du, ddelta, dA, dB, dC, dD, dbias]
        grads = [g if need else None for g, need in zip(grads, ctx.needs_input_grad[:7])]
        return (*grads, None, None, None, None)


def selective_scan_gather_triton(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    index: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    *,
    out_dtype: torch.dtype | None = None,
    options: TritonScanOptions | None = None,
) -> torch.Tensor:
    """K-route selective scan read straight from a map and merged back (inputs not re-validated).

    Args:
        x: (b, c, P) the map, flattened (P pixels), any strides; fastest with unit channel stride
            (channels-last memory, (b, P, c)): a warp's lanes then read consecutive channels.
        delta: (b, K*c, P) per pixel: row k*c + i holds channel i of route k at each pixel; any
            strides with the route stride c times the channel stride; fastest with memory (b, P, K, c).
        A: (K*c, n) float32.
        B, C: (b, K, n, P) per pixel (route k's channels read group k).
        index: (K, P) int32 on x's device, every row a permutation of 0..P-1: route k visits
            pixel index[k, t] at step t.
        D, delta_bias: (K*c,) float32 or None.
        delta_softplus: softplus(delta + delta_bias) as the step size.
        out_dtype: dtype of the result (default x's).
        options: how the kernels run (``TritonScanOptions``; None = the defaults, float32 atomics).

    Returns:
        (b, c, P) in ``out_dtype`` (default x's), in x's memory layout: at each pixel the sum over
        routes of the scan output at the step that visits it. Equals scanning u_k = x[..., index[k]], delta_k, B_k,
        C_k gathered the same way, and summing each y_k back at index[k].
    """
    options = check_options("selective_scan_gather_triton", options)
    return SelectiveScanGatherTritonFn.apply(x, delta, A, B, C, D, delta_bias, bool(delta_softplus), index,
                                             out_dtype, options)
