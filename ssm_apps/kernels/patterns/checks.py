"""Argument checks of the scan patterns; every error names the function, the argument, the expected
and the given."""
from __future__ import annotations

import operator

import torch

from .maps import PATTERNS_2D, PATTERNS_3D, length_2d


def check_pattern(fn: str, pattern: object, patterns: dict[str, int]) -> str:
    if not isinstance(pattern, str) or pattern not in patterns:
        raise ValueError(
            f"{fn}: argument 'pattern' must be one of {sorted(patterns)}; got {pattern!r}"
        )
    return pattern


def check_sizes(fn: str, name: str, sizes: object, labels: str) -> tuple[int, ...]:
    """A tuple/list of len(labels) positive ints, e.g. hw = (H, W)."""
    n = len(labels.split(","))
    expected = f"a tuple of {n} positive ints ({labels})"
    try:
        if isinstance(sizes, (str, bytes)) or len(sizes) != n:  # type: ignore[arg-type]
            raise TypeError
        out = tuple(operator.index(s) for s in sizes)  # type: ignore[union-attr]
        if any(isinstance(s, bool) for s in sizes):  # type: ignore[union-attr]
            raise TypeError
    except TypeError:
        raise ValueError(f"{fn}: argument '{name}' must be {expected}; got {sizes!r}") from None
    if any(s < 1 for s in out):
        raise ValueError(f"{fn}: argument '{name}' must be {expected}; got {sizes!r}")
    return out


def check_tensor(fn: str, name: str, t: object, rank: int, layout: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: argument '{name}' must be a torch.Tensor; got {type(t).__name__}")
    if t.dim() != rank:
        raise ValueError(
            f"{fn}: argument '{name}' must be of rank {rank} {layout}; "
            f"got shape {tuple(t.shape)} dtype {t.dtype}"
        )
    if not t.is_floating_point():
        raise ValueError(
            f"{fn}: argument '{name}' must be a floating-point tensor {layout}; "
            f"got shape {tuple(t.shape)} dtype {t.dtype}"
        )
    return t


def scan_2d_args(fn: str, x: object, pattern: object) -> tuple[torch.Tensor, str, tuple[int, int]]:
    pattern = check_pattern(fn, pattern, PATTERNS_2D)
    x = check_tensor(fn, "x", x, 4, "(b, c, H, W)")
    height, width = x.shape[2:]
    if height < 1 or width < 1:
        raise ValueError(f"{fn}: argument 'x' must be (b, c, H, W) with H, W >= 1; got shape {tuple(x.shape)}")
    return x, pattern, (height, width)


def merge_2d_args(fn: str, ys: object, pattern: object, hw: object) -> tuple[torch.Tensor, str, tuple[int, int]]:
    pattern = check_pattern(fn, pattern, PATTERNS_2D)
    height, width = check_sizes(fn, "hw", hw, "H, W")
    ys = check_tensor(fn, "ys", ys, 4, "(b, K, c, L_k)")
    k, length = PATTERNS_2D[pattern], length_2d(pattern, height, width)
    if ys.shape[1] != k or ys.shape[3] != length:
        raise ValueError(
            f"{fn}: argument 'ys' must be (b, K, c, L_k) = (b, {k}, c, {length}) "
            f"for pattern {pattern!r} and hw ({height}, {width}); got shape {tuple(ys.shape)}"
        )
    return ys, pattern, (height, width)


def scan_3d_args(fn: str, x: object, pattern: object) -> tuple[torch.Tensor, str, tuple[int, int, int]]:
    pattern = check_pattern(fn, pattern, PATTERNS_3D)
    x = check_tensor(fn, "x", x, 5, "(b, c, D, H, W)")
    depth, height, width = x.shape[2:]
    if min(depth, height, width) < 1:
        raise ValueError(
            f"{fn}: argument 'x' must be (b, c, D, H, W) with D, H, W >= 1; got shape {tuple(x.shape)}"
        )
    return x, pattern, (depth, height, width)


def merge_3d_args(
    fn: str, ys: object, pattern: object, dhw: object
) -> tuple[torch.Tensor, str, tuple[int, int, int]]:
    pattern = check_pattern(fn, pattern, PATTERNS_3D)
    depth, height, width = check_sizes(fn, "dhw", dhw, "D, H, W")
    ys = check_tensor(fn, "ys", ys, 4, "(b, K, c, L)")
    k, length = PATTERNS_3D[pattern], depth * height * width
    if ys.shape[1] != k or ys.shape[3] != length:
        raise ValueError(
            f"{fn}: argument 'ys' must be (b, K, c, L) = (b, {k}, c, {length}) "
            f"for pattern {pattern!r} and dhw ({depth}, {height}, {width}); got shape {tuple(ys.shape)}"
        )
    return ys, pattern, (depth, height, width)
