"""A Mamba block over a 2-D or 3-D map: K scan routes through ``selective_scan_2d`` / ``selective_scan_3d``.

The one-dimensional Mamba block (``Mamba``) scans a token sequence in one direction. ``MambaND`` scans a
map along the K routes of a fused scan pattern ("tri6" for volumes: the three axis orders and their
reverses; "cross4" / "bidi" / "omni8" for images), each route with its own dt/B/C projections, A, D and
dt bias, and sums the routes back onto the map (the VMamba SS2D recipe, in any rank):

    x (b, *spatial, d_model) -> in_proj -> [u, z]; u -> depthwise conv (k = d_conv, same padding) -> SiLU
      -> per-route x_proj -> (dt, B, C) -> per-route dt_proj -> fused selective scan over K routes (merged)
      -> LayerNorm -> * SiLU(z) -> out_proj -> (b, *spatial, d_model)

Parameter names follow SS2D: ``in_proj, conv, x_proj_weight (K, R + 2N, d_inner),
dt_projs_weight (K, d_inner, R), dt_projs_bias (K, d_inner), A_logs (K*d_inner, N), Ds (K*d_inner),
out_norm, out_proj``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import (
    FUSED_PATTERNS_2D,
    FUSED_PATTERNS_3D,
    PATTERNS_2D,
    PATTERNS_3D,
    selective_scan_2d,
    selective_scan_3d,
)
from .ssm_branch import init_dt_, resolve_dt_rank

__all__ = ["MambaND"]


class MambaND(nn.Module):
    """Mamba block scanning a 2-D or 3-D channels-last map along the K routes of ``pattern``.

    Args:
        d_model: channels of the map.
        pattern: a fused scan pattern: "tri6" (3-D, K 6) or "cross4" / "bidi" / "omni8" (2-D).
        d_state: SSM state size N.
        d_conv: kernel of the depthwise convolution (odd; "same" padding, not causal: routes run both ways).
        expand: d_inner = expand * d_model.
        dt_rank: R, "auto" = ceil(d_model / 16).
        dt_min, dt_max, dt_init, dt_scale, dt_init_floor: Mamba's dt initialisation.
        scan_backend: selective-scan backend (None = best available: Triton on CUDA).
    """

    def __init__(
        self,
        d_model: int,
        pattern: str = "tri6",
        d_state: int = 16,
        d_conv: int = 3,
        expand: float = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        scan_backend: str | None = None,
    ) -> None:
        super().__init__()
        if pattern in FUSED_PATTERNS_3D:
            self.spatial_dims, k = 3, PATTERNS_3D[pattern]
        elif pattern in FUSED_PATTERNS_2D:
            self.spatial_dims, k = 2, PATTERNS_2D[pattern]
        else:
            raise ValueError(f"MambaND: argument 'pattern' must be one of "
                             f"{list(FUSED_PATTERNS_3D) + list(FUSED_PATTERNS_2D)}; got {pattern!r}")
        if d_conv < 1 or d_conv % 2 == 0:
            raise ValueError(f"MambaND: argument 'd_conv' must be a positive odd kernel size; got {d_conv}")
        self.d_model, self.pattern, self.num_routes, self.scan_backend = d_model, pattern, k, scan_backend
        self.d_inner, self.d_state = int(expand * d_model), d_state
        self.dt_rank = resolve_dt_rank(d_model, dt_rank)
        d, r, n = self.d_inner, self.dt_rank, d_state
        conv = nn.Conv3d if self.spatial_dims == 3 else nn.Conv2d
        self.in_proj = nn.Linear(d_model, 2 * d, bias=False)
        self.conv = conv(d, d, d_conv, padding=d_conv // 2, groups=d, bias=True)
        self.x_proj_weight = nn.Parameter(torch.empty(k, r + 2 * n, d).uniform_(-d ** -0.5, d ** -0.5))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d, r))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d))
        init_dt_(self.dt_projs_weight.data, self.dt_projs_bias.data, dt_min, dt_max, dt_init, dt_scale, dt_init_floor)
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(k * d, 1))
        self.Ds = nn.Parameter(torch.ones(k * d))
        self.A_logs._no_weight_decay = True  # type: ignore[attr-defined]
        self.Ds._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_norm = nn.LayerNorm(d)
        self.out_proj = nn.Linear(d, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, *spatial, d_model) channels-last map -> (b, *spatial, d_model)."""
        if x.dim() != self.spatial_dims + 2 or x.shape[-1] != self.d_model:
            raise ValueError(f"MambaND({self.pattern!r}): argument 'x' must be (b, {'D, ' if self.spatial_dims == 3 else ''}"
                             f"H, W, d_model={self.d_model}); got {tuple(x.shape)}")
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u = u.movedim(-1, 1)  # (b, d_inner, *spatial)
        u = F.silu(self.conv(u))
        r, n = self.dt_rank, self.d_state
        x_dbl = torch.einsum("bc...,krc->bkr...", u, self.x_proj_weight.to(u.dtype))
        dt, B, C = torch.split(x_dbl, [r, n, n], dim=2)
        delta = torch.einsum("bkr...,kcr->bkc...", dt, self.dt_projs_weight.to(u.dtype))
        scan = selective_scan_3d if self.spatial_dims == 3 else selective_scan_2d
        y = scan(u.contiguous(), delta.contiguous(), -torch.exp(self.A_logs.float()), B.contiguous(), C.contiguous(),
                 D=self.Ds.float(), delta_bias=self.dt_projs_bias.float().flatten(), delta_softplus=True,
                 pattern=self.pattern, backend=self.scan_backend)
        y = self.out_norm(y.movedim(1, -1).to(x.dtype))
        return self.out_proj(y * F.silu(z))

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, pattern={self.pattern!r}, routes={self.num_routes}, d_inner={self.d_inner}, "
                f"d_state={self.d_state}, dt_rank={self.dt_rank}")
