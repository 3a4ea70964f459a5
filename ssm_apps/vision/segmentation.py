"""``SegmentationModel``: any timm ``features_only`` backbone + a decode head (UperNet or SegMAN's MMSCopE).

    model = SegmentationModel("vmamba_tiny_s1l8", num_classes=150, head="upernet", aux_head=True)
    logits = model(x)               # (B, classes, H / s, W / s), s the head's output stride
    full = model.predict(x)         # bilinear to (H, W), align_corners False (mmseg inference)
    logits, aux = model.forward_with_aux(x)   # aux: FCN head logits at stride 16 (training), or None

Backbones are created with ``timm.create_model(name, features_only=True, **backbone_kwargs)``; ours
(``vmamba_*``, ``efficientvmamba_*``, ``segman_encoder_*``) are registered by importing
``ssm_apps.vision``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from .segman import SegMANDecoder
from .segmentation_heads import FCNHead, UperNetHead

__all__ = ["HEADS", "SegmentationModel"]

HEADS: dict[str, type[nn.Module]] = {"upernet": UperNetHead, "segman": SegMANDecoder}


class SegmentationModel(nn.Module):
    """A timm backbone's stage maps -> a decode head (+ an optional auxiliary FCN head).

    Args:
        backbone: timm model name (created with ``features_only=True``).
        num_classes: output classes.
        head: "upernet" (``UperNetHead``) or "segman" (``SegMANDecoder``; needs 4 maps, strides 4-32).
        head_kwargs: extra head arguments (e.g. ``channels``).
        aux_head: add mmseg's auxiliary ``FCNHead`` on the stride-16 map (index 2).
        aux_kwargs: extra ``FCNHead`` arguments (default channels 256, one conv, as mmseg's ADE20K configs).
        backbone_kwargs: extra ``timm.create_model`` arguments (e.g. ``out_indices``, ``drop_path_rate``).
        pretrained: load the backbone's pretrained weights through timm.
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        head: str = "upernet",
        head_kwargs: Mapping[str, Any] | None = None,
        aux_head: bool = False,
        aux_kwargs: Mapping[str, Any] | None = None,
        backbone_kwargs: Mapping[str, Any] | None = None,
        pretrained: bool = False,
    ):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"SegmentationModel: argument 'head' must be one of {sorted(HEADS)}; got {head!r}")
        import ssm_apps.vision  # noqa: F401  (registers our timm models)

        self.backbone = timm.create_model(backbone, pretrained=pretrained, features_only=True,
                                          **dict(backbone_kwargs or {}))
        channels = self.backbone.feature_info.channels()
        self.num_classes = num_classes
        self.decode_head = HEADS[head](in_channels=channels, num_classes=num_classes, **dict(head_kwargs or {}))
        self.auxiliary_head = None
        if aux_head:
            aux = {"channels": 256, "num_convs": 1, "in_index": 2, **dict(aux_kwargs or {})}
            if not 0 <= aux["in_index"] < len(channels):
                raise ValueError(f"SegmentationModel: aux in_index {aux['in_index']} outside the {len(channels)} maps")
            self.auxiliary_head = FCNHead(channels[aux["in_index"]], num_classes=num_classes, **aux)

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(main logits, auxiliary logits or None)."""
        feats = self.backbone(x)
        aux = self.auxiliary_head(feats) if self.auxiliary_head is not None else None
        return self.decode_head(feats), aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_head(self.backbone(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits bilinearly resized to the input size (align_corners False)."""
        return F.interpolate(self(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
