"""Sequential selective scan: the readable reference backend.

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t        (per channel d, state n)
    y_t = sum_n C_t[n] * h_t[n]

One step at a time, float32 state; memory O(b * d * n).
"""
from __future__ import annotations

import torch

from .layout import grouped_bc


def scan_ref(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """u, delta: (b, d, L) float32 (delta already biased/softplus-ed); A: (d, n) float32;
    B, C: any accepted layout. Returns y (b, d, L) float32 and the last state (b, d, n) float32."""
    batch, dim, length = u.shape
    d_state = A.shape[1]
    groups, Bv, Cv = grouped_bc(B, C, dim)

    def at(X: torch.Tensor, t: int) -> torch.Tensor:  # (b, d, n) at step t
        step = X[..., t if X.shape[-2] > 1 else 0, :]
        return step.expand(batch, groups, dim // groups, d_state).reshape(batch, dim, d_state)

    h = u.new_zeros(batch, dim, d_state)
    ys = []
    for t in range(length):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A) * h + (dt * u[:, :, t, None]) * at(Bv, t)
        ys.append((h * at(Cv, t)).sum(-1))
    return torch.stack(ys, dim=-1), h
