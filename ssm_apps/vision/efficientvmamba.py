"""EfficientVMamba (Pei et al., 2024): atrous selective scan + convolution, for timm.

Layout, top to bottom: blocks -> stages -> model -> official checkpoint converter ->
``_create_efficientvmamba`` -> ``default_cfgs`` -> registered models.

* Stem: conv4x4/4 -> LN, channel-last (B, H, W, C).
* Stages 0 and 1: ``EVSSBlock``s (channel-last). With x = LN(input):
  out = input + DropPath(BiAttn(ES2D(x)) + BiAttn(ConvBranch(x))), where ONE ``BiAttn``
  module (channel attention: LN -> spatial mean -> Linear -> GELU -> Linear -> sigmoid, times its
  input) gates both branches, each from its own input; ConvBranch = dw3x3 -> BN -> GELU -> 1x1.
  ``ES2D`` is the atrous (step 2) 4-route selective scan (d_state 16, ssm_ratio 2, SiLU(z) gate).
  An MLP follows when mlp_ratio > 0 (released models: 0).
* Stages 2 and 3: MobileNetV2 inverted residuals (expand 4, SE 0.125 of the expanded width, ReLU),
  run channel-first.
* Downsample between stages: PatchMerging2D (zero-pads odd H, W). Stage i has stride 4 * 2**i;
  stage outputs are channel-last, features are returned channel-first.
* Head: LN -> global average pool -> Linear.

Official model: ``TerryPei/EfficientVMamba``, ``classification/models/vmamba_efficient.py:EfficientVSSM``
(and ``Backbone_EfficientVSSM``); keys convert through ``convert_efficientvmamba_checkpoint``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from timm.layers import DropPath
from timm.models import generate_default_cfgs, register_model
from timm.models._manipulate import checkpoint_seq
from torch import nn

from ..convert import ConvertedStateDict
from ..layers import ES2D
from .staged import (
    HEAD_KEY_RULES,
    StagedSSMModel,
    build_from_official,
    convert_staged_checkpoint,
    create_staged_model,
    drop_path_rates,
    staged_cfg,
)
from .vmamba import PatchEmbedV1, PatchMerging2D, make_mlp

__all__ = ["BiAttn", "EVSSBlock", "EfficientVMamba", "InvertedResidual", "convert_efficientvmamba_checkpoint"]

NUM_EVSS_STAGES = 2  # stages before this index are EVSS stages, the rest inverted residuals


# ----------------------------------------------------------------------------- blocks
class BiAttn(nn.Module):
    """EfficientVMamba's channel attention on a (B, H, W, C) map:
    x * sigmoid(W2 GELU(W1 mean_hw(LN(x)) + b1) + b2), reduction int(C * act_ratio)."""

    def __init__(self, dim: int, act_ratio: float = 0.125, norm_eps: float = 1e-5) -> None:
        super().__init__()
        reduced = int(dim * act_ratio)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.global_reduce = nn.Linear(dim, reduced)
        self.act = nn.GELU()
        self.channel_select = nn.Linear(reduced, dim)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.norm(x).mean(dim=(1, 2), keepdim=True)
        return x * self.gate(self.channel_select(self.act(self.global_reduce(pooled))))


class ConvBranch(nn.Sequential):
    """Depthwise 3x3 (bias) -> BatchNorm -> GELU -> 1x1 (bias), channel-first."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.bn = nn.BatchNorm2d(dim)
        self.act = nn.GELU()
        self.pw = nn.Conv2d(dim, dim, 1)


