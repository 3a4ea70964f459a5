"""HyMamba: MedNeXt-style convolutional encoder, Mamba at the deepest scale, MONAI ``UnetrUpBlock`` decoder.

The segmentation network of MambaMIM (Tang et al., MedIA 2025; official ``models/network/hymamba.py:Hybird``),
as a MONAI-style network: ``HyMamba(spatial_dims=3, in_channels=1, out_channels=14, img_size=96)`` maps
(B, C, D, H, W) -> (B, out_channels, D, H, W) (``spatial_dims=2``: (B, C, H, W)), usable with
``sliding_window_inference`` and ``monai.bundle`` configs.

Layout (channels c0..c4, five scales):

    stem conv3 (c_in -> c0) -> expand[0] conv3 (c0 -> c1) = f1 (full resolution)
    for i = 1..4: max-pool 2 -> stages[i-1] (MedNeXt blocks, width c_i) -> expand[i] conv3 (c_i -> c_{i+1}) = f_{i+1}
                  (the last stage has no expand: f5 = stage output, c4, 1/16 resolution)
    skips[i] = ResBlock(f_{i+1}) for i = 0..3;  f5 -> MambaStage (sin-cos positions, ``depth`` Mamba layers)
    decoder: 4 x UnetrUpBlock (instance norm, residual) 1/16 -> full, ResBlock (c1 -> c0), 1x1 conv -> classes

``scan="raster"`` runs the official unidirectional Mamba over the raster token sequence; ``scan="tri6"``
(3-D) scans the six axis orders through ``selective_scan_3d`` (``ssm_apps.layers.mamba_nd.MambaND``);
2-D grids take "cross4" / "bidi" / "omni8". ``depths[0]``, ``kernels[0]`` and ``exp_r[0]`` are unused, as in
the official code. The spatial size must be a multiple of 16.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..convert import ConvertedStateDict, Rule, convert_checkpoint
from .blocks import (
    MambaStage,
    MedNeXtBlock,
    ResBlock,
    apply_mask,
    conv_nd,
    upsample_mask,
)

__all__ = [
    "HYMAMBA_CONFIGS",
    "OFFICIAL_ENCODER_RULES",
    "HyMamba",
    "HyMambaDecoder",
    "HyMambaEncoder",
    "create_hymamba",
    "official_to_hymamba_kwargs",
]

DOWNSAMPLE = 16

# Official Hybird / Encoder key -> ours (the backward-branch parameters of the official bimamba "v1" Mamba are
# never used by its forward, so they are dropped; the MIM mask token belongs to the pre-training model).
OFFICIAL_ENCODER_RULES: list[Rule] = [
    (r"embeddings\.stem\.", "encoder.stem."),
    (r"embeddings\.expend(\d)\.", lambda m: f"encoder.expand.{int(m.group(1)) - 1}." + m.string[m.end():]),
    (r"embeddings\.layer(\d)\.", lambda m: f"encoder.stages.{int(m.group(1)) - 2}." + m.string[m.end():]),
    (r"embeddings\.encoder(\d)\.", lambda m: f"encoder.skips.{int(m.group(1)) - 1}." + m.string[m.end():]),
    (r"mae\.pos_embed$", "encoder.mamba.pos_embed"),
    (r"mae\.blocks\.\d+\.mamba\.(A_b_log|D_b|conv1d_b\.|x_proj_b\.|dt_proj_b\.)", None),
    (r"mae\.blocks\.(\d+)\.mamba\.", r"encoder.mamba.layers.\1.mixer."),
    (r"mae\.blocks\.(\d+)\.", r"encoder.mamba.layers.\1."),
]
OFFICIAL_DECODER_RULES: list[Rule] = [
    (r"decoder\.decoder([2-5])\.", lambda m: f"decoder.ups.{5 - int(m.group(1))}." + m.string[m.end():]),
    (r"decoder\.decoder1\.", "decoder.head_block."),
    (r"decoder\.out\.conv\.", "decoder.out."),
]

# name -> kwargs; "hymamba_official" is the official build_hybird() (96^3, 14 classes: BTCV).
HYMAMBA_CONFIGS: dict[str, dict[str, Any]] = {
    "hymamba_official": dict(channels=(32, 64, 128, 192, 384), depths=(1, 2, 2, 2, 1), kernels=(3, 3, 3, 3, 3),
                             exp_r=(2, 2, 4, 4, 4), img_size=96, depth=4, in_channels=1, out_channels=14),
    "hymamba_small": dict(channels=(16, 32, 64, 96, 192), depths=(1, 1, 1, 1, 1), kernels=(3, 3, 3, 3, 3),
                          exp_r=(2, 2, 2, 2, 2), img_size=96, depth=2),
    "hymamba_tiny": dict(channels=(8, 8, 16, 16, 24), depths=(1, 1, 1, 2, 1), kernels=(3, 3, 3, 3, 3),
                         exp_r=(2, 2, 4, 2, 2), img_size=48, depth=2),
}


def _five(name: str, value: Sequence[int]) -> tuple[int, ...]:
    value = tuple(int(v) for v in value)
    if len(value) != 5 or min(value) < 1:
        raise ValueError(f"HyMamba: argument '{name}' must be 5 positive integers (one per scale); got {value}")
    return value


def _grid(img_size: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    sizes = (img_size,) * spatial_dims if isinstance(img_size, int) else tuple(img_size)
    if len(sizes) != spatial_dims or any(s % DOWNSAMPLE or s < DOWNSAMPLE for s in sizes):
        raise ValueError(f"HyMamba: argument 'img_size' must be {spatial_dims} multiples of {DOWNSAMPLE}; got {img_size}")
    return tuple(s // DOWNSAMPLE for s in sizes)


class HyMambaEncoder(nn.Module):
    """HyMamba's encoder (also MambaMIM's sparse encoder): returns [skip1, skip2, skip3, skip4, mamba_out].

    Args:
        in_channels: input channels.
        channels: widths c0..c4.
        depths: MedNeXt blocks per scale (depths[0] unused).
        kernels: depthwise kernels per scale (kernels[0] unused).
        exp_r: MedNeXt expansion per scale (exp_r[0] unused).
        img_size: training size (int or per axis), a multiple of 16: fixes the stored position embedding.
        depth: Mamba layers at the deepest scale.
        spatial_dims: 2 or 3.
        scan: "raster" or a fused 2-D/3-D pattern (see module docstring).
        d_state: SSM state size.
        scan_backend: selective-scan backend (None = best).
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (32, 64, 128, 192, 384),
                 depths: Sequence[int] = (1, 2, 2, 2, 1), kernels: Sequence[int] = (3, 3, 3, 3, 3),
                 exp_r: Sequence[int] = (2, 2, 4, 4, 4), img_size: int | Sequence[int] = 96, depth: int = 4,
                 spatial_dims: int = 3, scan: str = "raster", d_state: int = 16,
                 scan_backend: str | None = None) -> None:
        super().__init__()
        c, depths, kernels, exp_r = _five("channels", channels), _five("depths", depths), _five("kernels", kernels), \
            _five("exp_r", exp_r)
        conv = conv_nd(spatial_dims)
        self.spatial_dims, self.channels = spatial_dims, c
        self.stem = conv(in_channels, c[0], 3, padding=1)
        self.expand = nn.ModuleList([conv(c[i], c[i + 1], 3, padding=1) for i in range(4)])
        self.stages = nn.ModuleList([
            nn.ModuleList([MedNeXtBlock(c[i], exp_r[i], kernels[i], spatial_dims) for _ in range(depths[i])])
            for i in range(1, 5)])
        self.skips = nn.ModuleList([ResBlock(c[i], c[i], 3, spatial_dims) for i in range(1, 5)])
        self.pool = (nn.MaxPool3d if spatial_dims == 3 else nn.MaxPool2d)(2)
        self.mamba = MambaStage(c[4], depth, _grid(img_size, spatial_dims), scan, d_state, scan_backend)

    @property
    def feature_channels(self) -> list[int]:
        """Channels of the five returned maps (full, 1/2, 1/4, 1/8, 1/16 resolution)."""
        return [self.channels[1], self.channels[2], self.channels[3], self.channels[4], self.channels[4]]

    def forward_intermediates(self, x: torch.Tensor, active: torch.Tensor | None = None,
                              keep_ids: torch.Tensor | None = None,
                              fill: torch.Tensor | None = None) -> dict[str, Any]:
        """Run the encoder, returning every intermediate.

        Args:
            x: (B, C_in, *spatial), spatial a multiple of 16.
            active: optional (B, 1, *spatial / 16) bool visibility mask: the CNN stages then run sparsely.
            keep_ids: optional (B, n) deepest-scale tokens the Mamba stage runs (see ``MambaStage``).
            fill: the value of dropped tokens (with ``keep_ids``).

        Returns:
            dict with ``pre_skips`` (f1..f4 before the skip blocks), ``skips`` (their ResBlock outputs),
            ``deep`` (the 1/16 CNN map) and ``mamba`` (the Mamba-stage output).
        """
        if x.dim() != self.spatial_dims + 2 or any(s % DOWNSAMPLE for s in x.shape[2:]):
            raise ValueError(f"HyMamba: input must be (B, C, {'D, H, W' if self.spatial_dims == 3 else 'H, W'}) "
                             f"with every spatial size a multiple of {DOWNSAMPLE}; got {tuple(x.shape)}")

        def mask_at(t: torch.Tensor) -> torch.Tensor | None:
            return None if active is None else upsample_mask(active, t.shape[2:])

        h = self.stem(x)
        h = apply_mask(h, mask_at(h))
        pre = []
        for i in range(5):
            if i > 0:
                h = self.pool(h)
                m = mask_at(h)
                h = apply_mask(h, m)
                for block in self.stages[i - 1]:
                    h = block(h, m)
            if i < 4:
                h = self.expand[i](h)
                h = apply_mask(h, mask_at(h))
                pre.append(h)
        skips = [blk(f, mask_at(f)) for blk, f in zip(self.skips, pre)]
        return {"pre_skips": pre, "skips": skips, "deep": h, "mamba": self.mamba(h, keep_ids, fill)}

    def forward(self, x: torch.Tensor, active: torch.Tensor | None = None, keep_ids: torch.Tensor | None = None,
                fill: torch.Tensor | None = None) -> list[torch.Tensor]:
        """(B, C_in, *spatial) -> [skip1 (c1, full), skip2 (c2, 1/2), skip3 (c3, 1/4), skip4 (c4, 1/8),
        mamba (c4, 1/16)]."""
        out = self.forward_intermediates(x, active, keep_ids, fill)
        return [*out["skips"], out["mamba"]]


