"""Dropout: ``dropout`` (numba on the CPU for float32 / float64, ``torch.nn.functional.dropout`` elsewhere).

``numba_cpu.py`` holds the counter-based kernel (no stored mask; see its docstring for the stream and
the measurements behind it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._backend import pick_backend

BACKENDS: tuple[str, ...] = ("numba", "torch")
_NUMBA_DTYPES = (torch.float32, torch.float64)


def dropout(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False,
            backend: str | None = None) -> torch.Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Args:
        x: any shape and dtype.
        p: drop probability in [0, 1].
        training: False returns ``x`` itself, as ``torch.nn.functional.dropout``.
        inplace: write into ``x`` (always the torch backend, whose in-place path autograd tracks).
        backend: "numba", "torch" or None (numba for float32 / float64 CPU tensors where numba is
            installed, torch otherwise; ``SSM_APPS_SCAN_BACKEND`` as for every kernel family).

    Returns:
        A tensor of ``x``'s shape and dtype (contiguous with the numba backend).

    Raises:
        ValueError: ``p`` outside [0, 1], or an unknown ``backend``.
        RuntimeError: ``backend="numba"`` for a tensor it cannot run on (device or dtype named).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: argument 'p' must be in [0, 1]; got {p}")
    if not training or p == 0.0:
        return x
    if inplace:
        return F.dropout(x, p, True, inplace=True)
    if backend is None and (x.device.type != "cpu" or x.dtype not in _NUMBA_DTYPES):
        backend = "torch"
    backend = pick_backend("dropout", backend, x.device, BACKENDS)
    if backend == "torch" or p == 1.0:
        return F.dropout(x, p, True)
    if x.dtype not in _NUMBA_DTYPES:
        raise RuntimeError(f"dropout: backend 'numba' needs a float32 or float64 tensor; got {x.dtype}")
    from .numba_cpu import NumbaDropoutFn, draw_seed

    return NumbaDropoutFn.apply(x, draw_seed(), p)


__all__ = ["BACKENDS", "dropout"]
