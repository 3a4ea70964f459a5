"""Argument checks of the fused 2-D / 3-D scan; every error names the function, the argument, the expected
and the given."""
from __future__ import annotations

import torch

from ..scan.checks import FLOAT_DTYPES, MAX_D_STATE


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _fail(fn: str, name: str, expected: str, t: torch.Tensor) -> None:
    raise ValueError(f"{fn}: argument '{name}' must be {expected}; got shape {_shape(t)} dtype {t.dtype}")


def check_fused_inputs(fn: str, x, delta, A, B, C, D, delta_bias, pattern: str, rank: int, k: int, out_dtype,
                       delta_proj_weight=None) -> tuple:
    """Validate a fused call; returns (b, c, spatial sizes, n)."""
    names = {"x": x, "delta": delta, "A": A, "B": B, "C": C, "D": D, "delta_bias": delta_bias,
             "delta_proj_weight": delta_proj_weight}
    for name, t in names.items():
        if t is None and name in ("D", "delta_bias", "delta_proj_weight"):
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{fn}: argument '{name}' must be a torch.Tensor; got {type(t).__name__}")
    sp_names = "D, H, W" if rank == 5 else "H, W"
    if x.dim() != rank or x.dtype not in FLOAT_DTYPES:
        _fail(fn, "x", f"a float32/float16/bfloat16 tensor (b, c, {sp_names})", x)
    b, c, *sizes = x.shape
    if b < 1 or c < 1 or min(sizes) < 1:
        _fail(fn, "x", f"a non-empty (b, c, {sp_names})", x)
    if A.dim() != 2 or A.dtype != torch.float32 or A.shape[0] != k * c or not 1 <= A.shape[1] <= MAX_D_STATE:
        _fail(fn, "A", f"float32 (K*c, n) = ({k * c}, n) with 1 <= n <= {MAX_D_STATE} (K = {k} for {pattern!r})", A)
    n = A.shape[1]
    sp = ", ".join(str(s) for s in sizes)
    if delta_proj_weight is None:
        if _shape(delta) != (b, k, c, *sizes) or delta.dtype != x.dtype:
            _fail(fn, "delta", f"(b, K, c, {sp_names}) = ({b}, {k}, {c}, {sp}) per pixel, dtype {x.dtype} like x",
                  delta)
    else:
        w = delta_proj_weight
        if w.dim() != 3 or _shape(w)[:2] != (k, c) or w.shape[2] < 1 or w.dtype != x.dtype:
            _fail(fn, "delta_proj_weight", f"(K, c, R) = ({k}, {c}, R) with R >= 1, dtype {x.dtype} like x", w)
        r = w.shape[2]
        if _shape(delta) != (b, k, r, *sizes) or delta.dtype != x.dtype:
            _fail(fn, "delta", f"(b, K, R, {sp_names}) = ({b}, {k}, {r}, {sp}) low-rank factors per pixel (with "
                  f"delta_proj_weight), dtype {x.dtype} like x", delta)
    for name, t in (("B", B), ("C", C)):
        if _shape(t) != (b, k, n, *sizes) or t.dtype != x.dtype:
            _fail(fn, name, f"(b, K, n, {sp_names}) = ({b}, {k}, {n}, {sp}) per pixel, dtype {x.dtype} like x", t)
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and (_shape(t) != (k * c,) or t.dtype != torch.float32):
            _fail(fn, name, f"float32 (K*c,) = ({k * c},)", t)
    devices = {t.device for t in names.values() if t is not None}
    if len(devices) != 1:
        raise ValueError(f"{fn}: all tensors must be on one device; got {sorted(str(d) for d in devices)}")
    if out_dtype is not None and out_dtype not in FLOAT_DTYPES:
        raise ValueError(f"{fn}: argument 'out_dtype' must be float32/float16/bfloat16 or None; got {out_dtype}")
    return b, c, tuple(sizes), n
