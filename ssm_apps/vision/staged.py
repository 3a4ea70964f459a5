"""The staged-backbone base shared by VMamba and EfficientVMamba (and SSM backbones to come), and
its builders: what timm keeps in ``_builder.py`` / ``_features.py``, out of the model files.

* :class:`StagedSSMModel`: the timm API (``forward_intermediates``, ``prune_intermediate_layers``,
  ``group_matcher``, ``set_grad_checkpointing``, ``reset_classifier``, ``no_weight_decay``) over
  ``patch_embed`` -> ``stages`` -> ``norm`` -> ``head``, plus the shared construction steps
  (:meth:`StagedSSMModel.stage_dims`, :meth:`StagedSSMModel.init_features_and_head`, ``_init_weights``).
* :func:`create_staged_model`: ``build_model_with_cfg`` with the ``features_only`` settings of the
  official detection / segmentation backbones.
* :func:`build_from_official`: build from official constructor kwargs and load an official
  checkpoint through a converter (``ssm_apps.convert``), optionally as a features-only wrapper.
* :func:`convert_staged_checkpoint`: ``ssm_apps.convert.convert_checkpoint`` with the classifier /
  out-norm conventions shared by the official VSSM-style checkpoints (``HEAD_KEY_RULES``).
* :func:`staged_cfg`, :func:`drop_path_rates`, :func:`check_image_input`.

NaN/Inf: the models do not check their outputs for non-finite values by default (the check would
synchronise the GPU every forward); ``check_finite=True`` raises a ``FloatingPointError`` naming the
first sample of the batch whose output is not finite.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, calculate_drop_path_rates, trunc_normal_
from timm.models import build_model_with_cfg
from timm.models._features import FeatureGetterNet, feature_take_indices
from torch import nn

from ..convert import IDENTITY_RULES, ConvertedStateDict, Rule, apply_rules, finish_conversion, unwrap_checkpoint
from ..layers.norm import LayerNorm2d
from ..training.checks import check_finite_output

__all__ = [
    "HEAD_KEY_RULES",
    "MIN_INPUT_SIZE",
    "StagedSSMModel",
    "build_from_official",
    "check_image_input",
    "convert_staged_checkpoint",
    "create_staged_model",
    "drop_path_rates",
    "in_our_layout",
    "norm_layer_for",
    "staged_cfg",
    "to_nchw",
    "unwrap_staged_checkpoint",
]

MIN_INPUT_SIZE = 32


# ----------------------------------------------------------------------------- input checks
def check_image_input(name: str, x: torch.Tensor, in_chans: int) -> None:
    """Clear errors for inputs the model cannot take: not (B, in_chans, H, W), or H or W < 32."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: input must be an image batch (B, {in_chans}, H, W); got {shape}")
    if x.shape[1] != in_chans:
        raise ValueError(
            f"{name}: input must have {in_chans} channels (B, {in_chans}, H, W); got {tuple(x.shape)}"
        )
    if x.shape[-2] < MIN_INPUT_SIZE or x.shape[-1] < MIN_INPUT_SIZE:
        raise ValueError(
            f"{name}: input height and width must be >= {MIN_INPUT_SIZE} (4 stages, total stride 32); "
            f"got {tuple(x.shape)}"
        )


def to_nchw(x: torch.Tensor, channel_first: bool) -> torch.Tensor:
    return x if channel_first else x.permute(0, 3, 1, 2)


def norm_layer_for(channel_first: bool) -> type[nn.LayerNorm]:
    return LayerNorm2d if channel_first else nn.LayerNorm


def drop_path_rates(depths: Sequence[int], drop_path_rate: float) -> list[list[float]]:
    """Linearly increasing stochastic depth over all blocks (``torch.linspace(0, rate, n)`` on the CPU,
    also when the model is built on the meta device), split per stage (timm's
    ``calculate_drop_path_rates``)."""
    return calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True)


