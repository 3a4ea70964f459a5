"""Independent float64 oracles written from the math, for tests only (no ssm_apps code)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def expand_bc(X: torch.Tensor, b: int, d: int, L: int) -> torch.Tensor:
    """Any accepted B/C layout -> (b, d, n, L): channel i reads group i // (d // g)."""
    if X.dim() == 2:  # (d, n) constant over time
        return X[None, :, :, None].expand(b, d, X.shape[1], L)
    if X.dim() == 3:  # (b, n, L) shared by all channels
        return X[:, None].expand(b, d, X.shape[1], L)
    g = X.shape[1]
    return torch.stack([X[:, i // (d // g)] for i in range(d)], dim=1)


def selective_scan_oracle(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Sequential scan in float64. Returns (out (b, d, L), last state (b, d, n))."""
    u, delta, A = u.double(), delta.double(), A.double()
    b, d, L = u.shape
    Bf, Cf = expand_bc(B.double(), b, d, L), expand_bc(C.double(), b, d, L)
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = torch.zeros(b, d, A.shape[1], dtype=torch.float64)
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, :, t, None] * A) * h + delta[:, :, t, None] * u[:, :, t, None] * Bf[..., t]
        ys.append((h * Cf[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.double()[:, None] * u
    if z is not None:
        y = y * F.silu(z.double())
    return y, h


def scan_inputs(b, d, L, n, bc_layout, dtype, groups=2, seed=0):
    """mamba_ssm's test distributions: u, B, C, D, z ~ N(0,1); delta, delta_bias ~ 0.5 U(0,1); A ~ -0.5 U(0,1)."""
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    shapes = {"constant": (d, n), "shared": (b, n, L), "grouped": (b, groups, n, L)}
    return dict(
        u=rn(b, d, L).to(dtype),
        delta=(0.5 * torch.rand(b, d, L, generator=g)).to(dtype),
        A=-0.5 * torch.rand(d, n, generator=g),
        B=rn(*shapes[bc_layout[0]]).to(dtype),
        C=rn(*shapes[bc_layout[1]]).to(dtype),
        D=rn(d),
        z=rn(b, d, L).to(dtype),
        delta_bias=0.5 * torch.rand(d, generator=g),
    )
