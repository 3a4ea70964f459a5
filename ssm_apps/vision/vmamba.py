"""VMamba: visual state-space models (Liu et al., 2024), for timm.

Two released families, built from the same pieces:

* v2 (``vmamba_tiny_s1l8``, ``vmamba_small_s2l15``, ``vmamba_base_s2l15``): channel-first
  (B, C, H, W) throughout with channel LayerNorms; stem = conv3x3/2 -> LN -> GELU ->
  conv3x3/2 -> LN ("v2"); downsample = conv3x3/2 -> LN ("v3"); ``SS2D`` forward type
  ``v05_noz`` (d_state 1, no gate) followed by an MLP (ratio 4).
* vanilla (``vmamba_{tiny,small,base}_v0``): channel-last (B, H, W, C); stem = conv4x4/4 ->
  LN ("v1"); downsample = PatchMerging2D ("v1"); ``SS2D`` forward type ``v0`` (d_state 16,
  SiLU(z) gate); no MLP.

The timm API, the builders and the checkpoint conventions shared with EfficientVMamba are in
``ssm_apps.vision.staged``. Layout, top to bottom: blocks (``VSSBlock``: x + DropPath(SS2D(LN(x))), then
x + DropPath(MLP(LN(x))) when mlp_ratio > 0) -> stages (``VSSStage``: downsample of the
previous stage's output, then blocks; stage i has stride 4 * 2**i) -> model (``VMamba``) ->
official checkpoint converter -> ``_create_vmamba`` -> ``default_cfgs`` -> registered models.

Official checkpoints (``MzeroMiko/VMamba``, ``classification/models/vmamba.py:VSSM`` and the
mmdet/mmseg ``Backbone_VSSM``) load through ``convert_vmamba_checkpoint``; key rules are listed
there. ``VMamba.from_official(kwargs, state_dict)`` builds from the official constructor kwargs.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models import generate_default_cfgs, register_model
from timm.models._manipulate import checkpoint_seq
from torch import nn

from ..convert import ConvertedStateDict
from ..layers import SS2D, BlockedMlp, LayerNorm2d, get_act_layer
from .staged import (
    HEAD_KEY_RULES,
    StagedSSMModel,
    build_from_official,
    convert_staged_checkpoint,
    create_staged_model,
    drop_path_rates,
    in_our_layout,
    norm_layer_for,
    staged_cfg,
    unwrap_staged_checkpoint,
)

__all__ = [
    "ConvDownsample",
    "PatchEmbedV1",
    "PatchEmbedV2",
    "PatchMerging2D",
    "VMamba",
    "VSSBlock",
    "VSSStage",
    "convert_vmamba_checkpoint",
    "make_mlp",
    "vmamba_kwargs_from_official",
]


# ----------------------------------------------------------------------------- blocks
def make_mlp(dim: int, hidden: int, act_layer: type[nn.Module] = nn.GELU, drop: float = 0.0,
             channel_first: bool = False) -> BlockedMlp:
    """timm's ``Mlp`` (fc1 -> act -> drop -> fc2 -> drop) over channels (``layers.BlockedMlp``: cache-blocked on
    CPUs); channel-first maps get the official ``Linear2d`` layers (Linear weights applied as 1x1 convs) so
    official keys and shapes load."""
    return BlockedMlp(dim, hidden, act_layer=act_layer, drop=drop, channel_first=channel_first)


class VSSBlock(nn.Module):
    """x + DropPath(SS2D(LN(x))), then x + DropPath(MLP(LN(x))) when mlp_ratio > 0.

    Channel-first (B, C, H, W) for forward_type "v05_noz", channel-last (B, H, W, C) for "v0".
    """

    def __init__(
        self,
        dim: int,
        drop_path: float = 0.0,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        ssm_act_layer: str | type[nn.Module] = "silu",
        ssm_conv: int = 3,
        ssm_conv_bias: bool = True,
        ssm_drop_rate: float = 0.0,
        forward_type: str = "v0",
        mlp_ratio: float = 0.0,
        mlp_act_layer: str | type[nn.Module] = "gelu",
        mlp_drop_rate: float = 0.0,
        norm_eps: float = 1e-5,
        scan_backend: str | None = None,
    ) -> None:
        super().__init__()
        self.channel_first = forward_type == "v05_noz"
        Norm = norm_layer_for(self.channel_first)
        self.norm = Norm(dim, eps=norm_eps)
        self.op = SS2D(
            dim, d_state=d_state, ssm_ratio=ssm_ratio, dt_rank=dt_rank, d_conv=ssm_conv, conv_bias=ssm_conv_bias,
            act_layer=ssm_act_layer, forward_type=forward_type, dropout=ssm_drop_rate, scan_backend=scan_backend,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if mlp_ratio > 0:
            self.norm2 = Norm(dim, eps=norm_eps)
            self.mlp = make_mlp(dim, int(dim * mlp_ratio), get_act_layer(mlp_act_layer), mlp_drop_rate,
                                self.channel_first)
        else:
            self.norm2 = self.mlp = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


# ----------------------------------------------------------------------------- stem and downsampling
class PatchEmbedV1(nn.Module):
    """conv p x p / p -> LN ("v1"). Output channel-first or channel-last."""

    def __init__(
        self, in_chans: int, dim: int, patch_size: int = 4, patch_norm: bool = True,
        channel_first: bool = False, norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.channel_first = channel_first
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer_for(channel_first)(dim, eps=norm_eps) if patch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.norm(x if self.channel_first else x.permute(0, 2, 3, 1))


class PatchEmbedV2(nn.Module):
    """conv (s+1)x(s+1)/s -> LN -> GELU -> conv (s+1)x(s+1)/s -> LN with s = patch_size // 2 ("v2")."""

    def __init__(
        self, in_chans: int, dim: int, patch_size: int = 4, patch_norm: bool = True,
        channel_first: bool = True, norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.channel_first = channel_first
        stride = patch_size // 2
        self.conv1 = nn.Conv2d(in_chans, dim // 2, kernel_size=stride + 1, stride=stride, padding=1)
        self.norm1 = LayerNorm2d(dim // 2, eps=norm_eps) if patch_norm else nn.Identity()
        self.act = nn.GELU()
        # weights in channels-last memory like its input (norm1's output): no per-call weight reorder
        self.conv2 = nn.Conv2d(dim // 2, dim, kernel_size=stride + 1, stride=stride, padding=1).to(
            memory_format=torch.channels_last)
        self.norm2 = norm_layer_for(channel_first)(dim, eps=norm_eps) if patch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.act(self.norm1(self.conv1(x))))
        return self.norm2(x if self.channel_first else x.permute(0, 2, 3, 1))


class PatchMerging2D(nn.Module):
    """Swin's patch merging ("v1"): zero-pad H, W to even, concat the 2x2 neighbours
    [(0,0), (1,0), (0,1), (1,1)] on channels, LN(4C), Linear(4C -> out, no bias).
    Works on channel-last maps; channel-first maps are permuted in and out."""

    def __init__(self, dim: int, out_dim: int, channel_first: bool = False, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.channel_first = channel_first
        self.norm = nn.LayerNorm(4 * dim, eps=norm_eps)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_first:
            x = x.permute(0, 2, 3, 1)
        height, width = x.shape[1], x.shape[2]
        if height % 2 or width % 2:
            x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        x = self.reduction(self.norm(x))
        return x.permute(0, 3, 1, 2) if self.channel_first else x


class ConvDownsample(nn.Module):
    """conv k x k / 2 -> LN: "v3" (k 3, padding 1; output ceil(H/2)) or "v2" (k 2, no padding)."""

    def __init__(
        self, dim: int, out_dim: int, kernel_size: int = 3, channel_first: bool = True, norm_eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.channel_first = channel_first
        # weights in channels-last memory like its input (the blocks' residual stream): oneDNN and cuDNN
        # would otherwise reorder them on every call (3 ms of a 66 ms VMamba-T batch-1 CPU forward)
        self.conv = nn.Conv2d(dim, out_dim, kernel_size=kernel_size, stride=2, padding=(kernel_size - 1) // 2).to(
            memory_format=torch.channels_last)
        self.norm = norm_layer_for(channel_first)(out_dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_first:
            return self.norm(self.conv(x))
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


PATCH_EMBEDS = {"v1": PatchEmbedV1, "v2": PatchEmbedV2}
DOWNSAMPLES = ("v1", "v2", "v3")


def make_downsample(version: str, dim: int, out_dim: int, channel_first: bool, norm_eps: float) -> nn.Module:
    if version == "v1":
        return PatchMerging2D(dim, out_dim, channel_first, norm_eps)
    if version in ("v2", "v3"):
        return ConvDownsample(dim, out_dim, 2 if version == "v2" else 3, channel_first, norm_eps)
    raise ValueError(f"downsample_version must be one of {DOWNSAMPLES}; got {version!r}")


class VSSStage(nn.Module):
    """Downsample of the previous stage's output (Identity for stage 0), then VSS blocks."""

    def __init__(
        self, in_dim: int, dim: int, depth: int, drop_path: Sequence[float], downsample: str | None,
        channel_first: bool, norm_eps: float = 1e-5, **block_kwargs: Any,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = (
            make_downsample(downsample, in_dim, dim, channel_first, norm_eps) if downsample else nn.Identity()
        )
        self.blocks = nn.Sequential(
            *[VSSBlock(dim, drop_path=drop_path[j], norm_eps=norm_eps, **block_kwargs) for j in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


# ----------------------------------------------------------------------------- model
class VMamba(StagedSSMModel):
    """VMamba image classifier / backbone.

    Args:
        in_chans, num_classes, global_pool, drop_rate: as timm (classifier pooling and dropout).
        depths: blocks per stage; dims: stage widths, or an int C for (C, 2C, 4C, 8C).
        patch_size: total stride of the stem (4).
        d_state, ssm_ratio, dt_rank, ssm_act_layer, ssm_conv, ssm_conv_bias, ssm_drop_rate,
        forward_type: ``SS2D`` settings; forward_type "v05_noz" makes the whole model channel-first,
            "v0" channel-last.
        mlp_ratio, mlp_act_layer, mlp_drop_rate: MLP after each SS2D (none when mlp_ratio is 0).
        patch_embed_version: "v1" (conv4x4/4 + LN) or "v2" (two conv3x3/2 with LN, GELU).
        downsample_version: "v1" (PatchMerging2D), "v2" (conv2x2/2 + LN) or "v3" (conv3x3/2 + LN).
        patch_norm: LayerNorms in the stem.
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        out_norms: add a LayerNorm per stage output, applied by ``forward_intermediates`` (what the
            official detection/segmentation backbone ``Backbone_VSSM`` calls ``outnorm{i}``);
            ``features_only`` models get them by default.
        norm_eps: epsilon of every LayerNorm (1e-5 as the official model).
        scan_backend: selective-scan backend (None = best available on the input's device).
        check_finite: raise a ``FloatingPointError`` naming the first sample whose logits (or
            ``forward_intermediates`` maps) hold NaN or Inf. Off by default: the check synchronises
            the GPU, and the model never checks for NaN otherwise.

    ``forward_features`` returns the final-normed (B, C, H/32, W/32) map (channel-first for both
    families); ``forward_head`` pools and classifies.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: Sequence[int] = (2, 2, 9, 2),
        dims: int | Sequence[int] = 96,
        patch_size: int = 4,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        ssm_act_layer: str = "silu",
        ssm_conv: int = 3,
        ssm_conv_bias: bool = True,
        ssm_drop_rate: float = 0.0,
        forward_type: str = "v0",
        mlp_ratio: float = 0.0,
        mlp_act_layer: str = "gelu",
        mlp_drop_rate: float = 0.0,
        patch_embed_version: str = "v1",
        downsample_version: str = "v1",
        patch_norm: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        out_norms: bool = False,
        norm_eps: float = 1e-5,
        scan_backend: str | None = None,
        check_finite: bool = False,
    ) -> None:
        super().__init__()
        dims = self.stage_dims(dims, depths)
        if patch_embed_version not in PATCH_EMBEDS:
            raise ValueError(
                f"VMamba: patch_embed_version must be one of {tuple(PATCH_EMBEDS)}; got {patch_embed_version!r}"
            )
        self.channel_first = forward_type == "v05_noz"
        self.patch_embed_version = patch_embed_version

        self.patch_embed = PATCH_EMBEDS[patch_embed_version](
            in_chans, dims[0], patch_size, patch_norm, self.channel_first, norm_eps
        )
        block_kwargs = dict(
            d_state=d_state, ssm_ratio=ssm_ratio, dt_rank=dt_rank, ssm_act_layer=ssm_act_layer, ssm_conv=ssm_conv,
            ssm_conv_bias=ssm_conv_bias, ssm_drop_rate=ssm_drop_rate, forward_type=forward_type,
            mlp_ratio=mlp_ratio, mlp_act_layer=mlp_act_layer, mlp_drop_rate=mlp_drop_rate, scan_backend=scan_backend,
        )
        dpr = drop_path_rates(depths, drop_path_rate)
        self.stages = nn.Sequential(*[
            VSSStage(
                dims[max(i - 1, 0)], dims[i], depths[i], dpr[i], downsample_version if i > 0 else None,
                self.channel_first, norm_eps, **block_kwargs,
            )
            for i in range(len(depths))
        ])
        self.init_features_and_head(dims, depths, in_chans, num_classes, global_pool, drop_rate, patch_size,
                                    out_norms, norm_eps, check_finite)

    # --- official checkpoints
    @classmethod
    def from_official(
        cls,
        kwargs: Mapping[str, Any],
        state_dict: Mapping[str, Any] | None = None,
        features_only: bool = False,
        **overrides: Any,
    ) -> nn.Module:
        """Build from the official ``VSSM`` / ``Backbone_VSSM`` constructor kwargs and load an official
        state dict (or checkpoint) through ``convert_vmamba_checkpoint`` (strict).

        features_only=False: the classifier (``outnorm*`` keys ignored).
        features_only=True: timm's features_only wrapper (``FeatureGetterNet``) around a model whose
        per-stage ``out_norms`` take ``outnorm{i}``, returning the stage maps of ``out_indices``
        (kwargs' ``out_indices``, default (0, 1, 2, 3)) as the official ``Backbone_VSSM`` does;
        ``classifier.*`` keys are ignored. ``overrides`` go to our constructor (e.g. scan_backend).
        """
        ours, out_indices = vmamba_kwargs_from_official(kwargs)
        ours.update(overrides)
        return build_from_official(cls, ours, out_indices, state_dict, features_only, convert_vmamba_checkpoint)


# ----------------------------------------------------------------------------- official kwargs
OFFICIAL_IGNORED_VSSM_KWARGS = ("ssm_init", "imgsize", "pretrained", "ssm_rank_ratio")


def _official_act(name: Any) -> str:
    if isinstance(name, str):
        return name.lower()
    raise ValueError(f"official activation must be given by name ('silu', 'gelu', ...); got {name!r}")


def vmamba_kwargs_from_official(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Official ``VSSM(**kwargs)`` / ``Backbone_VSSM(**kwargs)`` arguments -> (our kwargs, out_indices).

    Reproduced official behaviour: forward_type "v0" ignores ssm_conv / ssm_conv_bias /
    ssm_act_layer (its SS2D hard-codes a 3x3 depthwise conv with bias and SiLU). norm_layer "ln" or
    "ln2d" only select the tensor layout, which our model ties to forward_type, so both are accepted
    for "v05_noz" (same function). Ignored (no effect on eval maths): ssm_init, imgsize (without
    posembed), pretrained, ssm_rank_ratio. Unsupported settings raise NotImplementedError.
    """
    k = dict(kwargs)
    out_indices = tuple(k.pop("out_indices", (0, 1, 2, 3)))
    for name in OFFICIAL_IGNORED_VSSM_KWARGS:
        k.pop(name, None)
    forward_type = k.pop("forward_type", "v2")
    if forward_type not in ("v0", "v05_noz"):
        raise NotImplementedError(f"VMamba.from_official: forward_type {forward_type!r} (supported: 'v0', 'v05_noz')")
    norm_layer = str(k.pop("norm_layer", "ln")).lower()
    if norm_layer not in ("ln", "ln2d") or (forward_type == "v0" and norm_layer != "ln"):
        raise NotImplementedError(
            f"VMamba.from_official: norm_layer {norm_layer!r} with forward_type {forward_type!r} "
            "(supported: 'ln' for v0; 'ln' or 'ln2d' for v05_noz)"
        )
    if k.pop("posembed", False):
        raise NotImplementedError("VMamba.from_official: posembed=True")
    if k.pop("gmlp", False):
        raise NotImplementedError("VMamba.from_official: gmlp=True")
    dsv = k.pop("downsample_version", "v2")
    if dsv not in DOWNSAMPLES:
        raise NotImplementedError(f"VMamba.from_official: downsample_version {dsv!r}")
    ssm_ratio = float(k.pop("ssm_ratio", 2.0))
    if ssm_ratio <= 0:
        raise NotImplementedError("VMamba.from_official: ssm_ratio <= 0 (no SSM branch)")
    ours = dict(
        in_chans=k.pop("in_chans", 3),
        num_classes=k.pop("num_classes", 1000),
        patch_size=k.pop("patch_size", 4),
        depths=list(k.pop("depths", [2, 2, 9, 2])),
        dims=k.pop("dims", [96, 192, 384, 768]),
        d_state=k.pop("ssm_d_state", 16),
        ssm_ratio=ssm_ratio,
        dt_rank=k.pop("ssm_dt_rank", "auto"),
        ssm_act_layer=_official_act(k.pop("ssm_act_layer", "silu")),
        ssm_conv=k.pop("ssm_conv", 3),
        ssm_conv_bias=k.pop("ssm_conv_bias", True),
        ssm_drop_rate=k.pop("ssm_drop_rate", 0.0),
        forward_type=forward_type,
        mlp_ratio=k.pop("mlp_ratio", 4.0),
        mlp_act_layer=_official_act(k.pop("mlp_act_layer", "gelu")),
        mlp_drop_rate=k.pop("mlp_drop_rate", 0.0),
        patch_embed_version=k.pop("patchembed_version", "v1"),
        downsample_version=dsv,
        patch_norm=k.pop("patch_norm", True),
        drop_path_rate=k.pop("drop_path_rate", 0.1),
        use_checkpoint=k.pop("use_checkpoint", False),
    )
    if forward_type == "v0":  # official SS2Dv0 hard-codes these
        ours.update(ssm_conv=3, ssm_conv_bias=True, ssm_act_layer="silu")
    if k:
        raise NotImplementedError(f"VMamba.from_official: unsupported official kwargs {sorted(k)}")
    return ours, out_indices


# ----------------------------------------------------------------------------- checkpoint conversion
_VMAMBA_LEGACY_RENAMES = (
    # older official checkpoints, renamed by the official VSSM._load_from_state_dict
    (r"^patch_embed\.proj\.", "patch_embed.0."),
    (r"^patch_embed\.norm\.", "patch_embed.2."),
    (r"\.ln_1\.", ".norm."),
    (r"\.self_attention\.", ".op."),
    (r"^norm\.", "classifier.norm."),
    (r"^head\.", "classifier.head."),
)

_STEM_V1 = {"0": "proj", "2": "norm"}
_STEM_V2 = {"0": "conv1", "2": "norm1", "5": "conv2", "7": "norm2"}
_CONV_DOWNSAMPLE = {"1": "conv", "3": "norm"}


def convert_vmamba_checkpoint(checkpoint: Mapping[str, Any], model: nn.Module,
        drop_mismatched_head: bool = False) -> ConvertedStateDict:
    """Official VMamba (``VSSM`` / ``Backbone_VSSM``) state dict or released ``.pth`` -> our keys.

    Rules (official -> ours), after ``unwrap_checkpoint`` and the official legacy renames
    (``patch_embed.proj/norm`` -> ``patch_embed.0/2``, ``ln_1`` -> ``norm``, ``self_attention`` -> ``op``,
    top-level ``norm``/``head`` -> ``classifier.norm/head``):

    * ``patch_embed.{0,2}`` -> ``patch_embed.{proj,norm}`` (stem v1);
      ``patch_embed.{0,2,5,7}`` -> ``patch_embed.{conv1,norm1,conv2,norm2}`` (stem v2)
    * ``layers.{i}.blocks.{j}.*`` -> ``stages.{i}.blocks.{j}.*`` (block internals keep their names:
      ``norm, op.{in_proj, conv2d, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, out_norm,
      out_proj}, norm2, mlp.fc1, mlp.fc2``)
    * ``layers.{i}.downsample.{reduction,norm}`` (v1) -> ``stages.{i+1}.downsample.{reduction,norm}``;
      ``layers.{i}.downsample.{1,3}`` (v2/v3) -> ``stages.{i+1}.downsample.{conv,norm}``
    * ``classifier.norm`` -> ``norm``; ``classifier.head`` -> ``head.fc``
    * ``outnorm{i}`` -> ``out_norms.{i}``
    * 1x1-conv-shaped Linear2d weights are reshaped to 2-D.
    Ignored explicitly: ``outnorm*`` when the model has no out-norms; ``classifier.*`` when the model
    has no classifier/final norm. A state dict already in our layout (``stages.*``) passes unchanged.
    """
    stem = _STEM_V2 if getattr(model, "patch_embed_version", "v1") == "v2" else _STEM_V1

    def legacy(key: str) -> str:
        for pattern, repl in _VMAMBA_LEGACY_RENAMES:
            key = re.sub(pattern, repl, key)
        return key

    def patch_embed(m: re.Match) -> str:
        return f"patch_embed.{stem.get(m.group(1), m.group(1))}.{m.group(2)}"

    def downsample(m: re.Match) -> str:
        head, _, tail = m.group(2).partition(".")
        rest = f"{_CONV_DOWNSAMPLE[head]}.{tail}" if head in _CONV_DOWNSAMPLE else m.group(2)
        return f"stages.{int(m.group(1)) + 1}.downsample.{rest}"

    rules = [
        (r"^patch_embed\.(\d+)\.(.*)$", patch_embed),
        (r"^layers\.(\d+)\.blocks\.", r"stages.\1.blocks."),
        (r"^layers\.(\d+)\.downsample\.(.*)$", downsample),
        *HEAD_KEY_RULES,
    ]
    sd = unwrap_staged_checkpoint(checkpoint)
    if not in_our_layout(sd):
        sd = {legacy(k): v for k, v in sd.items()}
    return convert_staged_checkpoint(sd, model, rules, "VMamba", drop_mismatched_head)


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: nn.Module) -> ConvertedStateDict:
    """timm ``pretrained_filter_fn``: released official ``.pth`` (or its state dict) -> our keys; a
    classifier of another size is dropped (timm discards it when ``num_classes`` differs)."""
    return convert_vmamba_checkpoint(state_dict, model, drop_mismatched_head=True)


# ----------------------------------------------------------------------------- timm registration
def _create_vmamba(variant: str, pretrained: bool = False, **kwargs: Any) -> VMamba:
    return create_staged_model(VMamba, variant, pretrained, checkpoint_filter_fn, **kwargs)


def _cfg(first_conv: str) -> dict[str, Any]:
    return staged_cfg(first_conv, license="mit", paper_ids="arXiv:2401.10166",
                      origin_url="https://github.com/MzeroMiko/VMamba")


default_cfgs = generate_default_cfgs({
    "vmamba_tiny_s1l8.in1k": _cfg("patch_embed.conv1"),
    "vmamba_small_s2l15.in1k": _cfg("patch_embed.conv1"),
    "vmamba_base_s2l15.in1k": _cfg("patch_embed.conv1"),
    "vmamba_tiny_v0.in1k": _cfg("patch_embed.proj"),
    "vmamba_small_v0.in1k": _cfg("patch_embed.proj"),
    "vmamba_base_v0.in1k": _cfg("patch_embed.proj"),
})

# Released configurations (official classification/configs/vssm/*.yaml and vmamba.py builders).
_V2 = dict(
    d_state=1, dt_rank="auto", ssm_act_layer="silu", ssm_conv=3, ssm_conv_bias=False, forward_type="v05_noz",
    mlp_ratio=4.0, mlp_act_layer="gelu", patch_embed_version="v2", downsample_version="v3",
)
_V0 = dict(
    d_state=16, ssm_ratio=2.0, dt_rank="auto", ssm_conv=3, ssm_conv_bias=True, forward_type="v0",
    mlp_ratio=0.0, patch_embed_version="v1", downsample_version="v1",
)


@register_model
def vmamba_tiny_s1l8(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """VMamba-T (v2, ``vssm1_tiny_0230s``): dims 96, depths (2, 2, 8, 2), ssm_ratio 1; 30.2M params."""
    args = dict(_V2, dims=96, depths=(2, 2, 8, 2), ssm_ratio=1.0, drop_path_rate=0.2)
    return _create_vmamba("vmamba_tiny_s1l8", pretrained, **dict(args, **kwargs))


@register_model
def vmamba_small_s2l15(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """VMamba-S (v2): dims 96, depths (2, 2, 15, 2), ssm_ratio 2; 50.1M params."""
    args = dict(_V2, dims=96, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.3)
    return _create_vmamba("vmamba_small_s2l15", pretrained, **dict(args, **kwargs))


@register_model
def vmamba_base_s2l15(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """VMamba-B (v2): dims 128, depths (2, 2, 15, 2), ssm_ratio 2; 88.6M params."""
    args = dict(_V2, dims=128, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.6)
    return _create_vmamba("vmamba_base_s2l15", pretrained, **dict(args, **kwargs))


@register_model
def vmamba_tiny_v0(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """Vanilla VMamba-T (v0): dims 96, depths (2, 2, 9, 2); 22.9M params."""
    args = dict(_V0, dims=96, depths=(2, 2, 9, 2), drop_path_rate=0.2)
    return _create_vmamba("vmamba_tiny_v0", pretrained, **dict(args, **kwargs))


@register_model
def vmamba_small_v0(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """Vanilla VMamba-S (v0): dims 96, depths (2, 2, 27, 2); 44.4M params."""
    args = dict(_V0, dims=96, depths=(2, 2, 27, 2), drop_path_rate=0.3)
    return _create_vmamba("vmamba_small_v0", pretrained, **dict(args, **kwargs))


@register_model
def vmamba_base_v0(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """Vanilla VMamba-B (v0): dims 128, depths (2, 2, 27, 2); 76.3M params."""
    args = dict(_V0, dims=128, depths=(2, 2, 27, 2), drop_path_rate=0.5)
    return _create_vmamba("vmamba_base_v0", pretrained, **dict(args, **kwargs))
