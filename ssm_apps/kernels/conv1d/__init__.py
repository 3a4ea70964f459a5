"""The depthwise causal conv1d of a Mamba block, with its SiLU: ``causal_conv1d`` (the semantics of the
``causal_conv1d`` package's ``causal_conv1d_fn``; numba on the CPU, ``torch.nn.functional.conv1d``
elsewhere).

``numba_cpu.py`` holds the compiled CPU kernels (see its docstring for the layout and the
measurement behind them).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._backend import pick_backend

BACKENDS: tuple[str, ...] = ("numba", "torch")
ACTIVATIONS: tuple[str | None, ...] = (None, "silu")


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str | None) -> None:
    if x.dim() != 3:
        raise ValueError(f"causal_conv1d: argument 'x' must be (b, d, L); got shape {tuple(x.shape)}")
    if weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"causal_conv1d: argument 'weight' must be (d={x.shape[1]}, K); got shape "
                         f"{tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (x.shape[1],):
        raise ValueError(f"causal_conv1d: argument 'bias' must be (d={x.shape[1]},); got shape {tuple(bias.shape)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"causal_conv1d: argument 'activation' must be one of {ACTIVATIONS}; got {activation!r}")


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """``y[:, c, t] = act(bias[c] + sum_k weight[c, k] * x[:, c, t - (K - 1) + k])``, x zero before t = 0.

    Args:
        x: (b, d, L), any strides.
        weight: (d, K) (a ``Conv1d(d, d, K, groups=d)`` weight without its middle axis).
        bias: (d,) or None.
        activation: None or "silu".
        backend: "numba", "torch" or None (numba for float32 CPU tensors where numba is installed, torch
            otherwise; ``SSM_APPS_SCAN_BACKEND`` as for every kernel family).

    Returns:
        (b, d, L) of x's dtype with the torch backend; float32 with numba (a transposed view of
        contiguous (b, L, d) memory, the layout the numba selective scan reads without a copy).

    Raises:
        ValueError: shapes that do not match, an unknown ``activation`` or ``backend``.
        RuntimeError: ``backend="numba"`` for a tensor it cannot run on (device or dtype named).
    """
    _check(x, weight, bias, activation)
    if backend is None and (x.device.type != "cpu" or x.dtype != torch.float32):
        backend = "torch"
    backend = pick_backend("causal_conv1d", backend, x.device, BACKENDS)
    if backend == "numba":
        if x.dtype != torch.float32:
            raise RuntimeError(f"causal_conv1d: backend 'numba' needs a float32 tensor; got {x.dtype}")
        from .numba_cpu import causal_conv1d_numba

        return causal_conv1d_numba(x, weight, bias, activation == "silu")
    length, width = x.shape[-1], weight.shape[-1]
    y = F.conv1d(x, weight.unsqueeze(1), bias, padding=width - 1, groups=x.shape[1])[..., :length]
    return F.silu(y) if activation == "silu" else y


__all__ = ["ACTIVATIONS", "BACKENDS", "causal_conv1d"]
