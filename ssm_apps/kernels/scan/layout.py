"""Arranging B/C for the selective scan.

Channels are split into G groups of d // G; channel i reads group i // (d // G).
A B or C tensor in any accepted layout — constant (d, n), shared (b, n, L) or
grouped (b, g, n, L) — is viewed as a tensor that broadcasts against
(b, G, d // G, L, n) without copying the channel dimension.
"""
from __future__ import annotations

import torch


def num_groups(B: torch.Tensor, C: torch.Tensor) -> int:
    """Channel groups G that both B and C can be viewed in (1 when both are shared or constant)."""
    groups = [t.shape[1] if t.dim() == 4 else 1 for t in (B, C) if t.dim() != 2]
    g = max(groups, default=1)
    for t in groups:
        if g % t != 0:
            raise ValueError(f"selective_scan: B and C group counts must divide each other; got {groups}")
    return g


def grouped_bc(B: torch.Tensor, C: torch.Tensor, dim: int) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(G, B viewed, C viewed): :func:`num_groups` and :func:`grouped_view` of both, as the torch backends use."""
    groups = num_groups(B, C)
    return groups, grouped_view(B, dim, groups), grouped_view(C, dim, groups)


def grouped_view(X: torch.Tensor, dim: int, groups: int) -> torch.Tensor:
    """View B or C as a tensor broadcastable to (b, G, d // G, L, n).

    (d, n) -> (1, G, d // G, 1, n); (b, n, L) -> (b, G, 1, L, n) (expanded, no copy);
    (b, g, n, L) -> (b, G, 1, L, n), repeating each of the g groups G // g times.
    """
    if X.dim() == 2:
        return X.reshape(1, groups, dim // groups, 1, X.shape[-1])
    if X.dim() == 3:
        X = X.unsqueeze(1)
    g = X.shape[1]
    X = X.transpose(-1, -2).unsqueeze(2)  # (b, g, 1, L, n)
    if g == groups:
        return X
    if g == 1:
        return X.expand(-1, groups, -1, -1, -1)
    return X.repeat_interleave(groups // g, dim=1)
