"""The selective-SSM path of a Mamba block, as functions shared by Mamba and BiMamba.

``build_ssm_params`` makes one direction's parameters (conv1d, x_proj, dt_proj, A_log, D)
with mamba_ssm's initialisation; ``ssm_forward`` runs
depthwise causal conv -> SiLU -> x_proj -> (dt, B, C) -> dt_proj -> selective scan.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from ..kernels import selective_scan
from ..kernels.conv1d import BACKENDS as CONV_BACKENDS
from ..kernels.conv1d import causal_conv1d


class SSMParams(NamedTuple):
    conv1d: nn.Conv1d
    x_proj: nn.Linear
    dt_proj: nn.Linear
    A_log: nn.Parameter
    D: nn.Parameter


def resolve_dt_rank(d_model: int, dt_rank: int | str) -> int:
    """mamba_ssm's rule: "auto" -> ceil(d_model / 16)."""
    return math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)


def init_dt_(
    weight: torch.Tensor,
    bias: torch.Tensor,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dt_init: str = "random",
    dt_scale: float = 1.0,
    dt_init_floor: float = 1e-4,
) -> None:
    """Mamba's dt_proj initialisation, in place, for one route or K stacked routes.

    weight (..., d_inner, dt_rank) ~ U(-s, s) ("random") or = s ("constant"), s = dt_rank^-0.5 * dt_scale;
    bias (..., d_inner) such that softplus(bias) is log-uniform in [dt_min, dt_max], floored at dt_init_floor.
    """
    std = weight.shape[-1] ** -0.5 * dt_scale
    with torch.no_grad():
        if dt_init == "constant":
            weight.fill_(std)
        elif dt_init == "random":
            weight.uniform_(-std, std)
        else:
            raise ValueError(f"dt_init must be 'constant' or 'random'; got {dt_init!r}")
        dt = torch.exp(torch.rand(bias.shape, device=bias.device) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus


def build_ssm_params(
    d_inner: int,
    d_state: int,
    d_conv: int,
    dt_rank: int,
    conv_bias: bool = True,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dt_init: str = "random",
    dt_scale: float = 1.0,
    dt_init_floor: float = 1e-4,
) -> SSMParams:
    """One direction's parameters, initialised as mamba_ssm does.

    dt_proj.weight ~ U(-s, s) ("random") or = s ("constant") with s = dt_rank^-0.5 * dt_scale;
    softplus(dt_proj.bias) log-uniform in [dt_min, dt_max] (floored at dt_init_floor);
    A_log = log([1..d_state]) per channel (A = -exp(A_log)); D = 1.
    """
    conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias)
    x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
    dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
    init_dt_(dt_proj.weight, dt_proj.bias, dt_min, dt_max, dt_init, dt_scale, dt_init_floor)
    A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)))
    D = nn.Parameter(torch.ones(d_inner))
    A_log._no_weight_decay = True  # type: ignore[attr-defined]
    D._no_weight_decay = True  # type: ignore[attr-defined]
    return SSMParams(conv1d, x_proj, dt_proj, A_log, D)


def ssm_forward(
    x: torch.Tensor, z: torch.Tensor | None, p: SSMParams, backend: str | None = None
) -> torch.Tensor:
    """x, z: (b, d_inner, L) -> gated scan output (b, d_inner, L).

    ``backend`` is the scan's; the causal conv runs on the same backend where it has it ("numba",
    "torch"), else on its default (numba for float32 CPU tensors, torch otherwise).
    """
    d_state, dt_rank = p.A_log.shape[1], p.dt_proj.in_features
    conv_backend = backend if backend in CONV_BACKENDS else None
    x = causal_conv1d(x, p.conv1d.weight[:, 0], p.conv1d.bias, "silu", backend=conv_backend)
    x_dbl = p.x_proj(x.transpose(1, 2))  # (b, L, dt_rank + 2 n)
    dt, B, C = torch.split(x_dbl, [dt_rank, d_state, d_state], dim=-1)
    dt = (dt @ p.dt_proj.weight.t()).transpose(1, 2)  # (b, d_inner, L); the bias is added in the scan
    return selective_scan(
        x,
        dt,
        -torch.exp(p.A_log.float()),
        B.transpose(1, 2),
        C.transpose(1, 2),
        D=p.D.float(),
        z=z,
        delta_bias=p.dt_proj.bias.float(),
        delta_softplus=True,
        backend=backend,
    )
