"""Input checks for the selective scan, shared by every backend.

Every error names the argument, the expected shape or dtype and what was given.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

MAX_D_STATE = 256
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class ScanShape:
    """Sizes of one selective-scan call: batch, channels, length, state size."""

    batch: int
    dim: int
    length: int
    d_state: int


def _fail(name: str, expected: str, tensor: torch.Tensor) -> None:
    raise ValueError(
        f"selective_scan: argument '{name}' must be {expected}; "
        f"got shape {tuple(tensor.shape)} dtype {tensor.dtype}"
    )


def _check_float(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"selective_scan: argument '{name}' must be a torch.Tensor; got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        _fail(name, "a float32/float16/bfloat16 tensor", t)


def _check_bc(name: str, t: torch.Tensor, s: ScanShape) -> None:
    _check_float(name, t)
    if t.dim() == 2:
        if tuple(t.shape) != (s.dim, s.d_state):
            _fail(name, f"(d, n) = ({s.dim}, {s.d_state}) when constant over time", t)
    elif t.dim() == 3:
        if tuple(t.shape) != (s.batch, s.d_state, s.length):
            _fail(name, f"(b, n, L) = ({s.batch}, {s.d_state}, {s.length})", t)
    elif t.dim() == 4:
        b, g, n, length = t.shape
        if (b, n, length) != (s.batch, s.d_state, s.length) or g < 1:
            _fail(name, f"(b, g, n, L) = ({s.batch}, g, {s.d_state}, {s.length})", t)
        if s.dim % g != 0:
            _fail(name, f"grouped with g dividing d = {s.dim} (g = {g} does not)", t)
    else:
        _fail(name, "of rank 2 (d, n), 3 (b, n, L) or 4 (b, g, n, L)", t)


def as_channel_vector(
    fn: str, name: str, value: object, dim: int, device: torch.device, label: str = "d"
) -> object:
    """A per-channel parameter (D, delta_bias) given as a Python number, as a float32 (dim,) tensor.

    Tensors and None are returned unchanged (the checks judge them); a real number (not a bool) is
    filled into a (dim,) float32 tensor on ``device``; anything else raises a TypeError naming the
    argument (``label`` names the size in the message).
    """
    if value is None or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return torch.full((dim,), float(value), dtype=torch.float32, device=device)
    raise TypeError(
        f"{fn}: argument '{name}' must be a float32 tensor of shape ({label},) = ({dim},), a Python float or None; "
        f"got {type(value).__name__}"
    )


def check_scan_inputs(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
) -> ScanShape:
    """Validate a selective-scan call and return its sizes.

    Shapes: u, delta, z (b, d, L); A (d, n) float32; B, C (d, n), (b, n, L) or
    (b, g, n, L) with g dividing d; D, delta_bias (d,) float32.
    """
    _check_float("u", u)
    if u.dim() != 3:
        _fail("u", "of rank 3 (b, d, L)", u)
    batch, dim, length = u.shape
    if length < 1:
        _fail("u", "non-empty along L", u)
    _check_float("delta", delta)
    if delta.shape != u.shape:
        _fail("delta", f"(b, d, L) = {tuple(u.shape)} like u", delta)
    if not isinstance(A, torch.Tensor) or A.dtype != torch.float32 or A.dim() != 2 or A.shape[0] != dim:
        if not isinstance(A, torch.Tensor):
            raise TypeError(f"selective_scan: argument 'A' must be a torch.Tensor; got {type(A).__name__}")
        _fail("A", f"a float32 tensor (d, n) with d = {dim}", A)
    d_state = A.shape[1]
    if not 1 <= d_state <= MAX_D_STATE:
        _fail("A", f"(d, n) with 1 <= n <= {MAX_D_STATE}", A)
    s = ScanShape(batch, dim, length, d_state)
    _check_bc("B", B, s)
    _check_bc("C", C, s)
    for name, vec in (("D", D), ("delta_bias", delta_bias)):
        if vec is not None and not isinstance(vec, torch.Tensor):
            raise TypeError(
                f"selective_scan: argument '{name}' must be a float32 tensor of shape (d,) = ({dim},), "
                f"a Python float or None; got {type(vec).__name__}"
            )
        if vec is not None and (vec.dtype != torch.float32 or tuple(vec.shape) != (dim,)):
            _fail(name, f"a float32 tensor of shape (d,) = ({dim},)", vec)
    if z is not None:
        _check_float("z", z)
        if z.shape != u.shape:
            _fail("z", f"(b, d, L) = {tuple(u.shape)} like u", z)
    devices = {t.device for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None}
    if len(devices) > 1:
        raise ValueError(f"selective_scan: all tensors must be on one device; got {sorted(map(str, devices))}")
    return s