class HyMambaDecoder(nn.Module):
    """Four MONAI ``UnetrUpBlock`` (transposed conv 2 -> concat skip -> residual block, ``norm_name``), then a
    ``ResBlock`` (c1 -> c0) and a 1x1 conv to ``out_channels``.

    Args:
        channels: widths c0..c4.
        out_channels: classes.
        spatial_dims: 2 or 3.
        norm_name: MONAI norm of the up blocks (official: "instance").
    """

    def __init__(self, channels: Sequence[int], out_channels: int, spatial_dims: int = 3,
                 norm_name: str | tuple = "instance") -> None:
        super().__init__()
        from monai.networks.blocks import UnetrUpBlock

        c = channels
        pairs = [(c[4], c[4]), (c[4], c[3]), (c[3], c[2]), (c[2], c[1])]
        self.ups = nn.ModuleList([
            UnetrUpBlock(spatial_dims, cin, cout, kernel_size=3, upsample_kernel_size=2, norm_name=norm_name,
                         res_block=True) for cin, cout in pairs])
        self.head_block = ResBlock(c[1], c[0], 3, spatial_dims)
        self.out = conv_nd(spatial_dims)(c[0], out_channels, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """[skip1, skip2, skip3, skip4, deep] -> logits (B, out_channels, *full resolution)."""
        s1, s2, s3, s4, h = features
        for up, skip in zip(self.ups, (s4, s3, s2, s1)):
            h = up(h, skip)
        return self.out(self.head_block(h))


class HyMamba(nn.Module):
    """HyMamba segmentation network (MONAI style).

    Args:
        in_channels: input channels.
        out_channels: segmentation classes (incl. background).
        img_size: training / sliding-window size (int or per axis), a multiple of 16.
        channels: widths c0..c4 (official preset: 32, 64, 128, 192, 384).
        depths: MedNeXt blocks per scale (depths[0] unused).
        kernels: depthwise kernels per scale.
        exp_r: MedNeXt expansion ratios.
        depth: Mamba layers at 1/16.
        spatial_dims: 3 (volumes) or 2 (images).
        scan: "raster" (official, one direction) or "tri6" (3-D six-route scan) / "cross4" etc. (2-D).
        norm_name: MONAI norm of the decoder's up blocks.
        d_state: SSM state size.
        scan_backend: selective-scan backend (None = best: Triton on CUDA).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 14, img_size: int | Sequence[int] = 96,
                 channels: Sequence[int] = (32, 64, 128, 192, 384), depths: Sequence[int] = (1, 2, 2, 2, 1),
                 kernels: Sequence[int] = (3, 3, 3, 3, 3), exp_r: Sequence[int] = (2, 2, 4, 4, 4), depth: int = 4,
                 spatial_dims: int = 3, scan: str = "raster", norm_name: str | tuple = "instance",
                 d_state: int = 16, scan_backend: str | None = None) -> None:
        super().__init__()
        self.encoder = HyMambaEncoder(in_channels, channels, depths, kernels, exp_r, img_size, depth, spatial_dims,
                                      scan, d_state, scan_backend)
        self.decoder = HyMambaDecoder(channels, out_channels, spatial_dims, norm_name)
        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in_channels, *spatial) -> logits (B, out_channels, *spatial)."""
        return self.decoder(self.encoder(x))

    def no_weight_decay(self) -> set[str]:
        return set()

    def load_encoder(self, checkpoint: Mapping[str, Any]) -> ConvertedStateDict:
        """Load encoder weights from a pre-training checkpoint: ours (a MambaMIM / MedicalPretrainTask
        state dict, keys ``encoder.*`` or ``model.encoder.*``) or the official one (``sparse_encoder.*`` of a
        MambaMIM state dict, or the ``embeddings.*`` / ``mae.*`` encoder file main.py saves).

        Returns:
            The loaded encoder state dict; ``.filled`` lists the encoder keys kept at their initial values
            (none when the checkpoint fits), ``len(result)`` the number of loaded keys.
        """
        from .mambamim import encoder_state_from_checkpoint

        state = encoder_state_from_checkpoint(checkpoint, self.encoder)
        self.encoder.load_state_dict(state, strict=True)
        return state

    @classmethod
    def from_official(cls, official_kwargs: Mapping[str, Any],
                      official_state_dict: Mapping[str, torch.Tensor]) -> HyMamba:
        """Build from the official ``Hybird(in_channel, n_classes, channels, depths, kernels, exp_r, img_size,
        depth)`` arguments and load its state dict (raster scan, instance-norm decoder)."""
        model = cls(**official_to_hymamba_kwargs(official_kwargs))
        state = convert_checkpoint(official_state_dict, model, OFFICIAL_ENCODER_RULES + OFFICIAL_DECODER_RULES,
                                   "HyMamba", ignore=[r"mae\.mask_token"])
        model.load_state_dict(state, strict=True)
        return model


def official_to_hymamba_kwargs(official_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The official ``Hybird`` / ``Encoder`` arguments -> ``HyMamba`` / ``HyMambaEncoder`` arguments."""
    names = {"in_channel": "in_channels", "n_classes": "out_channels", "channels": "channels", "depths": "depths",
             "kernels": "kernels", "exp_r": "exp_r", "img_size": "img_size", "depth": "depth"}
    ignored = {"norm_layer", "sparse"}
    unknown = sorted(set(official_kwargs) - set(names) - ignored)
    if unknown:
        raise ValueError(f"HyMamba.from_official: unknown official arguments {unknown}; expected {sorted(names)}")
    return {names[k]: v for k, v in official_kwargs.items() if k in names}


def create_hymamba(name: str = "hymamba_official", **kwargs: Any) -> HyMamba:
    """A named preset (``HYMAMBA_CONFIGS``) with any argument overridden, e.g.
    ``create_hymamba("hymamba_official", scan="tri6")``."""
    if name not in HYMAMBA_CONFIGS:
        raise ValueError(f"create_hymamba: argument 'name' must be one of {sorted(HYMAMBA_CONFIGS)}; got {name!r}")
    return HyMamba(**{**HYMAMBA_CONFIGS[name], **kwargs})
