"""The selective scan, with mamba_ssm's ``selective_scan_fn`` semantics, over several backends."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from .._backend import pick_backend
from .checks import as_channel_vector, check_scan_inputs
from .chunked import scan_chunked
from .options import TritonScanOptions, check_options
from .ref import scan_ref

Backend = Literal["ref", "torch", "numba", "triton"]
BACKENDS: tuple[str, ...] = ("ref", "torch", "numba", "triton")


def default_backend(device: torch.device) -> str:
    """The fastest backend available on ``device``."""
    return pick_backend("default_backend", None, device, BACKENDS)


@torch.compiler.disable
def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | float | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | float | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: Backend | None = None,
    out_dtype: torch.dtype | None = None,
    triton_options: TritonScanOptions | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective state-space scan (Mamba-1), as mamba_ssm's ``selective_scan_fn``.

    Args:
        u: (b, d, L) input, float32/float16/bfloat16.
        delta: (b, d, L) step sizes; ``delta + delta_bias`` then softplus if ``delta_softplus``.
        A: (d, n) float32 state matrix (diagonal per channel), n <= 256.
        B, C: (d, n) constant, (b, n, L) shared by all channels, or (b, g, n, L) grouped
            (channel i uses group i // (d / g)).
        D: (d,) float32 skip weight, or a Python float used for every channel.
        z: (b, d, L) gate.
        delta_bias: (d,) float32, or a Python float used for every channel.
        return_last_state: also return the final state (b, d, n) float32.
        backend: "ref" (sequential), "torch" (chunked), "numba" (compiled CPU loop), "triton" (CUDA),
            None = the best available (triton on CUDA, numba on CPU where installed, else torch).
        out_dtype: dtype of ``out`` (default u's), e.g. float32 output from 16-bit inputs.
        triton_options: how the Triton kernels run (``TritonScanOptions``; None = the defaults);
            the other backends do not read it.

    Returns:
        out (b, d, L) in ``out_dtype`` or u's dtype, ``(y + D * u) * silu(z)``; and the last state if asked.
        Arithmetic is float32 whatever the input dtype.
    """
    if isinstance(u, torch.Tensor) and u.dim() == 3:
        D = as_channel_vector("selective_scan", "D", D, u.shape[1], u.device)
        delta_bias = as_channel_vector("selective_scan", "delta_bias", delta_bias, u.shape[1], u.device)
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    if out_dtype is not None and out_dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"selective_scan: argument 'out_dtype' must be float32/float16/bfloat16 or None; got {out_dtype}")
    triton_options = check_options("selective_scan", triton_options)
    backend = pick_backend("selective_scan", backend, u.device, BACKENDS)
    if backend == "triton":
        from .triton import selective_scan_triton  # lazily: it imports triton

        return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                     out_dtype=out_dtype, options=triton_options)

    dtype_in = u.dtype
    if backend == "numba":
        from .numba_cpu import scan_numba  # lazily: it imports numba

        out, last_state = scan_numba(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        out = out.to(out_dtype or dtype_in)
        return (out, last_state) if return_last_state else out
    u32 = u.float()
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    core = scan_ref if backend == "ref" else scan_chunked
    y, last_state = core(u32, dt, A, B.float(), C.float())
    out = y if D is None else y + u32 * D[:, None]
    if z is not None:
        out = out * F.silu(z.float())
    out = out.to(out_dtype or dtype_in)
    return (out, last_state) if return_last_state else out