class EVSSBlock(nn.Module):
    """Efficient visual state-space block, channel-last (B, H, W, C):
    x = LN(in); out = in + DropPath(attn(ES2D(x)) + attn(conv_branch(x))) [+ MLP residual]."""

    def __init__(
        self,
        dim: int,
        drop_path: float = 0.0,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        mlp_ratio: float = 0.0,
        norm_eps: float = 1e-5,
        scan_backend: str | None = None,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.op = ES2D(dim, d_state=d_state, ssm_ratio=ssm_ratio, dt_rank=dt_rank, scan_backend=scan_backend)
        self.conv_branch = ConvBranch(dim)
        self.attn = BiAttn(dim, norm_eps=norm_eps)  # shared by both branches
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if mlp_ratio > 0:
            self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
            self.mlp = make_mlp(dim, int(dim * mlp_ratio), nn.GELU, 0.0, channel_first=False)
        else:
            self.norm2 = self.mlp = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        y_ssm = self.op(h)
        y_conv = self.conv_branch(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x + self.drop_path(self.attn(y_ssm) + self.attn(y_conv))
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class ConvBnAct(nn.Sequential):
    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, padding=kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()


class SqueezeExcite(nn.Module):
    """x * sigmoid(conv_expand(ReLU(conv_reduce(mean_hw(x))))), channel-first."""

    def __init__(self, dim: int, reduced: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(dim, reduced, 1)
        self.act = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, dim, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.conv_expand(self.act(self.conv_reduce(s))))


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual as the official ``lib/models/operations.py`` one used here:
    1x1 expand (x4) -> BN -> ReLU -> dw3x3 -> BN -> ReLU -> SE (max(1, int(mid * 0.125))) ->
    1x1 project -> BN, + input (drop path on the branch). Channel-first."""

    def __init__(self, dim: int, expand_ratio: float = 4.0, se_ratio: float = 0.125, drop_path: float = 0.0) -> None:
        super().__init__()
        mid = int(dim * expand_ratio)
        self.conv_pw = ConvBnAct(dim, mid, 1)
        self.conv_dw = ConvBnAct(mid, mid, 3, groups=mid)
        self.se = SqueezeExcite(mid, max(1, int(mid * se_ratio)))
        self.conv_pwl = ConvBnAct(mid, dim, 1, act=False)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x)))))


# ----------------------------------------------------------------------------- stages
class EfficientStage(nn.Module):
    """PatchMerging2D of the previous stage's output (Identity for stage 0), then blocks:
    EVSS blocks (channel-last) or inverted residuals (run channel-first). In and out channel-last."""

    def __init__(
        self, in_dim: int, dim: int, depth: int, drop_path: Sequence[float], downsample: bool, kind: str,
        norm_eps: float = 1e-5, **block_kwargs: Any,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.kind = kind
        self.downsample = (
            PatchMerging2D(in_dim, dim, channel_first=False, norm_eps=norm_eps) if downsample else nn.Identity()
        )
        if kind == "evss":
            blocks = [EVSSBlock(dim, drop_path[j], norm_eps=norm_eps, **block_kwargs) for j in range(depth)]
        elif kind == "ir":
            blocks = [InvertedResidual(dim, 4.0, 0.125, drop_path[j]) for j in range(depth)]
        else:
            raise ValueError(f"EfficientStage: kind must be 'evss' or 'ir'; got {kind!r}")
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.kind == "ir":
            x = x.permute(0, 3, 1, 2)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return x.permute(0, 2, 3, 1) if self.kind == "ir" else x


# ----------------------------------------------------------------------------- model
class EfficientVMamba(StagedSSMModel):
    """EfficientVMamba classifier / backbone.

    Args:
        in_chans, num_classes, global_pool, drop_rate: as timm.
        depths: blocks per stage (stages 0-1 EVSS, the rest inverted residuals); dims: widths or int C.
        patch_size: stem stride (4).
        d_state, ssm_ratio, dt_rank: ES2D settings. The released models (and the official code, which
            drops its d_state/dt_rank arguments) use d_state 16, dt_rank "auto".
        mlp_ratio: MLP after each EVSS block (released: 0).
        patch_norm: LayerNorm in the stem.
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        out_norms: per-stage LayerNorms applied by ``forward_intermediates`` (official backbone's
            ``outnorm{i}``); ``features_only`` models get them by default.
        norm_eps: LayerNorm epsilon (1e-5 everywhere, as the official model).
        scan_backend: selective-scan backend (None = best available).
        check_finite: raise a ``FloatingPointError`` naming the first sample whose logits (or
            ``forward_intermediates`` maps) hold NaN or Inf. Off by default: the check synchronises
            the GPU, and the model never checks for NaN otherwise.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: Sequence[int] = (2, 2, 4, 2),
        dims: int | Sequence[int] = 48,
        patch_size: int = 4,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        mlp_ratio: float = 0.0,
        patch_norm: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        out_norms: bool = False,
        norm_eps: float = 1e-5,
        scan_backend: str | None = None,
        check_finite: bool = False,
    ) -> None:
        super().__init__()
        dims = self.stage_dims(dims, depths)
        self.channel_first = False

        self.patch_embed = PatchEmbedV1(
            in_chans, dims[0], patch_size, patch_norm, channel_first=False, norm_eps=norm_eps
        )
        dpr = drop_path_rates(depths, drop_path_rate)
        block_kwargs = dict(d_state=d_state, ssm_ratio=ssm_ratio, dt_rank=dt_rank, mlp_ratio=mlp_ratio,
                            scan_backend=scan_backend)
        self.stages = nn.Sequential(*[
            EfficientStage(
                dims[max(i - 1, 0)], dims[i], depths[i], dpr[i], downsample=i > 0,
                kind="evss" if i < NUM_EVSS_STAGES else "ir", norm_eps=norm_eps,
                **(block_kwargs if i < NUM_EVSS_STAGES else {}),
            )
            for i in range(len(depths))
        ])
        self.init_features_and_head(dims, depths, in_chans, num_classes, global_pool, drop_rate, patch_size,
                                    out_norms, norm_eps, check_finite)

    @classmethod
    def from_official(
        cls,
        kwargs: Mapping[str, Any],
        state_dict: Mapping[str, Any] | None = None,
        features_only: bool = False,
        **overrides: Any,
    ) -> nn.Module:
        """Build from the official ``EfficientVSSM`` / ``Backbone_EfficientVSSM`` kwargs and load an
        official state dict or checkpoint through ``convert_efficientvmamba_checkpoint`` (strict).
        features_only=True returns timm's ``FeatureGetterNet`` whose per-stage norms take
        ``outnorm{i}`` (kwargs' ``out_indices``, default (0, 1, 2, 3)); see ``VMamba.from_official``."""
        ours, out_indices = efficientvmamba_kwargs_from_official(kwargs)
        ours.update(overrides)
        return build_from_official(cls, ours, out_indices, state_dict, features_only,
                                   convert_efficientvmamba_checkpoint)


# ----------------------------------------------------------------------------- official kwargs
OFFICIAL_SWALLOWED_KWARGS = (
    # accepted by the official EfficientVSSM but without effect on the built model
    "d_state", "dt_rank",  # passed to VSSM._make_layer under names it ignores: SS2D gets d_state 16, dt_rank auto
    "window_size",  # swallowed by **kwargs: the atrous step stays 2
    "attn_drop_rate", "shared_ssm", "softmax_version", "drop_rate",  # swallowed by _make_layer
    "pretrained",
)


def efficientvmamba_kwargs_from_official(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Official ``EfficientVSSM(**kwargs)`` / ``Backbone_EfficientVSSM(**kwargs)`` -> (ours, out_indices).

    Official quirks reproduced: ``d_state`` and ``dt_rank`` have no effect (every ES2D has d_state 16,
    dt_rank ceil(C/16)); ``window_size`` has no effect (step 2); LayerNorm eps 1e-5.
    """
    k = dict(kwargs)
    out_indices = tuple(k.pop("out_indices", (0, 1, 2, 3)))
    for name in OFFICIAL_SWALLOWED_KWARGS:
        k.pop(name, None)
    norm_layer = k.pop("norm_layer", nn.LayerNorm)
    if norm_layer is not nn.LayerNorm and str(norm_layer).lower() != "ln":
        raise NotImplementedError(f"EfficientVMamba.from_official: norm_layer {norm_layer!r}")
    if k.pop("downsample_version", "v2") == "v2":
        raise NotImplementedError("EfficientVMamba.from_official: downsample_version 'v2' (conv2x2); released: 'v1'")
    if int(k.pop("step_size", 2)) != 2:
        raise NotImplementedError("EfficientVMamba.from_official: step_size != 2")
    ssm_ratio = float(k.pop("ssm_ratio", 2.0))
    if not 0 < ssm_ratio <= 2.0:
        raise NotImplementedError("EfficientVMamba.from_official: ssm_ratio must be in (0, 2] (no low-rank path)")
    ours = dict(
        in_chans=k.pop("in_chans", 3),
        num_classes=k.pop("num_classes", 1000),
        patch_size=k.pop("patch_size", 4),
        depths=list(k.pop("depths", [2, 2, 9, 2])),
        dims=k.pop("dims", [96, 192, 384, 768]),
        d_state=16,
        dt_rank="auto",
        ssm_ratio=ssm_ratio,
        mlp_ratio=k.pop("mlp_ratio", 4.0),
        patch_norm=k.pop("patch_norm", True),
        drop_path_rate=k.pop("drop_path_rate", 0.1),
        use_checkpoint=k.pop("use_checkpoint", False),
    )
    if k:
        raise NotImplementedError(f"EfficientVMamba.from_official: unsupported official kwargs {sorted(k)}")
    return ours, out_indices


# ----------------------------------------------------------------------------- checkpoint conversion
_EVSS_RENAMES = (
    (r"^conv_branch\.0\.", "conv_branch.dw."),
    (r"^conv_branch\.1\.", "conv_branch.bn."),
    (r"^conv_branch\.3\.", "conv_branch.pw."),
    (r"^se\.", "attn."),
)
_IR_RENAMES = (
    (r"^conv_pw\.0\.", "conv_pw.conv."),
    (r"^conv_pw\.1\.", "conv_pw.bn."),
    (r"^conv_dw\.0\.", "conv_dw.conv."),
    (r"^conv_dw\.1\.", "conv_dw.bn."),
    (r"^conv_pw2\.0\.", "conv_pwl.conv."),
    (r"^conv_pw2\.1\.", "conv_pwl.bn."),
)


def _rename(rest: str, renames: Sequence[tuple[str, str]]) -> str:
    for pattern, repl in renames:
        rest, n = re.subn(pattern, repl, rest)
        if n:
            break
    return rest


def convert_efficientvmamba_checkpoint(checkpoint: Mapping[str, Any], model: nn.Module,
        drop_mismatched_head: bool = False) -> ConvertedStateDict:
    """Official EfficientVMamba (``EfficientVSSM`` / ``Backbone_EfficientVSSM``) state dict or released
    ``.pth`` -> our keys. After ``unwrap_checkpoint`` (EMA preferred, ``module.`` / ``backbone.`` stripped):

    * ``patch_embed.{0,2}`` -> ``patch_embed.{proj,norm}``
    * EVSS stages (i < 2): ``layers.{i}.blocks.{j}.*`` -> ``stages.{i}.blocks.{j}.*`` with
      ``conv_branch.{0,1,3}`` -> ``conv_branch.{dw,bn,pw}`` and ``se`` (BiAttn) -> ``attn``;
      ``layers.{i}.downsample.*`` -> ``stages.{i+1}.downsample.*``
    * inverted-residual stages (i >= 2; official Sequential(Permute, IR x depth, Permute, downsample)):
      ``layers.{i}.{j}.*`` for 1 <= j <= depth -> ``stages.{i}.blocks.{j-1}.*`` with
      ``conv_pw.{0,1}`` -> ``conv_pw.{conv,bn}``, ``conv_dw.{0,1}`` -> ``conv_dw.{conv,bn}``,
      ``conv_pw2.{0,1}`` -> ``conv_pwl.{conv,bn}`` (``se.conv_reduce/conv_expand`` unchanged);
      ``layers.{i}.{depth+2}.*`` -> ``stages.{i+1}.downsample.*``
    * ``classifier.norm`` -> ``norm``; ``classifier.head`` -> ``head.fc``; ``outnorm{i}`` -> ``out_norms.{i}``
    Ignored explicitly: ``outnorm*`` when the model has no out-norms, ``classifier.*`` when it has no
    classifier. Our own layout (``stages.*``) passes unchanged.
    """
    depths = list(model.depths)

    def ir_layer(m: re.Match) -> str:
        i, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        if i < NUM_EVSS_STAGES:
            return f"?layers.{i}.{j}.{rest}"  # not an official EVSS key: reported as unplaceable
        if 1 <= j <= depths[i]:
            return f"stages.{i}.blocks.{j - 1}.{_rename(rest, _IR_RENAMES)}"
        if j == depths[i] + 2:
            return f"stages.{i + 1}.downsample.{rest}"
        return f"?layers.{i}.{j}.{rest}"

    rules = [
        (r"^patch_embed\.0\.", "patch_embed.proj."),
        (r"^patch_embed\.2\.", "patch_embed.norm."),
        (r"^layers\.(\d+)\.blocks\.(\d+)\.(.*)$",
         lambda m: f"stages.{m.group(1)}.blocks.{m.group(2)}.{_rename(m.group(3), _EVSS_RENAMES)}"),
        (r"^layers\.(\d+)\.downsample\.(.*)$", lambda m: f"stages.{int(m.group(1)) + 1}.downsample.{m.group(2)}"),
        (r"^layers\.(\d+)\.(\d+)\.(.*)$", ir_layer),
        *HEAD_KEY_RULES,
    ]
    return convert_staged_checkpoint(checkpoint, model, rules, "EfficientVMamba", drop_mismatched_head)


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: nn.Module) -> ConvertedStateDict:
    """timm ``pretrained_filter_fn``: released official ``.pth`` (or its state dict) -> our keys; a
    classifier of another size is dropped (timm discards it when ``num_classes`` differs)."""
    return convert_efficientvmamba_checkpoint(state_dict, model, drop_mismatched_head=True)


# ----------------------------------------------------------------------------- timm registration
def _create_efficientvmamba(variant: str, pretrained: bool = False, **kwargs: Any) -> EfficientVMamba:
    return create_staged_model(EfficientVMamba, variant, pretrained, checkpoint_filter_fn, **kwargs)


def _ecfg(**kwargs: Any) -> dict[str, Any]:
    return staged_cfg(
        "patch_embed.proj", paper_ids="arXiv:2403.09977", origin_url="https://github.com/TerryPei/EfficientVMamba",
        license="apache-2.0", **kwargs,
    )


default_cfgs = generate_default_cfgs({
    "efficientvmamba_tiny.in1k": _ecfg(),
    "efficientvmamba_small.in1k": _ecfg(),
    "efficientvmamba_base.in1k": _ecfg(),
})

# Released configurations (official classification/configs/vssm/vssm_efficient_*.yaml, built by
# build_vssm_model; S width 64 as the released 11.27M-parameter model / its training log).
_EFFICIENT = dict(d_state=16, ssm_ratio=2.0, dt_rank="auto", mlp_ratio=0.0, drop_path_rate=0.2)


@register_model
def efficientvmamba_tiny(pretrained: bool = False, **kwargs: Any) -> EfficientVMamba:
    """EfficientVMamba-T: dims 48, depths (2, 2, 4, 2); 6.49M params."""
    args = dict(_EFFICIENT, dims=48, depths=(2, 2, 4, 2))
    return _create_efficientvmamba("efficientvmamba_tiny", pretrained, **dict(args, **kwargs))


@register_model
def efficientvmamba_small(pretrained: bool = False, **kwargs: Any) -> EfficientVMamba:
    """EfficientVMamba-S: dims 64, depths (2, 2, 4, 2); 11.27M params."""
    args = dict(_EFFICIENT, dims=64, depths=(2, 2, 4, 2))
    return _create_efficientvmamba("efficientvmamba_small", pretrained, **dict(args, **kwargs))


@register_model
def efficientvmamba_base(pretrained: bool = False, **kwargs: Any) -> EfficientVMamba:
    """EfficientVMamba-B: dims 96, depths (2, 2, 9, 2); 33.72M params."""
    args = dict(_EFFICIENT, dims=96, depths=(2, 2, 9, 2))
    return _create_efficientvmamba("efficientvmamba_base", pretrained, **dict(args, **kwargs))