# ----------------------------------------------------------------------------- base model
class StagedSSMModel(nn.Module):
    """timm API shared by the staged SSM backbones. Subclasses call :meth:`stage_dims` first, build
    ``patch_embed`` and ``stages`` (stage i output = feature i, stride patch_size * 2**i), then
    :meth:`init_features_and_head`, which adds ``feature_info``, ``out_norms`` (per-stage norms or
    None), ``norm`` (final norm) and ``head`` (timm ClassifierHead on NCHW maps) and initialises the
    weights. ``channel_first`` is the layout of the stage outputs."""

    channel_first: bool = False
    check_finite: bool = False

    def stage_dims(self, dims: int | Sequence[int], depths: Sequence[int]) -> list[int]:
        """Stage widths from an int C (C, 2C, 4C, ...) or a list, checked against ``depths``."""
        if isinstance(dims, int):
            dims = [dims * 2**i for i in range(len(depths))]
        dims = [int(d) for d in dims]
        if len(dims) != len(depths):
            raise ValueError(f"{type(self).__name__}: dims {dims} and depths {list(depths)} must have the same length")
        return dims

    def init_features_and_head(
        self,
        dims: Sequence[int],
        depths: Sequence[int],
        in_chans: int,
        num_classes: int,
        global_pool: str,
        drop_rate: float,
        patch_size: int,
        out_norms: bool,
        norm_eps: float,
        check_finite: bool = False,
    ) -> None:
        """Shared attributes, ``feature_info``, out-norms, final norm, classifier head and weight init."""
        self.in_chans, self.num_classes, self.global_pool = in_chans, num_classes, global_pool
        self.dims, self.depths = list(dims), list(depths)
        self.num_features = self.head_hidden_size = dims[-1]
        self.drop_rate = drop_rate
        self.check_finite = check_finite
        self.feature_info = [
            dict(num_chs=dims[i], reduction=patch_size * 2**i, module=f"stages.{i}") for i in range(len(depths))
        ]
        Norm = norm_layer_for(self.channel_first)
        self.out_norms = nn.ModuleList([Norm(d, eps=norm_eps) for d in dims]) if out_norms else None
        self.norm = Norm(self.num_features, eps=norm_eps)
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """As the official models: Linear (and 1x1 Linear2d) weights trunc-normal(0.02), biases 0;
        LayerNorms 1, 0; convs and the SSM parameters keep their own initialisation."""
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {n for n, p in self.named_parameters() if getattr(p, "_no_weight_decay", False)}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(
            stem=r"^patch_embed",
            blocks=r"^stages\.(\d+)" if coarse else [
                (r"^stages\.(\d+)\.downsample", (0,)),
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
                (r"^norm", (99999,)),
                (r"^out_norms", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        # a new head rather than ClassifierHead.reset(in_features=...), which older timm releases lack
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=self.global_pool, drop_rate=self.drop_rate)

    def _check_input(self, x: torch.Tensor) -> None:
        check_image_input(type(self).__name__, x, self.in_chans)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (before the next stage's downsample), strides 4, 8, 16, 32.

        Each taken output goes through its ``out_norms`` LayerNorm when the model has them
        (the official ``Backbone_VSSM`` features); otherwise ``norm=True`` applies the final norm
        to the last stage's output. ``output_fmt`` "NCHW" or "NHWC".
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"forward_intermediates: output_fmt must be 'NCHW' or 'NHWC'; got {output_fmt!r}")
        self._check_input(x)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last_idx = len(self.stages) - 1
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[: max_index + 1]
        intermediates = []
        x = self.patch_embed(x)
        feat_idx = 0
        for feat_idx, stage in enumerate(stages):
            x = stage(x)
            if feat_idx in take_indices:
                if self.out_norms is not None:
                    y = self.out_norms[feat_idx](x)
                elif norm and feat_idx == last_idx:
                    y = self.norm(x)
                else:
                    y = x
                y = to_nchw(y, self.channel_first)
                if self.check_finite:
                    check_finite_output(type(self).__name__, y, f"stage {feat_idx} feature map")
                intermediates.append(y.permute(0, 2, 3, 1) if output_fmt == "NHWC" else y)
        if intermediates_only:
            return intermediates
        if feat_idx == last_idx:
            x = self.norm(x)
        return to_nchw(x, self.channel_first), intermediates

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop what the taken intermediates do not need: later stages, unused out-norms, norm, head."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[: max_index + 1]
        if self.out_norms is not None:
            self.out_norms = nn.ModuleList(
                [n if i in take_indices else nn.Identity() for i, n in enumerate(self.out_norms[: max_index + 1])]
            )
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_end:
            self.num_features = self.head_hidden_size = self.dims[max_index]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> the final-normed last-stage map (B, C, ~H/32, ~W/32), channel-first."""
        self._check_input(x)
        x = self.stages(self.patch_embed(x))
        return to_nchw(self.norm(x), self.channel_first)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.forward_head(self.forward_features(x))
        if self.check_finite:
            check_finite_output(type(self).__name__, out)
        return out


# ----------------------------------------------------------------------------- official checkpoints
# The official classifier and backbone out-norm keys, shared by VSSM and EfficientVSSM checkpoints.
HEAD_KEY_RULES: tuple[Rule, ...] = (
    (r"^classifier\.norm\.", "norm."),
    (r"^classifier\.head\.", "head.fc."),
    (r"^outnorm(\d+)\.", r"out_norms.\1."),
)
# Converted keys a model may lack (no out-norms / pruned / no classifier) and model keys a checkpoint
# may lack (out-norms of a backbone loaded from a classification checkpoint: LayerNorm 1, 0, as the
# official backbone's non-strict load leaves them).
IGNORABLE_KEYS = (r"^out_norms\.", r"^norm\.", r"^head\.")
FILLABLE_KEYS = (r"^out_norms\.",)


def unwrap_staged_checkpoint(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """``unwrap_checkpoint`` (EMA preferred, ``module.`` stripped), keeping only the backbone of
    mmdet / mmseg layouts (``backbone.*``; necks and heads ignored)."""
    sd = unwrap_checkpoint(checkpoint)
    if any(k.startswith("backbone.") for k in sd):
        sd = unwrap_checkpoint(sd, prefix="backbone.")
    return sd


def in_our_layout(state_dict: Mapping[str, Any]) -> bool:
    """Whether a (flat) state dict already has our keys (``stages.*``)."""
    return any(k.startswith("stages.") for k in state_dict)


def convert_staged_checkpoint(checkpoint: Mapping[str, Any], model: nn.Module, rules: Sequence[Rule],
                              family: str, drop_mismatched_head: bool = False) -> ConvertedStateDict:
    """``ssm_apps.convert`` with the staged-backbone conventions: :func:`unwrap_staged_checkpoint`,
    ``IGNORABLE_KEYS`` and ``FILLABLE_KEYS``; a state dict already in our layout (``stages.*`` keys)
    passes unchanged.

    Args:
        checkpoint: official (or our) state dict or checkpoint.
        model: the model it is converted for.
        rules: the family's ``(regex, replacement)`` rules.
        family: named in error messages.
        drop_mismatched_head: drop a classifier (``head.fc``) of another size instead of raising
            (timm's pretrained loading for a new ``num_classes``: timm then discards the classifier).
    """
    sd = unwrap_staged_checkpoint(checkpoint)
    if in_our_layout(sd):
        rules = IDENTITY_RULES
    mapped, unmatched, origins, dropped = apply_rules(sd, rules)
    fill: tuple[str, ...] = FILLABLE_KEYS
    if drop_mismatched_head:
        own = model.state_dict()
        mismatched = [k for k in mapped if k.startswith("head.fc.") and k in own and mapped[k].shape != own[k].shape]
        for k in mismatched:
            dropped.append(origins[k])
            del mapped[k]
        if mismatched:
            fill = (*FILLABLE_KEYS, r"^head\.fc\.")
    return finish_conversion(mapped, model, family, unmatched, origins, ignore=IGNORABLE_KEYS, fill_missing=fill,
                             dropped=dropped)


def build_from_official(
    cls: type[nn.Module],
    ours: dict[str, Any],
    out_indices: Sequence[int],
    state_dict: Mapping[str, Any] | None,
    features_only: bool,
    converter: Callable[[Mapping[str, Any], nn.Module], Mapping[str, torch.Tensor]],
) -> nn.Module:
    """Build ``cls(**ours)`` (with out-norms when ``features_only``), load ``state_dict`` through
    ``converter`` (strict), and wrap in timm's ``FeatureGetterNet`` when ``features_only``
    (``ours["use_checkpoint"]`` turns on gradient checkpointing)."""
    use_checkpoint = ours.pop("use_checkpoint", False)
    model = cls(**ours, out_norms=features_only)
    if features_only:
        out_indices = model.prune_intermediate_layers(out_indices, prune_norm=True, prune_head=True)
    if state_dict is not None:
        model.load_state_dict(converter(state_dict, model), strict=True)
    model.set_grad_checkpointing(use_checkpoint)
    if features_only:
        return FeatureGetterNet(model, out_indices=out_indices, prune=False)
    return model


# ----------------------------------------------------------------------------- timm registration
def create_staged_model(cls: type, variant: str, pretrained: bool, filter_fn: Callable, **kwargs: Any) -> nn.Module:
    """``build_model_with_cfg`` for a ``StagedSSMModel`` family; with ``features_only`` the stages get
    the per-stage out-norms of the official backbones (Backbone_VSSM / Backbone_EfficientVSSM)."""
    if kwargs.get("features_only", False):
        kwargs.setdefault("out_norms", True)
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        cls,
        variant,
        pretrained,
        pretrained_filter_fn=filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **kwargs,
    )


def staged_cfg(first_conv: str, **kwargs: Any) -> dict[str, Any]:
    """A timm ``default_cfg`` for an ImageNet-1k staged backbone (override paper / origin / licence)."""
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,  # official eval: resize 256 (bicubic), center crop 224
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": first_conv,
        "classifier": "head.fc",
        **kwargs,
    }
