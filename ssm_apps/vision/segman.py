"""SegMAN (Fu et al., CVPR 2025): the LASS encoder and the MMSCopE decoder, for timm and segmentation.

Encoder (``SegMANEncoder``), top to bottom:

* blocks (``SegMANBlock``): x + cpe1(x); x + LS1(LASS(norm1(x))); x + cpe2(x); x + LS2(FFN(norm2(x)))
  with 3x3 depthwise CPEs, channel LayerNorms (eps 1e-6), optional per-channel LayerScale (B/L).
* LASS token mixer (``LASSMixer``): a 1x1 qkv conv; q, k rotated by 2-D RoPE (q scaled by
  head_dim^-0.5 first); neighbourhood attention with relative position bias (NATTEN 0.17 semantics,
  ``ssm_apps.layers.neighborhood_attention``); then, in stages 1-3,
  ``y = LN(SSM(SiLU(BN(dwconv3x3(y))))) + y`` with ``CrossScanSSM`` (d_state 1, four cross routes,
  no in/out projections or gate); in stage 4 a global attention over all tokens with a learned
  pairwise bias (bicubically resized when the token count differs from the one it was built for)
  whose values are the NA output. Finally + LePE (5x5 depthwise conv of v) and a 1x1 projection.
* FFN: 1x1 conv -> GELU -> (+ 3x3 depthwise conv) -> 1x1 conv.
* stem: four 3x3 convs with BatchNorm (GELU between), stride 4; downsample: conv3x3/2 + BN.
* head: conv1x1 -> BN -> SiLU -> global average pool -> conv1x1 (the official classifier).

Decoder (``SegMANDecoder``, MMSCopE): SegFormer-style linear projections of the stride 8/16/32 maps
fused at stride 8; a multi-scale branch (the stride-8 map, a 3x3/2 and a 5x5/4 conv of it,
pixel-unshuffled to stride 32 and concatenated) through one cross-scan SSM block over the whole
grid; a global-pool branch; logits at stride 8.

Official checkpoints (``yunxiangfu2001/SegMAN``: ImageNet ``models/segman_encoder.py:SegMANEncoder``
and the mmseg segmentor ``backbone.*`` / ``decode_head.*``) load through
``convert_segman_encoder_checkpoint`` / ``convert_segman_checkpoint``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import FeatureGetterNet, feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..convert import (
    ConvertedStateDict,
    apply_rules,
    finish_conversion,
    unwrap_checkpoint,
)
from ..kernels import selective_scan_2d
from ..layers.neighborhood_attention import NA_BACKENDS, neighborhood_attention_2d
from ..layers.ss2d import LayerNorm2d
from ..layers.ssm_branch import init_dt_, resolve_dt_rank
from .segmentation_heads import ConvBNReLU
from .staged import check_image_input

__all__ = [
    "CrossScanSSM",
    "LASSMixer",
    "SegMAN",
    "SegMANBlock",
    "SegMANDecoder",
    "SegMANEncoder",
    "SegMANStage",
    "convert_segman_checkpoint",
    "convert_segman_encoder_checkpoint",
]

NORM_EPS = 1e-6
NUM_ROUTES = 4


# ----------------------------------------------------------------------------- pieces
class CrossScanSSM(nn.Module):
    """The bare four-route cross selective scan of SegMAN (its ``VSSM``): (B, C, H, W) -> (B, C, H, W).

    Per route k (row-major, column-major and their reverses, ``kernels.scan_patterns`` "cross4"):
    dt, B, C = x_proj_k(x) (rank R = ceil(C / 16), state N); dt = dt_proj_k(dt); a selective scan with
    softplus(dt + bias), A = -exp(A_logs), D skip; the four outputs summed back onto the map.
    No input/output projection, no gate, no norm (callers add their own).

    Args:
        dim: channels C.
        d_state: state size N (SegMAN: 1).
        dt_rank: "auto" = ceil(dim / 16).
        scan_backend: selective-scan backend (None = best available).
    """

    def __init__(self, dim: int, d_state: int = 1, dt_rank: int | str = "auto", scan_backend: str | None = None):
        super().__init__()
        K, N, R = NUM_ROUTES, int(d_state), resolve_dt_rank(dim, dt_rank)
        self.dim, self.d_state, self.dt_rank, self.scan_backend = dim, N, R, scan_backend
        self.x_proj_weight = nn.Parameter(torch.empty(K, R + 2 * N, dim))
        self.dt_projs_weight = nn.Parameter(torch.empty(K, dim, R))
        self.dt_projs_bias = nn.Parameter(torch.empty(K, dim))
        self.A_logs = nn.Parameter(torch.empty(K * dim, N))
        self.Ds = nn.Parameter(torch.empty(K * dim))
        self.A_logs._no_weight_decay = True  # type: ignore[attr-defined]
        self.Ds._no_weight_decay = True  # type: ignore[attr-defined]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official init: x_proj as nn.Linear (U(+-1/sqrt(C))), Mamba's dt init, A = -[1..N], D = 1."""
        init_dt_(self.dt_projs_weight, self.dt_projs_bias)
        with torch.no_grad():
            bound = 1.0 / math.sqrt(self.dim)
            self.x_proj_weight.uniform_(-bound, bound)
            n = self.A_logs.shape[1]
            self.A_logs.copy_(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).expand_as(self.A_logs))
            self.Ds.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        K, R, N = NUM_ROUTES, self.dt_rank, self.d_state
        dt_weight = torch.bmm(self.dt_projs_weight, self.x_proj_weight[:, :R]).to(x.dtype)  # (K, C, C)
        bc_weight = self.x_proj_weight[:, R:].to(x.dtype)  # (K, 2N, C)
        flat = x.reshape(b, c, h * w)
        # .to(x.dtype): under autocast the matmuls may return another dtype than x
        dts = torch.matmul(dt_weight.reshape(K * c, c), flat).view(b, K, c, h, w).to(x.dtype)
        bc = torch.matmul(bc_weight.reshape(K * 2 * N, c), flat).view(b, K, 2 * N, h, w).to(x.dtype)
        return selective_scan_2d(
            x, dts, -torch.exp(self.A_logs.float()), bc[:, :, :N].contiguous(), bc[:, :, N:].contiguous(),
            D=self.Ds.float(), delta_bias=self.dt_projs_bias.float().reshape(-1), delta_softplus=True,
            pattern="cross4", backend=self.scan_backend,
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, d_state={self.d_state}, dt_rank={self.dt_rank}"


class RoPE2d(nn.Module):
    """SegMAN's 2-D rotary embedding: head_dim / 4 frequencies 10000^-linspace(0, 1), each used twice;
    the first half of the channels rotates with the row index, the second half with the column index."""

    def __init__(self, head_dim: int):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"RoPE2d: head_dim must be a multiple of 4; got {head_dim}")
        angle = 1.0 / (10000 ** torch.linspace(0, 1, head_dim // 4))
        self.register_buffer("angle", angle.repeat_interleave(2), persistent=False)

    def forward(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sin, cos), each (H, W, head_dim)."""
        rows = torch.arange(height, device=self.angle.device, dtype=self.angle.dtype)[:, None] * self.angle
        cols = torch.arange(width, device=self.angle.device, dtype=self.angle.dtype)[:, None] * self.angle
        half = self.angle.numel()
        theta = torch.cat([rows[:, None, :].expand(height, width, half),
                           cols[None, :, :].expand(height, width, half)], -1)
        return theta.sin(), theta.cos()


def rotate(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """x * cos + rot(x) * sin with rot(..., x0, x1, ...) = (..., -x1, x0, ...) over channel pairs."""
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return x * cos + rotated * sin


class LayerScale2d(nn.Module):
    """Per-channel scale and bias of a (B, C, H, W) map (official ``LayerScale``: a depthwise 1x1 conv)."""

    def __init__(self, dim: int, init_value: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.full((dim, 1, 1, 1), float(init_value)))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1).to(x.dtype) + self.bias.view(1, -1, 1, 1).to(x.dtype)


class ConvFFN(nn.Module):
    """fc1 (1x1) -> GELU -> x + dwconv3x3(x) -> fc2 (1x1)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(x))
        x = self.drop(x + self.dwconv(x))
        return self.drop(self.fc2(x))


class LASSMixer(nn.Module):
    """SegMAN's LASS token mixer (see the module docstring). (B, C, H, W) -> (B, C, H, W).

    Args:
        dim: channels C.
        num_heads: attention heads (head_dim = C / heads, a multiple of 4 for the RoPE).
        kernel_size: neighbourhood-attention window (odd).
        global_mode: stage-4 mode (global attention with a pairwise bias instead of the SSM branch).
        grid_size: (h, w) token grid the global bias is built for (image_size / 32).
        use_rpb: relative position bias tables.
        na_backend: "auto" (the fused Triton NA on CUDA, else the PyTorch gathers), "torch", "flex" or
            "triton" (``neighborhood_attention_2d``).
        scan_backend: selective-scan backend.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        kernel_size: int,
        global_mode: bool = False,
        grid_size: tuple[int, int] = (7, 7),
        use_rpb: bool = True,
        na_backend: str = "auto",
        scan_backend: str | None = None,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"LASSMixer: dim {dim} must be divisible by num_heads {num_heads}")
        if na_backend not in NA_BACKENDS:
            raise ValueError(f"LASSMixer: na_backend must be one of {NA_BACKENDS}; got {na_backend!r}")
        self.dim, self.num_heads, self.kernel_size = dim, num_heads, int(kernel_size)
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.global_mode, self.na_backend = global_mode, na_backend
        self.qkv = nn.Conv2d(dim, dim * 3, 1)
        self.lepe = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.proj = nn.Conv2d(dim, dim, 1)
        if not global_mode:
            self.dwconv = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.BatchNorm2d(dim))
            self.ssm = CrossScanSSM(dim, d_state=1, scan_backend=scan_backend)
            self.norm = LayerNorm2d(dim, eps=NORM_EPS)
        k = self.kernel_size
        self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * k - 1, 2 * k - 1)) if use_rpb else None
        tokens = grid_size[0] * grid_size[1]
        self.global_rpb = nn.Parameter(torch.zeros(num_heads, tokens, tokens)) if use_rpb and global_mode else None
        nn.init.xavier_normal_(self.qkv.weight, gain=2**-2.5)
        nn.init.zeros_(self.qkv.bias)
        nn.init.xavier_normal_(self.proj.weight, gain=2**-2.5)
        nn.init.zeros_(self.proj.bias)

    def _global_bias(self, tokens: int, dtype: torch.dtype) -> torch.Tensor | None:
        if self.global_rpb is None:
            return None
        bias = self.global_rpb
        if bias.shape[-1] != tokens:
            bias = F.interpolate(bias.unsqueeze(0), size=(tokens, tokens), mode="bicubic", align_corners=False)[0]
        return bias.to(dtype)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(x)
        lepe = self.lepe(qkv[:, -c:])
        # (b, 3 * heads * d, h, w) -> 3 x (b, heads, h, w, d)
        q, k, v = qkv.view(b, 3, self.num_heads, self.head_dim, h, w).permute(1, 0, 2, 4, 5, 3).unbind(0)
        sin, cos = (t.to(x.dtype) for t in rope)
        q = rotate(q, sin, cos) * self.scale
        k = rotate(k, sin, cos)
        y = neighborhood_attention_2d(q, k, v, self.kernel_size, self.rpb, backend=self.na_backend)
        if self.global_mode:
            tokens = h * w
            out = F.scaled_dot_product_attention(
                q.reshape(b, self.num_heads, tokens, self.head_dim),
                k.reshape(b, self.num_heads, tokens, self.head_dim),
                y.reshape(b, self.num_heads, tokens, self.head_dim),
                attn_mask=self._global_bias(tokens, q.dtype),
                scale=1.0,
            )  # (b, heads, L, d)
            y = out.transpose(-1, -2).reshape(b, c, h, w)
        else:
            y = y.permute(0, 1, 4, 2, 3).reshape(b, c, h, w)
            y = self.norm(self.ssm(F.silu(self.dwconv(y)))) + y
        return self.proj(y + lepe)


class SegMANBlock(nn.Module):
    """CPE -> LN -> LASS (+ LayerScale, DropPath) -> CPE -> LN -> FFN (+ LayerScale, DropPath)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        kernel_size: int,
        mlp_ratio: float,
        global_mode: bool = False,
        grid_size: tuple[int, int] = (7, 7),
        use_rpb: bool = True,
        layerscale: bool = False,
        layer_init_value: float = 1e-6,
        drop_path: float = 0.0,
        na_backend: str = "auto",
        scan_backend: str | None = None,
    ):
        super().__init__()
        self.cpe1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = LayerNorm2d(dim, eps=NORM_EPS)
        self.token_mixer = LASSMixer(dim, num_heads, kernel_size, global_mode, grid_size, use_rpb, na_backend,
                                     scan_backend)
        self.cpe2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm2 = LayerNorm2d(dim, eps=NORM_EPS)
        self.mlp = ConvFFN(dim, int(mlp_ratio * dim))
        self.layer_scale1 = LayerScale2d(dim, layer_init_value) if layerscale else nn.Identity()
        self.layer_scale2 = LayerScale2d(dim, layer_init_value) if layerscale else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.cpe1(x)
        x = x + self.drop_path(self.layer_scale1(self.token_mixer(self.norm1(x), rope)))
        x = x + self.cpe2(x)
        return x + self.drop_path(self.layer_scale2(self.mlp(self.norm2(x))))


