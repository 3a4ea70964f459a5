"""Multi-route selective-scan blocks: VMamba's ``SS2D``, EfficientVMamba's ``ES2D`` and the 3-D ``SS3D``.

All run one selective scan over the K routes of a scan pattern through the feature map or volume
(``ssm_apps.kernels``: K = ``PATTERNS_2D[pattern]`` for ``spatial_dims=2``, ``PATTERNS_3D[pattern]``
for ``spatial_dims=3``, as MONAI's blocks take ``spatial_dims``), each route with its own x/dt
projections, A, D and dt bias, then sum the routes back onto the map:

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
sub-grids) routes; its sequences are L/4 long. ``SS3D`` is ``SS2D`` with ``spatial_dims=3`` over
(B, C, D, H, W) volumes (channel-last (B, D, H, W, C) for ``"v0"``), default pattern ``"tri6"``.

Parameters keep the official names and shapes (``in_proj, conv2d, x_proj_weight (K, R+2N, D),
dt_projs_weight (K, D, R), dt_projs_bias (K, D), A_logs (K*D, N), Ds (K*D), out_norm, out_proj``),
so the official block's state_dict loads unchanged (``conv2d`` holds the depthwise
``nn.Conv3d`` when ``spatial_dims=3``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..kernels import (
    FUSED_PATTERNS_2D,
    FUSED_PATTERNS_3D,
    PATTERNS_2D,
    PATTERNS_3D,
    cross_merge,
    cross_merge_3d,
    cross_scan,
    cross_scan_3d,
    selective_scan,
    selective_scan_2d,
    selective_scan_3d,
)
from .create_act import get_act_layer
from .norm import LayerNorm2d, Linear2d
from .ssm_branch import init_dt_, resolve_dt_rank

__all__ = ["ES2D", "SS2D", "SS3D", "init_dt_A_D"]

FORWARD_TYPES = ("v05_noz", "v0")
PATTERNS = {2: PATTERNS_2D, 3: PATTERNS_3D}
FUSED_PATTERNS = {2: FUSED_PATTERNS_2D, 3: FUSED_PATTERNS_3D}


def init_dt_A_D(
    module: SS2D,
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
    """VMamba's multi-route selective scan block (2-D maps, or 3-D volumes with ``spatial_dims=3``).

    Args:
        d_model: channels in and out.
        d_state: SSM state size N.
        ssm_ratio: d_inner = int(ssm_ratio * d_model).
        dt_rank: "auto" = ceil(d_model / 16).
        d_conv: depthwise conv kernel (< 2: no conv).
        conv_bias: bias of the depthwise conv.
        act_layer: activation after the conv (and of the gate for "v0"); VMamba's "v0" uses SiLU.
        forward_type: "v05_noz" (channel-first, no gate) or "v0" (channel-last, SiLU(z) gate).
        scan_pattern: a pattern of ``kernels.PATTERNS_2D`` ("cross4" (VMamba), "atrous"
            (EfficientVMamba), "bidi", "omni8") or, for ``spatial_dims=3``, ``PATTERNS_3D`` ("tri6").
        dropout: dropout after out_proj.
        dt_min, dt_max, dt_init, dt_scale, dt_init_floor: dt initialisation (see ``init_dt_A_D``).
        scan_backend: selective-scan backend (None = best available).
        spatial_dims: 2 (maps) or 3 (volumes).

    Raises:
        ValueError: an unknown ``forward_type``, ``spatial_dims`` or ``scan_pattern`` (checked here,
            not at the first forward).
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
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if forward_type not in FORWARD_TYPES:
            raise ValueError(f"{name}: argument 'forward_type' must be one of {FORWARD_TYPES}; got {forward_type!r}")
        if spatial_dims not in PATTERNS:
            raise ValueError(f"{name}: argument 'spatial_dims' must be 2 or 3; got {spatial_dims!r}")
        if scan_pattern not in PATTERNS[spatial_dims]:
            raise ValueError(f"{name}: argument 'scan_pattern' must be one of {tuple(PATTERNS[spatial_dims])} for "
                             f"spatial_dims={spatial_dims}; got {scan_pattern!r}")
        d_inner = int(ssm_ratio * d_model)
        if d_inner < 1 or d_state < 1:
            raise ValueError(f"{name}: need ssm_ratio * d_model >= 1 and d_state >= 1; got {ssm_ratio}, {d_state}")
        self.d_model, self.d_inner, self.d_state = d_model, d_inner, int(d_state)
        self.dt_rank = resolve_dt_rank(d_model, dt_rank)
        self.forward_type, self.scan_pattern, self.scan_backend = forward_type, scan_pattern, scan_backend
        self.spatial_dims, self.num_routes = spatial_dims, PATTERNS[spatial_dims][scan_pattern]
        self.fused = scan_pattern in FUSED_PATTERNS[spatial_dims]
        self.channel_first = forward_type == "v05_noz"
        self.gated = forward_type == "v0"
        Linear = Linear2d if self.channel_first else nn.Linear
        Conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d

        self.in_proj = Linear(d_model, d_inner * (2 if self.gated else 1), bias=False)
        self.act = get_act_layer(act_layer)()
        self.conv2d = (
            Conv(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, bias=conv_bias)
            if d_conv > 1
            else nn.Identity()
        )
        K, R, N = self.num_routes, self.dt_rank, self.d_state
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
        """The K-route selective scan: (B, d_inner, *spatial) -> (B, d_inner, *spatial), routes summed.

        The per-route projections are plain matmuls over the channels. On CUDA, dt goes through the
        product of dt_proj and the dt rows of x_proj (a (K, D, D) matrix; the low-rank pair, batched
        GEMMs of inner size dt_rank, is slower there); on other devices through the low-rank pair
        (x_proj, then dt_proj: 2 K R D multiply-adds per pixel instead of K D^2, which on a CPU is
        what the time follows). B, C come from the remaining x_proj rows.
        Fused patterns ("cross4", "bidi", "omni8", "tri6"): the projections are computed per pixel,
        in spatial order (B, K, ., *spatial) -- the same numbers as projecting the scanned copies --
        and ``selective_scan_2d`` / ``_3d`` read every route straight from x; off CUDA they get the
        dt rows of x_proj with ``delta_proj_weight=dt_projs_weight`` (the numba kernel expands them
        step by step). "atrous" runs the unfused chain cross_scan -> projections -> selective_scan ->
        cross_merge.
        """
        batch, dim, *sizes = x.shape
        nd = len(sizes)
        K, N = self.num_routes, self.d_state
        A, D, delta_bias = -torch.exp(self.A_logs.float()), self.Ds.float(), self.dt_projs_bias.float().reshape(-1)
        if self.fused:
            if x.device.type == "cuda":
                x_flat = x.reshape(batch, dim, -1)
                # dt as (B, pixels, K*D) memory: the fused kernels read consecutive channels of a pixel
                # (no layout copy); the same GEMM as W @ x with transposed operands
                dts = torch.matmul(x_flat.transpose(1, 2), self._dt_weight(x.dtype).reshape(K * dim, dim).t())
                dts = dts.view(batch, *sizes, K, dim).permute(0, nd + 1, nd + 2, *range(1, nd + 1))
                bc = torch.matmul(self._bc_weight(x.dtype).reshape(K * 2 * N, dim), x_flat)
                dt_weight = None
            else:
                dts, bc = self._x_proj(x.reshape(batch, 1, dim, -1))
                dts, dt_weight = dts.reshape(batch, K, self.dt_rank, *sizes), self.dt_projs_weight.to(x.dtype)
            fused = selective_scan_2d if nd == 2 else selective_scan_3d
            bc = bc.reshape(batch, K, 2 * N, *sizes)
            return fused(
                x, dts, A,
                bc[:, :, :N], bc[:, :, N:],  # B, C: (B, K, N, *spatial) per pixel
                D=D, delta_bias=delta_bias, delta_softplus=True, pattern=self.scan_pattern,
                backend=self.scan_backend, delta_proj_weight=dt_weight,
            )
        xs = (cross_scan if nd == 2 else cross_scan_3d)(x, self.scan_pattern)  # (B, K, D, L)
        length = xs.shape[-1]
        dts, bc = self._project(xs)
        ys = selective_scan(
            xs.reshape(batch, K * dim, length),
            dts.reshape(batch, K * dim, length),
            A,
            bc[:, :, :N].contiguous(),  # (B, K, N, L): route k's channels read group k
            bc[:, :, N:].contiguous(),
            D=D, delta_bias=delta_bias, delta_softplus=True, backend=self.scan_backend,
        )
        merge = cross_merge if nd == 2 else cross_merge_3d
        return merge(ys.view(batch, K, dim, length), self.scan_pattern, tuple(sizes))

    def _dt_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """dt_proj times the dt rows of x_proj: (K, D, D)."""
        return torch.bmm(self.dt_projs_weight, self.x_proj_weight[:, : self.dt_rank]).to(dtype)

    def _bc_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """The B rows, then the C rows of x_proj: (K, 2N, D)."""
        return self.x_proj_weight[:, self.dt_rank:].to(dtype)

    def _x_proj(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x_proj of every route: xs (B, K or 1, D, L) -> its dt rows (B, K, R, L) and B, C (B, K, 2N, L)."""
        K, rows, dim = self.x_proj_weight.shape
        if xs.shape[1] == 1:  # one GEMM for every route (matmul would copy x once per route to broadcast it)
            x_dbl = torch.matmul(self.x_proj_weight.to(xs.dtype).view(K * rows, dim), xs[:, 0]).unflatten(1, (K, rows))
        else:
            x_dbl = torch.matmul(self.x_proj_weight.to(xs.dtype), xs)  # (B, K, R + 2N, L)
        return x_dbl[:, :, : self.dt_rank], x_dbl[:, :, self.dt_rank:]

    def _project(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Step sizes and B, C of every route: xs (B, K, D, L) -> dts (B, K, D, L), bc (B, K, 2N, L)."""
        if xs.device.type == "cuda":
            return torch.matmul(self._dt_weight(xs.dtype), xs), torch.matmul(self._bc_weight(xs.dtype), xs)
        dt_rows, bc = self._x_proj(xs)
        return torch.matmul(self.dt_projs_weight.to(xs.dtype), dt_rows), bc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """"v05_noz": (B, C, *spatial) -> (B, C, *spatial); "v0": (B, *spatial, C) -> (B, *spatial, C)."""
        if x.dim() != self.spatial_dims + 2:
            layout = "(B, C, *spatial)" if self.channel_first else "(B, *spatial, C)"
            raise ValueError(f"{type(self).__name__}: input must be {layout} with {self.spatial_dims} spatial "
                             f"dims; got {tuple(x.shape)}")
        if self.channel_first:
            x = self.act(self.conv2d(self.in_proj(x)))
            y = self.out_norm(self.scan(x))
            return self.dropout(self.out_proj(y))
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = self.act(self.conv2d(x.movedim(-1, 1)))
        y = self.out_norm(self.scan(x).movedim(1, -1))
        return self.dropout(self.out_proj(y * self.act(z)))

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, dt_rank={self.dt_rank}, "
            f"forward_type={self.forward_type!r}, scan_pattern={self.scan_pattern!r}, "
            f"spatial_dims={self.spatial_dims}"
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


class SS3D(SS2D):
    """``SS2D`` over volumes: ``spatial_dims=3`` and the "tri6" pattern by default.
    "v05_noz": (B, C, D, H, W) in and out; "v0": (B, D, H, W, C). Arguments as ``SS2D``."""

    def __init__(self, d_model: int, scan_pattern: str = "tri6", **kwargs: object) -> None:
        super().__init__(d_model, scan_pattern=scan_pattern, spatial_dims=3, **kwargs)
