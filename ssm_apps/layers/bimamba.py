"""Bidirectional Mamba blocks.

Modes:
- ``"v2"`` (Vim's bimamba v2): one in_proj/out_proj shared by both directions, a second set of
  SSM parameters for the reversed pass (``conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b``, Vim's
  names); the forward output and the re-reversed backward output are averaged before out_proj.
- ``"sum"`` (S-Mamba): two independent Mamba blocks ``fwd`` and ``bwd``;
  out = fwd(x) + flip(bwd(flip(x))).
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .mamba import Mamba, check_hidden_states
from .ssm_branch import SSMParams, build_ssm_params, resolve_dt_rank, ssm_forward


class BiMamba(nn.Module):
    """Bidirectional Mamba over (b, L, d_model) sequences; ``mode`` is "v2" or "sum" (see module doc)."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank: int | str = "auto",
        mode: Literal["v2", "sum"] = "v2",
        conv_bias: bool = True,
        bias: bool = False,
        scan_backend: str | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("v2", "sum"):
            raise ValueError(f"BiMamba: argument 'mode' must be 'v2' or 'sum'; got {mode!r}")
        self.mode, self.d_model, self.scan_backend = mode, d_model, scan_backend
        if mode == "sum":
            kw = dict(d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank,
                      conv_bias=conv_bias, bias=bias, scan_backend=scan_backend)
            self.fwd = Mamba(d_model, **kw)
            self.bwd = Mamba(d_model, **kw)
            return
        self.d_inner = int(expand * d_model)
        rank = resolve_dt_rank(d_model, dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D = build_ssm_params(
            self.d_inner, d_state, d_conv, rank, conv_bias)
        self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b = build_ssm_params(
            self.d_inner, d_state, d_conv, rank, conv_bias)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states: (b, L, d_model) -> (b, L, d_model)."""
        check_hidden_states("BiMamba", hidden_states, self.d_model)
        if self.mode == "sum":
            return self.fwd(hidden_states) + self.bwd(hidden_states.flip(1)).flip(1)
        xz = self.in_proj(hidden_states).transpose(1, 2)
        x, z = xz.chunk(2, dim=1)
        fwd = SSMParams(self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        bwd = SSMParams(self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b)
        y = ssm_forward(x, z, fwd, self.scan_backend)
        y_b = ssm_forward(x.flip(-1), z.flip(-1), bwd, self.scan_backend).flip(-1)
        return self.out_proj(((y + y_b) / 2).transpose(1, 2))
