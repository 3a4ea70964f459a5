"""Mamba-1 block (mamba_ssm's ``Mamba``), built on ``ssm_apps.kernels.selective_scan``.

in_proj -> (x, z); x -> depthwise causal conv1d -> SiLU -> x_proj -> (dt, B, C);
dt -> dt_proj (bias applied inside the scan, with softplus); selective scan with
D skip and SiLU(z) gate -> out_proj. Parameter names and shapes equal mamba_ssm's
(``in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj``), so its state_dict
loads unchanged.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..convert import IDENTITY_RULES, convert_checkpoint
from .ssm_branch import SSMParams, build_ssm_params, resolve_dt_rank, ssm_forward

# mamba_ssm constructor arguments with no effect on the maths.
OFFICIAL_IGNORED_KWARGS = ("use_fast_path", "layer_idx", "device", "dtype")


def check_hidden_states(name: str, x: torch.Tensor, d_model: int) -> None:
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(f"{name}: argument 'hidden_states' must be (b, L, d_model={d_model}); got {tuple(x.shape)}")


class Mamba(nn.Module):
    """Mamba-1 block. Input and output (b, L, d_model).

    Arguments mirror mamba_ssm's ``Mamba``: d_state, d_conv, expand, dt_rank ("auto" =
    ceil(d_model / 16)), dt_min/dt_max/dt_init/dt_scale/dt_init_floor, conv_bias, bias.
    ``scan_backend`` picks the selective-scan backend (None = best available).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        scan_backend: str | None = None,
    ) -> None:
        super().__init__()
        self.d_model, self.d_inner, self.scan_backend = d_model, int(expand * d_model), scan_backend
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        p = build_ssm_params(
            self.d_inner, d_state, d_conv, resolve_dt_rank(d_model, dt_rank), conv_bias,
            dt_min, dt_max, dt_init, dt_scale, dt_init_floor,
        )
        self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D = p
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states: (b, L, d_model) -> (b, L, d_model)."""
        check_hidden_states("Mamba", hidden_states, self.d_model)
        x, z = self.in_proj(hidden_states).transpose(1, 2).chunk(2, dim=1)
        p = SSMParams(self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        return self.out_proj(ssm_forward(x, z, p, self.scan_backend).transpose(1, 2))

    @classmethod
    def from_official(cls, official_kwargs: Mapping[str, Any],
                      official_state_dict: Mapping[str, torch.Tensor]) -> Mamba:
        """Build from mamba_ssm ``Mamba(**official_kwargs)`` arguments and load its state_dict through
        ``ssm_apps.convert.convert_checkpoint`` (the keys are the same: every key kept; any missing,
        extra or mis-shaped key raises ``ConversionError``). Ignored official kwargs: use_fast_path,
        layer_idx, device, dtype."""
        kwargs = {k: v for k, v in official_kwargs.items() if k not in OFFICIAL_IGNORED_KWARGS}
        model = cls(**kwargs)
        model.load_state_dict(convert_checkpoint(official_state_dict, model, IDENTITY_RULES, "Mamba"), strict=True)
        return model