class SegMANStage(nn.Module):
    """Optional downsample (conv3x3/2 + BN) of the previous stage's map, then ``depth`` blocks sharing one RoPE."""

    def __init__(self, in_dim: int, dim: int, depth: int, num_heads: int, drop_path: Sequence[float],
                 downsample: bool, **block_kwargs: Any):
        super().__init__()
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_dim, dim, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(dim))
            if downsample else nn.Identity()
        )
        self.rope = RoPE2d(dim // num_heads)
        self.blocks = nn.ModuleList(
            [SegMANBlock(dim, num_heads, drop_path=drop_path[j], **block_kwargs) for j in range(depth)]
        )
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        rope = self.rope(x.shape[-2], x.shape[-1])
        for blk in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
                x = checkpoint(blk, x, rope, use_reentrant=False)
            else:
                x = blk(x, rope)
        return x


def _stem(in_chans: int, dim: int) -> nn.Sequential:
    half = dim // 2
    return nn.Sequential(
        nn.Conv2d(in_chans, half, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(half), nn.GELU(),
        nn.Conv2d(half, half, 3, padding=1, bias=False), nn.BatchNorm2d(half), nn.GELU(),
        nn.Conv2d(half, dim, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(dim), nn.GELU(),
        nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim),
    )


class SegMANHead(nn.Module):
    """The official classifier: conv1x1 (C -> projection) -> BN -> SiLU -> avg pool -> conv1x1 (-> classes)."""

    def __init__(self, in_dim: int, projection: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.proj = nn.Conv2d(in_dim, projection, 1)
        self.norm = nn.BatchNorm2d(projection)
        self.act = nn.SiLU()
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Conv2d(projection, num_classes, 1) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.act(self.norm(self.proj(x))).mean((2, 3), keepdim=True)
        if pre_logits:
            return x.flatten(1)
        return self.fc(self.drop(x)).flatten(1)


# ----------------------------------------------------------------------------- encoder
class SegMANEncoder(nn.Module):
    """SegMAN encoder: an image classifier and (``features_only``) a 4-stage segmentation backbone.

    Args:
        in_chans: input channels.
        num_classes: classifier outputs (0: no classifier conv).
        embed_dims: stage widths.
        depths: blocks per stage.
        num_heads: heads per stage.
        kernel_sizes: neighbourhood-attention window per stage (odd).
        mlp_ratios: FFN expansion per stage.
        layerscales: LayerScale per stage (B/L).
        layer_init_value: initial LayerScale.
        use_rpb: relative position bias tables (the released models use them).
        img_size: the image size the stage-4 global bias is built for (its grid is img_size / 32).
        projection: width of the classifier's conv projection (official 1024).
        drop_rate: dropout before the classifier conv.
        drop_path_rate: stochastic depth, linear over all blocks.
        na_backend: "auto" (the fused Triton NA on CUDA, else the PyTorch gathers),
            "torch", "flex" or "triton".
        scan_backend: selective-scan backend (None = best available).

    ``forward_features`` returns the stage-4 map (B, C4, H/32, W/32) (no final norm, as the
    official model); ``forward`` the logits (B, num_classes). Inputs need H, W multiples of 32 for
    the decoder and stage maps at least the stage's kernel size (e.g. >= 224 for SegMAN-T/S/B/L).
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: Sequence[int] = (32, 64, 144, 192),
        depths: Sequence[int] = (2, 2, 4, 2),
        num_heads: Sequence[int] = (1, 2, 4, 8),
        kernel_sizes: Sequence[int] = (11, 9, 9, 7),
        mlp_ratios: Sequence[float] = (4, 4, 3, 3),
        layerscales: Sequence[bool] = (False, False, False, False),
        layer_init_value: float = 1e-6,
        use_rpb: bool = True,
        img_size: int | tuple[int, int] = 224,
        projection: int = 1024,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        na_backend: str = "auto",
        scan_backend: str | None = None,
    ):
        super().__init__()
        lists = {"embed_dims": embed_dims, "num_heads": num_heads, "kernel_sizes": kernel_sizes,
                 "mlp_ratios": mlp_ratios, "layerscales": layerscales}
        for name, value in lists.items():
            if len(value) != len(depths):
                raise ValueError(
                    f"SegMANEncoder: '{name}' needs {len(depths)} entries (one per stage); got {list(value)}")
        img = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.in_chans, self.num_classes = in_chans, num_classes
        self.embed_dims, self.depths, self.kernel_sizes = [int(d) for d in embed_dims], list(depths), list(kernel_sizes)
        self.num_features = self.embed_dims[-1]
        self.head_hidden_size = projection
        self.drop_rate = drop_rate
        n = len(depths)
        self.stem = _stem(in_chans, self.embed_dims[0])
        total = sum(depths)
        dpr = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # linspace(0, rate, total)
        stages = []
        for i in range(n):
            stages.append(SegMANStage(
                self.embed_dims[max(i - 1, 0)], self.embed_dims[i], depths[i], num_heads[i],
                dpr[sum(depths[:i]):sum(depths[: i + 1])], downsample=i > 0,
                kernel_size=kernel_sizes[i], mlp_ratio=mlp_ratios[i], global_mode=i == n - 1,
                grid_size=(img[0] // 2 ** (i + 2), img[1] // 2 ** (i + 2)), use_rpb=use_rpb,
                layerscale=layerscales[i], layer_init_value=layer_init_value, na_backend=na_backend,
                scan_backend=scan_backend,
            ))
        self.stages = nn.Sequential(*stages)
        self.feature_info = [
            {"num_chs": self.embed_dims[i], "reduction": 4 * 2**i, "module": f"stages.{i}"} for i in range(n)
        ]
        self.head = SegMANHead(self.num_features, projection, num_classes, drop_rate)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """Official: conv/linear trunc-normal(0.02) with zero bias, norms (1, 0); qkv/proj re-initialised
        by the mixer afterwards is not repeated here (the official order applies the global init last)."""
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # --- timm API
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return {"stem": r"^stem", "blocks": r"^stages\.(\d+)" if coarse else [
            (r"^stages\.(\d+)\.downsample", (0,)),
            (r"^stages\.(\d+)\.blocks\.(\d+)", None),
        ]}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.fc = nn.Conv2d(self.head_hidden_size, num_classes, 1) if num_classes > 0 else nn.Identity()

    def _check_input(self, x: torch.Tensor) -> None:
        check_image_input("SegMANEncoder", x, self.in_chans)
        for i, k in enumerate(self.kernel_sizes[: len(self.stages)]):
            stride = 4 * 2**i
            side = min(math.ceil(x.shape[-2] / stride), math.ceil(x.shape[-1] / stride))
            if side < k:
                raise ValueError(
                    f"SegMANEncoder: input {tuple(x.shape[-2:])} gives a stage-{i + 1} map smaller than its "
                    f"attention window {k} (need H, W >= {k * stride})"
                )

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (before the next downsample), strides 4, 8, 16, 32 (``norm`` has no effect:
        the model has no final norm)."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"forward_intermediates: output_fmt must be 'NCHW' or 'NHWC'; got {output_fmt!r}")
        self._check_input(x)
        take, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stages[: max_index + 1] if stop_early else self.stages
        x = self.stem(x)
        out = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take:
                out.append(x.permute(0, 2, 3, 1) if output_fmt == "NHWC" else x)
        return out if intermediates_only else (x, out)

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[: max_index + 1]
        if prune_head or max_index < len(self.embed_dims) - 1:
            self.head = nn.Identity()  # type: ignore[assignment]
            self.num_classes = 0
        return take

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # --- official checkpoints
    @classmethod
    def from_official(
        cls,
        official_kwargs: Mapping[str, Any],
        official_state_dict: Mapping[str, Any] | None = None,
        features_only: bool = False,
        **overrides: Any,
    ) -> nn.Module:
        """Build from the official ``SegMANEncoder(**kwargs)`` arguments (ImageNet ``models/`` or mmseg
        backbone versions) and load an official state dict or checkpoint (strict, through
        ``convert_segman_encoder_checkpoint``; a segmentor checkpoint's ``backbone.*`` is taken).

        features_only=False: the classifier, ``model(x)`` -> (B, num_classes) logits.
        features_only=True: timm's ``FeatureGetterNet`` returning the 4 stage maps; classifier keys ignored.
        ``overrides`` go to our constructor (e.g. ``na_backend``, ``scan_backend``).
        """
        ours = segman_encoder_kwargs_from_official(official_kwargs)
        ours.update(overrides)
        use_checkpoint = ours.pop("use_checkpoint")
        model = cls(**ours)
        if features_only:
            model.prune_intermediate_layers((0, 1, 2, 3), prune_head=True)
        if official_state_dict is not None:
            model.load_state_dict(convert_segman_encoder_checkpoint(official_state_dict, model), strict=True)
        model.set_grad_checkpointing(use_checkpoint)
        return FeatureGetterNet(model, out_indices=(0, 1, 2, 3), prune=False) if features_only else model


# ----------------------------------------------------------------------------- official kwargs / keys
_OFFICIAL_IGNORED = ("pretrained", "pretrain_path", "pretrained_cfg", "style", "sr_ratio", "type")


def segman_encoder_kwargs_from_official(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Official ``SegMANEncoder`` constructor arguments -> ours. Ignored (no effect on the maths):
    pretrained / pretrain_path, sr_ratio (stored, never used by the official code), style; fused_na
    (the fused NATTEN kernel computes the same attention without rpb; only False is supported);
    use_checkpoint (a per-stage block count) becomes grad checkpointing when any is non-zero."""
    k = dict(kwargs)
    for name in _OFFICIAL_IGNORED:
        k.pop(name, None)
    if k.pop("fused_na", False):
        raise NotImplementedError("SegMANEncoder.from_official: fused_na=True (released configs use False)")
    if k.pop("ssm_split", False):
        raise NotImplementedError("SegMANEncoder.from_official: ssm_split=True")
    if float(k.pop("ssm_ratio", 1.0)) != 1.0:
        raise NotImplementedError("SegMANEncoder.from_official: ssm_ratio != 1")
    dilation = list(k.pop("window_dilation", [1, 1, 1, 1]))
    if any(d != 1 for d in dilation):
        raise NotImplementedError(f"SegMANEncoder.from_official: window_dilation {dilation} (only 1)")
    norm = k.pop("norm_layer", None)
    if norm is not None and getattr(norm, "__name__", str(norm)) != "LayerNorm2d":
        raise NotImplementedError(f"SegMANEncoder.from_official: norm_layer {norm!r}")
    kernels = [int(w) for w in k.pop("window_size", [7, 7, 7, 7])]
    ours = {
        "in_chans": k.pop("in_chans", 3),
        "num_classes": k.pop("num_classes", 1000),
        "embed_dims": list(k.pop("embed_dims", [64, 128, 256, 512])),
        "depths": list(k.pop("depths", [2, 2, 6, 2])),
        "num_heads": list(k.pop("num_heads", [2, 4, 8, 16])),
        "kernel_sizes": [w if w % 2 else w + 1 for w in kernels],  # official ``toodd``
        "mlp_ratios": list(k.pop("mlp_ratios", [4, 4, 4, 4])),
        "layerscales": [bool(b) for b in k.pop("layerscales", [False] * 4)],
        "layer_init_value": float(k.pop("layer_init_values", 1e-6)),
        "use_rpb": bool(k.pop("use_rpb", False)),
        "img_size": k.pop("image_size", 224),
        "projection": int(k.pop("projection", 1024)),
        "drop_rate": float(k.pop("drop_rate", 0.0)),
        "drop_path_rate": float(k.pop("drop_path_rate", 0.0)),
        "use_checkpoint": any(int(c) for c in k.pop("use_checkpoint", [0, 0, 0, 0])),
    }
    if k:
        raise NotImplementedError(f"SegMANEncoder.from_official: unsupported official kwargs {sorted(k)}")
    return ours


def _reshape_x_proj(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official ``x_proj_weight`` (K * (R + 2N), C, 1) -> ours (K, R + 2N, C)."""
    out = {}
    for key, v in sd.items():
        if key.endswith("x_proj_weight") and v.dim() == 3 and v.shape[-1] == 1:
            v = v.view(NUM_ROUTES, -1, v.shape[1])
        out[key] = v
    return out


def _encoder_rules(prefix: str = "") -> list:
    p = prefix.replace(".", r"\.")
    return [
        (rf"^{p}patch_embed\.", f"{prefix}stem."),
        (rf"^{p}layers\.\d+\.rope\.angle$", None),  # a constant buffer, recomputed
        (rf"^{p}layers\.(\d+)\.blocks\.(\d+)\.token_mixer\.rpb\.([01])$",
         lambda m: f"{prefix}stages.{int(m.group(1)) // 2}.blocks.{m.group(2)}.token_mixer."
                   + ("rpb" if m.group(3) == "0" else "global_rpb")),
        (rf"^{p}layers\.(\d+)\.blocks\.", lambda m: f"{prefix}stages.{int(m.group(1)) // 2}.blocks."),
        (rf"^{p}layers\.(\d+)\.([01])\.",
         lambda m: f"{prefix}stages.{(int(m.group(1)) + 1) // 2}.downsample.{m.group(2)}."),
        (rf"^{p}classifier\.0\.", f"{prefix}head.proj."),
        (rf"^{p}classifier\.1\.", f"{prefix}head.norm."),
        (rf"^{p}classifier\.4\.", f"{prefix}head.fc."),
    ]


def _finish_rules(rules: list, sd: Mapping[str, torch.Tensor]) -> list:
    """Callable rules return the new key prefix; append the rest of the official key."""
    fixed = []
    for pattern, repl in rules:
        if callable(repl):
            def full(m, fn=repl):
                return fn(m) + m.string[m.end():]
            fixed.append((pattern, full))
        else:
            fixed.append((pattern, repl))
    return fixed


def convert_segman_encoder_checkpoint(checkpoint: Mapping[str, Any], model: nn.Module) -> ConvertedStateDict:
    """Official SegMAN encoder state dict (ImageNet, or a segmentor's ``backbone.*``) -> ``SegMANEncoder`` keys.

    Rules (official -> ours): ``patch_embed.i`` -> ``stem.i``; ``layers.{2i}.blocks.j`` ->
    ``stages.i.blocks.j`` (block internals keep their names) with ``token_mixer.rpb.0`` -> ``.rpb`` and
    ``token_mixer.rpb.1`` -> ``.global_rpb``; ``layers.{2i+1}.{0,1}`` -> ``stages.{i+1}.downsample.{0,1}``;
    ``classifier.{0,1,4}`` -> ``head.{proj,norm,fc}``; ``layers.*.rope.angle`` dropped (a constant);
    ``x_proj_weight`` (K(R+2N), C, 1) reshaped to (K, R+2N, C). The classifier is ignored when the
    model has none (features_only / pruned); a checkpoint without one fills a fresh classifier.
    """
    sd = unwrap_checkpoint(checkpoint)
    if any(k.startswith("backbone.") for k in sd):
        sd = unwrap_checkpoint(sd, prefix="backbone.")
    sd = _reshape_x_proj(sd)
    mapped, unmatched, origins, dropped = apply_rules(sd, _finish_rules(_encoder_rules(), sd))
    return finish_conversion(mapped, model, "SegMANEncoder", unmatched, origins, ignore=[r"^head\."],
                             fill_missing=[r"^head\."], dropped=dropped)


# ----------------------------------------------------------------------------- decoder
class SegFormerMLP(nn.Module):
    """Per-pixel Linear projection of a (B, C, H, W) map (official ``MLP``, SegFormer's linear embedding)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.proj.weight[:, :, None, None], self.proj.bias)


class CrossScanBlock(nn.Module):
    """The decoder's SSM block (official ``VSSMBlock``): CPE, LN -> CrossScanSSM, CPE, LN -> FFN (x4)."""

    def __init__(self, dim: int, scan_backend: str | None = None):
        super().__init__()
        self.norm1 = LayerNorm2d(dim, eps=NORM_EPS)
        self.cpe1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.token_mixer = CrossScanSSM(dim, d_state=1, scan_backend=scan_backend)
        self.norm2 = LayerNorm2d(dim, eps=NORM_EPS)
        self.cpe2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.mlp = ConvFFN(dim, dim * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.cpe1(x)
        x = x + self.token_mixer(self.norm1(x))
        x = x + self.cpe2(x)
        return x + self.mlp(self.norm2(x))


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class SegMANDecoder(nn.Module):
    """SegMAN's MMSCopE decoder: the four encoder maps (strides 4-32) -> logits (B, classes, H/8, W/8).

    Args:
        in_channels: channels of the four encoder maps (the first is not used, as officially).
        channels: decoder width E.
        feat_proj_dim: width P of the SegFormer-style projections.
        num_classes: output classes.
        dropout_ratio: Dropout2d before the classifier.
        scan_backend: selective-scan backend.

    Stride-8 map H/8, W/8 must be multiples of 4 (input multiples of 32).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int = 128,
        feat_proj_dim: int = 192,
        num_classes: int = 150,
        dropout_ratio: float = 0.1,
        scan_backend: str | None = None,
    ):
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"SegMANDecoder: in_channels must list the 4 encoder widths; got {list(in_channels)}")
        e, p = int(channels), int(feat_proj_dim)
        self.in_channels, self.channels, self.num_classes = list(in_channels), e, num_classes
        self.conv_downsample_2 = ConvBNReLU(e, e * 2, 3, stride=2, padding=1)
        self.conv_downsample_4 = ConvBNReLU(e, e * 4, 5, stride=4, padding=1)
        self.linear_c4 = SegFormerMLP(in_channels[3], p)
        self.linear_c3 = SegFormerMLP(in_channels[2], p)
        self.linear_c2 = SegFormerMLP(in_channels[1], p)
        self.linear_fuse = ConvBNReLU(p * 3, e, 1)
        self.reduce_channels = nn.ModuleList([ConvBNReLU(e * 4 * 2**i, e, 1) for i in range(3)])
        self.vssm = CrossScanBlock(e * 3, scan_backend=scan_backend)
        self.short_path = ConvBNReLU(e, e, 1)
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNReLU(e, e, 1))
        self.proj_out = ConvBNReLU(e * 3, p, 1)
        self.cat = ConvBNReLU(e * 5 + p * 3, e, 1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(e, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, 0, 0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != 4:
            raise ValueError(f"SegMANDecoder: expected the 4 encoder maps; got {len(features)}")
        _, c2, c3, c4 = features
        size = c2.shape[-2:]
        if size[0] % 4 or size[1] % 4:
            raise ValueError(f"SegMANDecoder: the stride-8 map {tuple(size)} must have sides divisible by 4 "
                             "(input sides multiples of 32)")
        p4 = _resize(self.linear_c4(c4), size)
        p3 = _resize(self.linear_c3(c3), size)
        p2 = self.linear_c2(c2)
        x = self.linear_fuse(torch.cat([p4, p3, p2], dim=1))
        pooled = _resize(self.image_pool(x), size)
        multi = torch.cat([
            self.reduce_channels[2](F.pixel_unshuffle(x, 4)),
            self.reduce_channels[1](F.pixel_unshuffle(self.conv_downsample_2(x), 2)),
            self.reduce_channels[0](self.conv_downsample_4(x)),
        ], dim=1)
        ctx = _resize(self.vssm(multi), size)
        ctx_p = self.proj_out(ctx)
        x = self.cat(torch.cat([self.short_path(x), pooled, ctx, p2 + ctx_p, p3 + ctx_p, p4 + ctx_p], dim=1))
        return self.conv_seg(self.dropout(x))


_DECODER_IGNORED = ("in_index", "norm_cfg", "align_corners", "loss_decode", "type", "act_cfg", "conv_cfg",
                    "image_size", "interpolate_mode", "use_rpb", "channel_split", "short_cut", "sampler",
                    "ignore_index", "init_cfg")


def segman_decoder_kwargs_from_official(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Official ``SegMANDecoder(**decoder_kwargs)`` -> ours. Ignored: mmseg plumbing (in_index, norm_cfg
    (SyncBN = BN at eval), align_corners (False in all configs), loss, ...) and the unused image_size,
    interpolate_mode, use_rpb, channel_split, short_cut."""
    k = dict(kwargs)
    if k.get("align_corners", False):
        raise NotImplementedError("SegMAN.from_official: decoder align_corners=True")
    if list(k.get("in_index", [0, 1, 2, 3])) != [0, 1, 2, 3]:
        raise NotImplementedError(f"SegMAN.from_official: in_index {k.get('in_index')} (only [0, 1, 2, 3])")
    for name in _DECODER_IGNORED:
        k.pop(name, None)
    ours = {
        "in_channels": list(k.pop("in_channels")),
        "channels": int(k.pop("channels")),
        "feat_proj_dim": int(k.pop("feat_proj_dim")),
        "num_classes": int(k.pop("num_classes")),
        "dropout_ratio": float(k.pop("dropout_ratio", 0.1)),
    }
    if k:
        raise NotImplementedError(f"SegMAN.from_official: unsupported decoder kwargs {sorted(k)}")
    return ours


# ----------------------------------------------------------------------------- segmentor
class SegMAN(nn.Module):
    """SegMAN segmentor: ``encoder`` (features_only SegMANEncoder) + ``decoder`` (MMSCopE).

    ``model(x)`` -> logits (B, classes, H/8, W/8); ``model.encoder(x)`` -> the 4 stage maps;
    ``model.predict(x)`` -> logits bilinearly resized to (H, W) (align_corners False), as mmseg's
    whole-image inference.

    Args:
        encoder: a dict of ``SegMANEncoder`` kwargs, or a timm model name (``segman_encoder_tiny`` ...).
        decoder: ``SegMANDecoder`` kwargs (``in_channels`` defaults to the encoder's widths).
        pretrained: timm pretrained flag when ``encoder`` is a name.
    """

    def __init__(self, encoder: str | Mapping[str, Any] = "segman_encoder_tiny",
                 decoder: Mapping[str, Any] | None = None, pretrained: bool = False):
        super().__init__()
        if isinstance(encoder, str):
            import timm

            self.encoder = timm.create_model(encoder, pretrained=pretrained, features_only=True)
        else:
            base = SegMANEncoder(**dict(encoder, num_classes=0))
            base.prune_intermediate_layers((0, 1, 2, 3), prune_head=True)
            self.encoder = FeatureGetterNet(base, out_indices=(0, 1, 2, 3), prune=False)
        dec = dict(decoder or {})
        dec.setdefault("in_channels", self.encoder.feature_info.channels())
        self.decoder = SegMANDecoder(**dec)
        self.num_classes = self.decoder.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self(x), size=x.shape[-2:], mode="bilinear", align_corners=False)

    @classmethod
    def from_official(
        cls,
        backbone_kwargs: Mapping[str, Any],
        decoder_kwargs: Mapping[str, Any],
        official_state_dict: Mapping[str, Any] | None = None,
        **encoder_overrides: Any,
    ) -> SegMAN:
        """Build from the official mmseg config pieces (``model.backbone`` and ``model.decode_head``
        kwargs) and load a segmentor state dict / checkpoint (``backbone.*``, ``decode_head.*``; strict)."""
        enc = segman_encoder_kwargs_from_official(backbone_kwargs)
        enc.pop("use_checkpoint")
        enc.update(encoder_overrides)
        model = cls(enc, segman_decoder_kwargs_from_official(decoder_kwargs))
        if official_state_dict is not None:
            model.load_state_dict(convert_segman_checkpoint(official_state_dict, model), strict=True)
        return model


def convert_segman_checkpoint(checkpoint: Mapping[str, Any], model: nn.Module) -> ConvertedStateDict:
    """Official SegMAN mmseg segmentor state dict -> ``SegMAN`` keys: ``backbone.*`` as
    ``convert_segman_encoder_checkpoint`` under ``encoder.model.``; ``decode_head.*`` -> ``decoder.*``
    (names kept: ConvModule ``conv``/``bn``, ``vssm.token_mixer`` with ``x_proj_weight`` reshaped);
    ``backbone.classifier.*`` and ``auxiliary_head.*`` are ignored."""
    sd = _reshape_x_proj(unwrap_checkpoint(checkpoint))
    rules = _finish_rules(_encoder_rules("backbone."), sd)
    rules = [(pat, (lambda m, fn=repl: "encoder.model." + fn(m)[len("backbone."):]) if callable(repl) else
              (None if repl is None else "encoder.model." + repl[len("backbone."):])) for pat, repl in rules]
    rules += [(r"^decode_head\.", "decoder."), (r"^auxiliary_head\.", None)]
    mapped, unmatched, origins, dropped = apply_rules(sd, rules)
    return finish_conversion(mapped, model, "SegMAN", unmatched, origins, ignore=[r"^encoder\.model\.head\."],
                             dropped=dropped)


# ----------------------------------------------------------------------------- timm registration
def _create_segman_encoder(variant: str, pretrained: bool = False, **kwargs: Any) -> SegMANEncoder:
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        SegMANEncoder, variant, pretrained,
        pretrained_filter_fn=convert_segman_encoder_checkpoint,
        feature_cfg={"out_indices": out_indices, "feature_cls": "getter"},
        **kwargs,
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7), "crop_pct": 0.9,
        "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.0", "classifier": "head.fc", "license": "mit", "paper_ids": "arXiv:2412.11890",
        "origin_url": "https://github.com/yunxiangfu2001/SegMAN", **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "segman_encoder_tiny.in1k": _cfg(),
    "segman_encoder_small.in1k": _cfg(),
    "segman_encoder_base.in1k": _cfg(crop_pct=0.95),
    "segman_encoder_large.in1k": _cfg(crop_pct=0.95),
})

# Released widths (official SegMANEncoder_t/s/b/l factories).
SEGMAN_ENCODER_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": {"embed_dims": (32, 64, 144, 192), "depths": (2, 2, 4, 2), "num_heads": (1, 2, 4, 8),
                 "kernel_sizes": (11, 9, 9, 7), "mlp_ratios": (4, 4, 3, 3), "layerscales": (False,) * 4},
    "small": {"embed_dims": (64, 144, 288, 512), "depths": (2, 2, 10, 4), "num_heads": (2, 4, 8, 16),
                  "kernel_sizes": (11, 9, 7, 7), "mlp_ratios": (4, 4, 3.4, 3.4), "layerscales": (False,) * 4},
    "base": {"embed_dims": (96, 160, 364, 560), "depths": (4, 4, 18, 4), "num_heads": (4, 8, 13, 20),
                 "kernel_sizes": (11, 9, 7, 7), "mlp_ratios": (4, 4, 3, 3), "layerscales": (True,) * 4},
    "large": {"embed_dims": (96, 192, 432, 640), "depths": (4, 4, 28, 4), "num_heads": (4, 8, 12, 20),
                  "kernel_sizes": (11, 9, 7, 7), "mlp_ratios": (4, 4, 3, 3), "layerscales": (True,) * 4},
}

# ADE20K decoder widths (official local_configs/segman/*/segman_*_ade.py).
SEGMAN_ADE_DECODERS: dict[str, dict[str, int]] = {
    "tiny": {"channels": 128, "feat_proj_dim": 192},
    "small": {"channels": 144, "feat_proj_dim": 288},
    "base": {"channels": 180, "feat_proj_dim": 320},
    "large": {"channels": 224, "feat_proj_dim": 432},
}


@register_model
def segman_encoder_tiny(pretrained: bool = False, **kwargs: Any) -> SegMANEncoder:
    """SegMAN-T encoder: widths (32, 64, 144, 192), depths (2, 2, 4, 2); 3.51M params with the IN-1k head."""
    return _create_segman_encoder("segman_encoder_tiny", pretrained, **dict(SEGMAN_ENCODER_CONFIGS["tiny"], **kwargs))


@register_model
def segman_encoder_small(pretrained: bool = False, **kwargs: Any) -> SegMANEncoder:
    """SegMAN-S encoder: widths (64, 144, 288, 512), depths (2, 2, 10, 4); 25.51M params."""
    return _create_segman_encoder("segman_encoder_small", pretrained, **dict(SEGMAN_ENCODER_CONFIGS["small"], **kwargs))


@register_model
def segman_encoder_base(pretrained: bool = False, **kwargs: Any) -> SegMANEncoder:
    """SegMAN-B encoder: widths (96, 160, 364, 560), depths (4, 4, 18, 4), LayerScale; 45.02M params."""
    return _create_segman_encoder("segman_encoder_base", pretrained, **dict(SEGMAN_ENCODER_CONFIGS["base"], **kwargs))


@register_model
def segman_encoder_large(pretrained: bool = False, **kwargs: Any) -> SegMANEncoder:
    """SegMAN-L encoder: widths (96, 192, 432, 640), depths (4, 4, 28, 4), LayerScale; 80.99M params."""
    return _create_segman_encoder("segman_encoder_large", pretrained, **dict(SEGMAN_ENCODER_CONFIGS["large"], **kwargs))
