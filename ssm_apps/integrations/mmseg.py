"""mmsegmentation 1.x plug-in: our encoders as backbones and our decode heads in mmseg's ``MODELS`` registry.

    from ssm_apps.integrations.mmseg import register
    register()
    from mmseg.registry import MODELS
    backbone = MODELS.build(dict(type="SegMANEncoder", **official_backbone_kwargs))  # or arch="tiny"
    head = MODELS.build(dict(type="SegMANDecoder", **official_decode_head_kwargs))

Registered types (``ssm_apps.`` models behind mmseg's calling convention):

* backbones (``forward(x) -> tuple`` of the 4 stage maps, strides 4-32):
  ``SegMANEncoder`` (the official constructor arguments, or ``arch`` = tiny / small / base / large),
  ``VMambaBackbone`` and ``EfficientVMambaBackbone`` (``arch`` = a timm name such as
  ``vmamba_tiny_s1l8`` / ``efficientvmamba_tiny``, plus timm kwargs).
* decode heads (``forward(inputs) -> logits``): ``SegMANDecoder`` (the official ``decode_head`` kwargs)
  and ``UperNetHead`` (mmseg ``UPerHead`` kwargs: in_channels, channels, pool_scales, num_classes,
  dropout_ratio; mmseg-only keys such as ``norm_cfg``, ``align_corners``, ``loss_decode`` are accepted
  and ignored: BatchNorm, align_corners False).

Limitation: with mmcv-lite (mmcv's compiled ops do not build for current torch) ``mmseg.models``
itself cannot be imported (it needs ``mmcv._ext``), so mmseg's ``EncoderDecoder``/``BaseDecodeHead``
training loop is not available; the registered modules build and run through ``MODELS.build`` and
can be used in plain PyTorch / Lightning (``ssm_apps.vision.SegmentationTask``). mmsegmentation 1.2.2
requires mmcv < 2.2.0 (mmcv-lite 2.1.0).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["EfficientVMambaBackbone", "SegMANBackbone", "SegMANDecodeHead", "UperNetDecodeHead", "VMambaBackbone",
           "register"]

_MMSEG_ONLY_KEYS = ("norm_cfg", "act_cfg", "conv_cfg", "align_corners", "loss_decode", "in_index", "input_transform",
                    "sampler", "ignore_index", "init_cfg", "out_channels", "threshold", "type")


class _TimmBackbone(nn.Module):
    """A timm ``features_only`` model returning a tuple (mmseg's backbone convention)."""

    prefix = ""

    def __init__(self, arch: str, out_indices: Sequence[int] = (0, 1, 2, 3), pretrained: bool = False,
                 init_cfg: Any = None, **kwargs: Any) -> None:
        super().__init__()
        import timm

        import ssm_apps.vision  # noqa: F401  (registers our timm models)

        if self.prefix and not arch.startswith(self.prefix):
            raise ValueError(
                f"{type(self).__name__}: arch must be a timm name starting with {self.prefix!r}; got {arch!r}")
        self.model = timm.create_model(arch, pretrained=pretrained, features_only=True, out_indices=tuple(out_indices),
                                       **kwargs)

    def init_weights(self) -> None:
        """mmengine calls this; the timm model is initialised at construction."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(x))


class VMambaBackbone(_TimmBackbone):
    """``ssm_apps.vision.VMamba`` stage maps (with the per-stage out-norms of the official Backbone_VSSM)."""

    prefix = "vmamba_"

    def __init__(self, arch: str = "vmamba_tiny_s1l8", **kwargs: Any) -> None:
        super().__init__(arch, **kwargs)


class EfficientVMambaBackbone(_TimmBackbone):
    """``ssm_apps.vision.EfficientVMamba`` stage maps."""

    prefix = "efficientvmamba_"

    def __init__(self, arch: str = "efficientvmamba_tiny", **kwargs: Any) -> None:
        super().__init__(arch, **kwargs)


class SegMANBackbone(nn.Module):
    """SegMAN encoder stage maps. ``arch`` (tiny / small / base / large) picks a released width; otherwise
    the official ``SegMANEncoder`` constructor arguments (as in SegMAN's mmseg configs) are taken.
    ``state_dict`` keys are those of ``SegMANEncoder`` (official checkpoints: ``load_official``)."""

    def __init__(self, arch: str | None = None, out_indices: Sequence[int] = (0, 1, 2, 3), init_cfg: Any = None,
                 **official_kwargs: Any) -> None:
        super().__init__()
        from ssm_apps.vision.segman import SegMANEncoder

        if arch is not None:
            import timm

            import ssm_apps.vision  # noqa: F401

            self.model = timm.create_model(f"segman_encoder_{arch}", features_only=True,
                                           out_indices=tuple(out_indices), **official_kwargs)
        else:
            self.model = SegMANEncoder.from_official(official_kwargs, features_only=True)
            if tuple(out_indices) != (0, 1, 2, 3):
                self.model.out_indices = list(out_indices)

    def load_official(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load an official SegMAN encoder / segmentor state dict (strict)."""
        from ssm_apps.vision.segman import convert_segman_encoder_checkpoint

        inner = self.model.model
        inner.load_state_dict(convert_segman_encoder_checkpoint(state_dict, inner), strict=True)

    def init_weights(self) -> None:
        """mmengine calls this; the model is initialised at construction."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(x))


def _drop_mmseg_keys(kwargs: dict[str, Any], name: str) -> dict[str, Any]:
    k = dict(kwargs)
    if k.get("align_corners", False):
        raise NotImplementedError(f"{name}: align_corners=True")
    norm = k.get("norm_cfg") or {}
    if norm and norm.get("type", "BN") not in ("BN", "SyncBN"):
        raise NotImplementedError(f"{name}: norm_cfg {norm} (BatchNorm only)")
    for key in _MMSEG_ONLY_KEYS:
        k.pop(key, None)
    return k


class SegMANDecodeHead(nn.Module):
    """``ssm_apps.vision.SegMANDecoder`` from the official ``decode_head`` kwargs; ``forward(inputs)`` -> logits
    at stride 8. Its parameters live under ``decoder.`` (official ``decode_head.*`` keys map 1:1 after
    ``convert_segman_checkpoint``)."""

    def __init__(self, **decode_head_kwargs: Any) -> None:
        super().__init__()
        from ssm_apps.vision.segman import (
            SegMANDecoder,
            segman_decoder_kwargs_from_official,
        )

        self.decoder = SegMANDecoder(**segman_decoder_kwargs_from_official(decode_head_kwargs))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.decoder(list(inputs))


class UperNetDecodeHead(nn.Module):
    """``ssm_apps.vision.UperNetHead`` from mmseg ``UPerHead`` kwargs; ``forward(inputs)`` -> logits at stride 4."""

    def __init__(self, in_channels: Sequence[int], channels: int, num_classes: int,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout_ratio: float = 0.1, **mmseg_kwargs: Any) -> None:
        super().__init__()
        from ssm_apps.vision.segmentation_heads import UperNetHead

        rest = _drop_mmseg_keys(mmseg_kwargs, "UperNetHead")
        if rest:
            raise NotImplementedError(f"UperNetHead: unsupported kwargs {sorted(rest)}")
        self.head = UperNetHead(in_channels, channels, num_classes, pool_scales, dropout_ratio)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.head(list(inputs))


REGISTERED = {
    "SegMANEncoder": SegMANBackbone,
    "VMambaBackbone": VMambaBackbone,
    "EfficientVMambaBackbone": EfficientVMambaBackbone,
    "SegMANDecoder": SegMANDecodeHead,
    "UperNetHead": UperNetDecodeHead,
}


def _mmseg_models_registry():
    try:
        from mmseg.registry import MODELS
    except AssertionError as e:  # mmseg/__init__ checks the mmcv version
        raise ImportError(f"mmsegmentation cannot be imported with the installed mmcv ({e}); mmsegmentation 1.2.2 "
                          "needs mmcv < 2.2.0, e.g. mmcv-lite==2.1.0") from None
    except ImportError as e:
        raise ImportError(f"the mmseg plug-in needs mmsegmentation 1.x (pip install 'ssm-apps[mmseg]'): {e}") from None
    try:
        import mmseg.models  # noqa: F401  (what MODELS.build imports on first use)
    except ImportError as e:
        # mmcv-lite has no compiled ops (mmcv._ext), so mmseg.models (and mmseg's own types) cannot load;
        # mark the registry's lazy import as done so building our types does not retry it and fail
        warnings.warn(f"mmseg.models cannot be imported ({e}); only the ssm_apps types are available in "
                      "mmseg's MODELS registry", stacklevel=3)
        MODELS._imported = True
    return MODELS


def register(force: bool = False) -> list[str]:
    """Add our backbones and decode heads to ``mmseg.registry.MODELS``; returns the registered type names.
    Idempotent; ``force=True`` replaces entries of the same name."""
    models = _mmseg_models_registry()
    names = []
    for name, cls in REGISTERED.items():
        if force or models.module_dict.get(name) is not cls:
            models.register_module(name=name, module=cls, force=True)
        names.append(name)
    return names
