"""Segmentation decode heads for any ``features_only`` backbone: UperNet (PPM + FPN) and the FCN auxiliary head.

Both follow mmsegmentation 1.x (``UPerHead``, ``FCNHead``): every conv is conv -> BatchNorm -> ReLU
(``ConvBNReLU``, mmcv's ``ConvModule`` with a norm: no conv bias), resizes are bilinear with
``align_corners=False``, and the classifier is Dropout2d -> conv1x1 (``conv_seg``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBNReLU", "FCNHead", "UperNetHead"]


class ConvBNReLU(nn.Module):
    """conv (no bias) -> BatchNorm2d -> ReLU; parameter names ``conv``, ``bn`` as mmcv's ConvModule."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class _ClassifierMixin(nn.Module):
    def _make_classifier(self, channels: int, num_classes: int, dropout_ratio: float) -> None:
        if num_classes < 1:
            raise ValueError(f"{type(self).__name__}: num_classes must be >= 1; got {num_classes}")
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, 0, 0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def cls_seg(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(x))


class UperNetHead(_ClassifierMixin):
    """UperNet: pyramid pooling on the last map + a top-down FPN over all maps, fused at the finest stride.

    Args:
        in_channels: channels of the backbone maps, finest first.
        channels: head width (mmseg's ADE20K configs: 512).
        num_classes: output classes.
        pool_scales: PPM output sizes.
        dropout_ratio: Dropout2d before the classifier.

    ``forward(features)`` -> logits (B, classes, H_0, W_0) at the finest map's resolution.
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 512, num_classes: int = 150,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout_ratio: float = 0.1):
        super().__init__()
        if len(in_channels) < 2:
            raise ValueError(f"UperNetHead: in_channels needs >= 2 maps; got {list(in_channels)}")
        self.in_channels, self.channels, self.num_classes = list(in_channels), channels, num_classes
        self.pool_scales = tuple(pool_scales)
        last = in_channels[-1]
        self.psp_modules = nn.ModuleList(
            [nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvBNReLU(last, channels, 1)) for s in self.pool_scales]
        )
        self.bottleneck = ConvBNReLU(last + len(self.pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList([ConvBNReLU(c, channels, 1) for c in in_channels[:-1]])
        self.fpn_convs = nn.ModuleList([ConvBNReLU(channels, channels, 3, padding=1) for _ in in_channels[:-1]])
        self.fpn_bottleneck = ConvBNReLU(len(in_channels) * channels, channels, 3, padding=1)
        self._make_classifier(channels, num_classes, dropout_ratio)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [_resize(m(x), x.shape[-2:]) for m in self.psp_modules]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.in_channels):
            raise ValueError(f"UperNetHead: expected {len(self.in_channels)} maps; got {len(features)}")
        laterals = [conv(features[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(features[-1]))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)] + [laterals[-1]]
        size = outs[0].shape[-2:]
        fused = self.fpn_bottleneck(torch.cat([outs[0], *[_resize(o, size) for o in outs[1:]]], dim=1))
        return self.cls_seg(fused)


class FCNHead(_ClassifierMixin):
    """FCN head on one backbone map (mmseg's auxiliary head): ``num_convs`` 3x3 ConvBNReLU, optional concat
    of the input, classifier.

    Args:
        in_channels: channels of the map it reads.
        channels: width.
        num_classes: output classes.
        num_convs: number of 3x3 convs.
        concat_input: concatenate the input before a final 3x3 conv.
        dropout_ratio: Dropout2d before the classifier.
        in_index: which backbone map it reads (mmseg's ADE20K UperNet configs: 2, stride 16).
    """

    def __init__(self, in_channels: int, channels: int = 256, num_classes: int = 150, num_convs: int = 1,
                 concat_input: bool = False, dropout_ratio: float = 0.1, in_index: int = 2):
        super().__init__()
        self.in_index, self.concat_input = in_index, concat_input
        convs = [ConvBNReLU(in_channels if i == 0 else channels, channels, 3, padding=1) for i in range(num_convs)]
        self.convs = nn.Sequential(*convs) if convs else nn.Identity()
        self.conv_cat = ConvBNReLU(in_channels + channels, channels, 3, padding=1) if concat_input else None
        self._make_classifier(channels if num_convs or concat_input else in_channels, num_classes, dropout_ratio)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = features[self.in_index]
        y = self.convs(x)
        if self.conv_cat is not None:
            y = self.conv_cat(torch.cat([x, y], dim=1))
        return self.cls_seg(y)
