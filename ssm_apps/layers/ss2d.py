"""2-D selective-scan blocks: VMamba's ``SS2D`` and EfficientVMamba's ``ES2D``.

Both run one selective scan over K = 4 routes through the feature map
(``ssm_apps.kernels.scan_patterns``), each route with its own x/dt projections,
A, D and dt bias, then sum the routes back onto the map:

    x -> in_proj -> [x, z] -> depthwise conv -> act -> scan K routes -> merge
      -> out_norm -> (* act(z) when gated) -> out_proj

Forward types (the ones VMamba's released models use):

* ``"v05_noz"`` (VMamba v2 family): input and output (B, C, H, W) channel-first;
  projections are 1x1 (``Linear2d``: a Linear's 2-D weight applied as a 1x1 conv),
  out-norm a channel LayerNorm (``LayerNorm2d``), no gate. Released with d_state 1,
  ssm_ratio 1 or 2, conv without bias.
* ``"v0"`` (vanilla family): input and output (B, H, W, C) channel-last; nn.Linear
  projections, nn.LayerNorm out-norm, output gated by SiLU(z). Released with
  d_state 16, ssm_ratio 2, conv with bias.

``ES2D`` is the ``v0`` form over EfficientVMamba's atrous (step-2, four dilated
sub-grids) routes; its sequences are L/4 long.

Parameters keep the official names and shapes (``in_proj, conv2d, x_proj_weight (K, R+2N, D),
dt_projs_weight (K, D, R), dt_projs_bias (K, D), A_logs (K*D, N), Ds (K*D), out_norm, out_proj``),
so the official block's state_dict loads unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import selective_scan, selective_scan_2d
from ..kernels import FUSED_PATTERNS_2D
from .ssm_branch import init_dt_
from ..kernels import cross_merge, cross_scan
from .ssm_branch import resolve_dt_rank

FORWARD_TYPES = ("v05_noz", "v0")
NUM_ROUTES = 4

_ACTIVATIONS = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


def get_act_layer(act: str | type[nn.Module]) -> type[nn.Module]:
    """'silu' / 'gelu' / 'relu' / 'sigmoid' (VMamba's names) or an nn.Module class."""
    if isinstance(act, str):
        if act.lower() not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; got {act!r}")
        return _ACTIVATIONS[act.lower()]
    return act


class Linear2d(nn.Linear):
    """nn.Linear over the channels of a (B, C, H, W) map: a 1x1 conv keeping the Linear's 2-D weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map (works for contiguous and channels_last maps).

    Under autocast the norm runs in the autocast dtype (statistics still accumulated in float32
    by the kernel) instead of autocast's float32 round trip, as timm's "fast norm" does: in a
    VMamba-T bf16 training step on an H100 the float32 casts and norm kernels were a quarter of
    the GPU time. Without autocast (e.g. fp32 evaluation) it is exactly ``F.layer_norm``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        device = x.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
            weight = None if self.weight is None else self.weight.to(dtype)
            bias = None if self.bias is None else self.bias.to(dtype)
            with torch.autocast(device, enabled=False):
                x = F.layer_norm(x.to(dtype), self.normalized_shape, weight, bias, self.eps)
        else:
            x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def init_dt_A_D(
    module: "SS2D",
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dt_init: str = "random",
    dt_scale: float = 1.0,
    dt_init_floor: float = 1e-4,
) -> None:
    """VMamba's ``mamba_init`` (initialize "v0"), per route: dt weight ~ U(-s, s) (or = s) with
    s = dt_rank^-0.5 * dt_scale; softplus(dt bias) log-uniform in [dt_min, dt_max]; A = -[1..N];
    D = 1; x_proj weight as nn.Linear's default (kaiming uniform, bound 1/sqrt(d_inner))."""
    d_inner = module.dt_projs_weight.shape[1]
    init_dt_(module.dt_projs_weight, module.dt_projs_bias, dt_min, dt_max, dt_init, dt_scale, dt_init_floor)
    with torch.no_grad():
        n = module.A_logs.shape[1]
        module.A_logs.copy_(torch.log(torch.arange(1, n + 1, dtype=torch.float32, device=module.A_logs.device)))
        module.Ds.fill_(1.0)
        bound = 1.0 / math.sqrt(d_inner)
        module.x_proj_weight.uniform_(-bound, bound)


class SS2D(nn.Module):
    """VMamba's 2-D selective scan block.

    Args:
        d_model: channels in and out.
        d_state: SSM state size N.
        ssm_ratio: d_inner = int(ssm_ratio * d_model).
        dt_rank: "auto" = ceil(d_model / 16).
        d_conv: depthwise conv kernel (< 2: no conv).
        conv_bias: bias of the depthwise conv.
        act_layer: activation after the conv (and of the gate for "v0"); VMamba's "v0" uses SiLU.
        forward_type: "v05_noz" (channel-first, no gate) or "v0" (channel-last, SiLU(z) gate).
        scan_pattern: "cross4" (VMamba) or "atrous" (EfficientVMamba), see ``kernels.scan_patterns``.
        dropout: dropout after out_proj.
        scan_backend: selective-scan backend (None = best available).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 1,
        ssm_ratio: float = 1.0,
        dt_rank: int | str = "auto",
        d_conv: int = 3,
        conv_bias: bool = False,
        act_layer: str | type[nn.Module] = "silu",
        forward_type: str = "v05_noz",
        scan_pattern: str = "cross4",
        dropout: float = 0.0,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        scan_backend: str | None = None,
    ) -> None:
        super().__init__()
        if forward_type not in FORWARD_TYPES:
            raise ValueError(f"SS2D: argument 'forward_type' must be one of {FORWARD_TYPES}; got {forward_type!r}")
        d_inner = int(ssm_ratio * d_model)
        if d_inner < 1 or d_state < 1:
            raise ValueError(f"SS2D: need ssm_ratio * d_model >= 1 and d_state >= 1; got {ssm_ratio}, {d_state}")
        self.d_model, self.d_inner, self.d_state = d_model, d_inner, int(d_state)
        self.dt_rank = resolve_dt_rank(d_model, dt_rank)
        self.forward_type, self.scan_pattern, self.scan_backend = forward_type, scan_pattern, scan_backend
        self.channel_first = forward_type == "v05_noz"
        self.gated = forward_type == "v0"
        Linear = Linear2d if self.channel_first else nn.Linear

        self.in_proj = Linear(d_model, d_inner * (2 if self.gated else 1), bias=False)
        self.act = get_act_layer(act_layer)()
        self.conv2d = (
            nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, bias=conv_bias)
            if d_conv > 1
            else nn.Identity()
        )
        K, R, N = NUM_ROUTES, self.dt_rank, self.d_state
        self.x_proj_weight = nn.Parameter(torch.empty(K, R + 2 * N, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(K, d_inner, R))
        self.dt_projs_bias = nn.Parameter(torch.empty(K, d_inner))
        self.A_logs = nn.Parameter(torch.empty(K * d_inner, N))
        self.Ds = nn.Parameter(torch.empty(K * d_inner))
        self.A_logs._no_weight_decay = True  # type: ignore[attr-defined]
        self.Ds._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_norm = (LayerNorm2d if self.channel_first else nn.LayerNorm)(d_inner)
        self.out_proj = Linear(d_inner, d_model, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        init_dt_A_D(self, dt_min, dt_max, dt_init, dt_scale, dt_init_floor)

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        """The K-route selective scan: (B, d_inner, H, W) -> (B, d_inner, H, W), routes summed.

        The per-route projections are two plain matmuls over the channels: dt through the product
        of dt_proj and the dt rows of x_proj (a (K, D, D) matrix; the low-rank pair, batched GEMMs
        of inner size dt_rank, is slower on a GPU), and B, C through the remaining x_proj rows.
        Fused patterns ("cross4"): the projections are computed per pixel, in spatial order
        (B, K, ., H, W) -- the same numbers as projecting the scanned copies -- and
        ``selective_scan_2d`` reads every route straight from x. "atrous" runs the unfused chain
        cross_scan -> projections -> selective_scan -> cross_merge.
        """
        batch, dim, height, width = x.shape
        K, R, N = NUM_ROUTES, self.dt_rank, self.d_state
        dt_weight = torch.bmm(self.dt_projs_weight, self.x_proj_weight[:, :R]).to(x.dtype)  # (K, D, D)
        bc_weight = self.x_proj_weight[:, R:].to(x.dtype)  # (K, 2N, D): B rows, then C rows
        if self.scan_pattern in FUSED_PATTERNS_2D:
            x_flat = x.reshape(batch, dim, height * width)
            # dt as (B, HW, K*D) memory: the fused kernels read consecutive channels of a pixel
            # (no layout copy); the same GEMM as W @ x with transposed operands
            dts = torch.matmul(x_flat.transpose(1, 2), dt_weight.reshape(K * dim, dim).t())
            dts = dts.view(batch, height, width, K, dim).permute(0, 3, 4, 1, 2)  # (B, K, D, H, W)
            bc = torch.matmul(bc_weight.reshape(K * 2 * N, dim), x_flat).view(batch, K, 2 * N, height, width)
            return selective_scan_2d(
                x, dts, -torch.exp(self.A_logs.float()),
                bc[:, :, :N], bc[:, :, N:],  # B, C: (B, K, N, H, W) per pixel
                D=self.Ds.float(),
                delta_bias=self.dt_projs_bias.float().reshape(-1),
                delta_softplus=True,
                pattern=self.scan_pattern,
                backend=self.scan_backend,
            )
        xs = cross_scan(x, self.scan_pattern)  # (B, K, D, L)
        length = xs.shape[-1]
        dts = torch.matmul(dt_weight, xs)  # (B, K, D, L)
        bc = torch.matmul(bc_weight, xs)  # (B, K, 2N, L)
        ys = selective_scan(
            xs.reshape(batch, K * dim, length),
            dts.reshape(batch, K * dim, length),
            -torch.exp(self.A_logs.float()),
            bc[:, :, :N].contiguous(),  # (B, K, N, L): route k's channels read group k
            bc[:, :, N:].contiguous(),
            D=self.Ds.float(),
            delta_bias=self.dt_projs_bias.float().reshape(-1),
            delta_softplus=True,
            backend=self.scan_backend,
        )
        return cross_merge(ys.view(batch, K, dim, length), self.scan_pattern, (height, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """"v05_noz": (B, C, H, W) -> (B, C, H, W); "v0": (B, H, W, C) -> (B, H, W, C)."""
        if self.channel_first:
            x = self.act(self.conv2d(self.in_proj(x)))
            y = self.out_norm(self.scan(x))
            return self.dropout(self.out_proj(y))
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = self.act(self.conv2d(x.permute(0, 3, 1, 2)))
        y = self.out_norm(self.scan(x).permute(0, 2, 3, 1))
        return self.dropout(self.out_proj(y * self.act(z)))

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, dt_rank={self.dt_rank}, "
            f"forward_type={self.forward_type!r}, scan_pattern={self.scan_pattern!r}"
        )


class ES2D(SS2D):
    """EfficientVMamba's atrous selective scan (ES2D): the gated channel-last ``v0`` form over the
    "atrous" routes (four step-2 sub-grids, zero-padded to even H, W; outputs cropped back).
    Input and output (B, H, W, C). Official defaults: d_state 16, ssm_ratio 2, conv with bias."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        d_conv: int = 3,
        conv_bias: bool = True,
        act_layer: str | type[nn.Module] = "silu",
        dropout: float = 0.0,
        scan_backend: str | None = None,
        **init_kwargs: float | str,
    ) -> None:
        super().__init__(
            d_model, d_state, ssm_ratio, dt_rank, d_conv, conv_bias, act_layer,
            forward_type="v0", scan_pattern="atrous", dropout=dropout, scan_backend=scan_backend, **init_kwargs,
        )
