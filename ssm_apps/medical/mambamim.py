"""MambaMIM pre-training: bottom-up hybrid masking, sparse CNN stages, token-dropping Mamba stage, TOKI,
SparK-style densify + light decoder, MSE on masked patches with per-patch normalised targets.

Forward of ``MambaMIM(x, active)`` (x (B, 1, D, H, W), active (B, 1, f, f, f) bool, True = visible, f = size/16):

1. mask: drawn at the deepest scale (``random_mask``: ``round(f^3 (1 - mask_ratio))`` visible tokens per sample),
   nearest-upsampled to every scale; the input is multiplied by the full-resolution mask.
2. sparse encoder (``HyMambaEncoder`` with ``active``): every conv / pool / LayerNorm output times the mask at its
   scale (SparK); the Mamba stage runs only the kept tokens (visible first, raster order) and fills the others
   with ``mamba_mask_token``.
3. densify, deepest first: masked positions of the Mamba output get TOKI tokens (``toki_interpolate``), those of
   the CNN skips a learned per-scale ``mask_tokens[i]``; then ``densify_projs[i]`` (1x1 conv at 1/16, 3x3 conv
   elsewhere) to the decoder widths ``width / 2^i``.
4. ``LightDecoder``: UNet blocks (transposed conv 2 + 2 x (conv3-BN-ReLU)) with fusion of the densified skips,
   1x1 conv to one channel: the reconstruction (B, 1, D, H, W) in per-patch normalised units.
5. loss: 16^3 patches; target = (patch - mean) / sqrt(unbiased var + 1e-6); mean squared error per patch,
   averaged over the masked patches of the batch.

TOKI (state space token interpolation) for sample b, tokens X (L, C) of the Mamba stage output in raster order,
visible flags with positions 0 and L-1 forced visible, and consecutive flagged positions p < q (gap g = q - p):

    xt_k = (1 - a_k) X[p] + a_k X[q],  a_k = k / (g - 1) (0 when g = 1),  k = 0..g-1
    z[p + k] = sum_{m <= k} A^(g-1-m) xt_m,     z[L-1] = A X[L-1]

computed for all positions at once (powers of A, one gather, a segment-wise cumulative sum as one masked matmul).
Only masked positions use z. ``official_reshape=True`` reproduces the official code, which reshapes the (L, C)
result to (C, f, f, f) without transposing (tokens and channels scrambled); ``official_keep=True`` reproduces the
official ``random_masking``, which keeps ``sum(mask)`` over the *whole batch* tokens per sample (its visible
ones followed by masked ones). ``from_official`` sets both; our defaults are the formula and per-sample keeping.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..convert import (
    ConvertedStateDict,
    Rule,
    apply_rules,
    finish_conversion,
    unwrap_checkpoint,
)
from .blocks import upsample_mask
from .hymamba import (
    DOWNSAMPLE,
    OFFICIAL_ENCODER_RULES,
    HyMambaEncoder,
    official_to_hymamba_kwargs,
)

__all__ = ["LightDecoder", "MambaMIM", "encoder_state_from_checkpoint", "patchify", "random_mask", "toki_interpolate"]


def random_mask(batch: int, grid: Sequence[int], mask_ratio: float, device: torch.device | str | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 1, *grid) bool visibility mask with ``round(prod(grid) * (1 - mask_ratio))`` visible tokens per sample."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"random_mask: argument 'mask_ratio' must be in [0, 1); got {mask_ratio}")
    length = math.prod(grid)
    keep = max(1, round(length * (1 - mask_ratio)))
    idx = torch.rand(batch, length, generator=generator).argsort(dim=1)[:, :keep]
    active = torch.zeros(batch, length, dtype=torch.bool).scatter_(1, idx, True)
    return active.view(batch, 1, *grid).to(device)


def toki_interpolate(tokens: torch.Tensor, active: torch.Tensor, A: torch.Tensor,
                     official_reshape: bool = False) -> torch.Tensor:
    """TOKI tokens for every position (see the module docstring for the formula).

    Args:
        tokens: (B, C, *grid) Mamba-stage output.
        active: (B, 1, *grid) bool, True = visible.
        A: (C, C) (or (1, C, C)) interpolation matrix.
        official_reshape: reshape the (L, C) result to (C, *grid) as the official code does, instead of transposing.

    Returns:
        (B, C, *grid).
    """
    b, c, *grid = tokens.shape
    if active.shape != (b, 1, *grid):
        raise ValueError(f"toki_interpolate: argument 'active' must be (B, 1, *grid) = {(b, 1, *grid)}; "
                         f"got {tuple(active.shape)}")
    with torch.autocast(tokens.device.type, enabled=False):  # matrix powers in float32 even under autocast
        return _toki(tokens.float(), active, A.float().reshape(c, c), official_reshape).to(tokens.dtype)


def _toki(tokens: torch.Tensor, active: torch.Tensor, A: torch.Tensor, official_reshape: bool) -> torch.Tensor:
    b, c, *grid = tokens.shape
    length = math.prod(grid)
    x = tokens.flatten(2).transpose(1, 2)  # (B, L, C)
    pos = torch.arange(length, device=tokens.device).expand(b, length)
    flag = active.flatten(1).clone()
    flag[:, 0] = True
    flag[:, -1] = True
    start = torch.where(flag, pos, torch.zeros_like(pos)).cummax(dim=1).values  # last flagged <= p
    nxt = torch.where(flag, pos, torch.full_like(pos, length)).flip(1).cummin(dim=1).values.flip(1)  # first >= p
    end = torch.cat([nxt[:, 1:], torch.full_like(nxt[:, :1], length - 1)], dim=1)  # first flagged > p
    last = pos == length - 1
    gap, k = end - start, pos - start
    alpha = torch.where(gap > 1, k / (gap - 1).clamp(min=1), torch.zeros_like(k, dtype=torch.float)).to(x.dtype)
    x_start = torch.gather(x, 1, start[..., None].expand(-1, -1, c))
    x_end = torch.gather(x, 1, end[..., None].expand(-1, -1, c))
    xt = torch.where(last[..., None], x, (1 - alpha[..., None]) * x_start + alpha[..., None] * x_end)
    exponent = torch.where(last, torch.ones_like(pos), gap - 1 - k)  # (B, L)
    max_exp = int(exponent.max())
    powers = [torch.eye(c, dtype=A.dtype, device=A.device)]
    for _ in range(max_exp):
        powers.append(powers[-1] @ A)
    q = torch.einsum("ecd,bld->blec", torch.stack(powers), xt)  # (B, L, E+1, C): A^e xt for every e
    terms = torch.gather(q, 2, exponent[..., None, None].expand(-1, -1, 1, c)).squeeze(2)  # (B, L, C)
    same = (start[:, :, None] == start[:, None, :]) & (pos[:, None, :] <= pos[:, :, None])  # (B, p, q)
    z = torch.einsum("bpq,bqc->bpc", same.to(terms.dtype), terms)
    if official_reshape:
        return z.reshape(b, c, *grid)
    return z.transpose(1, 2).reshape(b, c, *grid)


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, L, patch^3 * C): non-overlapping cubes, raster order of the patch grid."""
    b, c, *sizes = x.shape
    grid = [s // patch for s in sizes]
    x = x.reshape(b, c, grid[0], patch, grid[1], patch, grid[2], patch)
    return x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, math.prod(grid), patch ** 3 * c)


def unpatchify(x: torch.Tensor, grid: Sequence[int], patch: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, L, patch^3 * C) -> (B, C, *grid * patch)."""
    b = x.shape[0]
    c = x.shape[-1] // patch ** 3
    x = x.reshape(b, grid[0], grid[1], grid[2], patch, patch, patch, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return x.reshape(b, c, grid[0] * patch, grid[1] * patch, grid[2] * patch)


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


class _UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up_sample = nn.ConvTranspose3d(cin, cin, 2, stride=2)
        self.conv = nn.Sequential(*_conv_bn_relu(cin, cout), *_conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.up_sample(x))


class _FuseBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(*_conv_bn_relu(cin, cout), *_conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class LightDecoder(nn.Module):
    """SparK's light UNet decoder: widths ``width / 2^i``; ``log2(up_sample_ratio)`` up blocks; before up block
    i > 0 the running map is concatenated with the densified feature i and fused (2 x conv3-BN-ReLU).

    Args:
        up_sample_ratio: total upsampling (16).
        width: width at the deepest scale.
        out_channels: reconstruction channels.
    """

    def __init__(self, up_sample_ratio: int = 16, width: int = 768, out_channels: int = 1) -> None:
        super().__init__()
        n = round(math.log2(up_sample_ratio))
        if 2 ** n != up_sample_ratio:
            raise ValueError(f"LightDecoder: argument 'up_sample_ratio' must be a power of 2; got {up_sample_ratio}")
        if width % 2 ** n:
            raise ValueError(f"LightDecoder: argument 'width' must be divisible by {2 ** n}; got {width}")
        self.width = width
        w = [width // 2 ** i for i in range(n + 1)]
        self.dec = nn.ModuleList([_UpBlock(w[i], w[i + 1]) for i in range(n)])
        self.fuse = nn.ModuleList([nn.Identity()] + [_FuseBlock(2 * w[i], w[i]) for i in range(1, n)])
        self.proj = nn.Conv3d(w[-1], out_channels, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.ConvTranspose3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """features: densified maps, deepest first (widths width, width/2, ...); extra ones are unused."""
        x = features[0]
        for i, block in enumerate(self.dec):
            if i > 0:
                x = self.fuse[i](torch.cat([x, features[i]], dim=1))
            x = block(x)
        return self.proj(x)


class MambaMIM(nn.Module):
    """MambaMIM pre-training model around a HyMamba encoder.

    Args:
        in_channels: input channels (1 for CT).
        channels, depths, kernels, exp_r, depth: the HyMamba encoder (see ``HyMambaEncoder``).
        img_size: pre-training crop size (multiple of 16).
        mask_ratio: fraction of masked deepest-scale tokens (0.75).
        decoder_width: width of the light decoder at 1/16 (official 768).
        official_reshape: TOKI's official reshape quirk (see module docstring).
        official_keep: the official batch-coupled token keeping of the Mamba stage.
        d_state: SSM state size.
        scan_backend: selective-scan backend.
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (32, 64, 128, 192, 384),
                 depths: Sequence[int] = (1, 2, 2, 2, 1), kernels: Sequence[int] = (3, 3, 3, 3, 3),
                 exp_r: Sequence[int] = (2, 2, 4, 4, 4), img_size: int = 96, depth: int = 4, mask_ratio: float = 0.75,
                 decoder_width: int = 768, official_reshape: bool = False, official_keep: bool = False,
                 d_state: int = 16, scan_backend: str | None = None) -> None:
        super().__init__()
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"MambaMIM: argument 'mask_ratio' must be in [0, 1); got {mask_ratio}")
        self.encoder = HyMambaEncoder(in_channels, channels, depths, kernels, exp_r, img_size, depth, 3, "raster",
                                      d_state, scan_backend)
        self.img_size, self.mask_ratio = img_size, mask_ratio
        self.official_reshape, self.official_keep = official_reshape, official_keep
        widths = self.encoder.feature_channels[::-1]  # deepest first
        c = widths[0]
        self.mamba_mask_token = nn.Parameter(torch.zeros(1, 1, c))
        nn.init.normal_(self.mamba_mask_token, std=0.02)
        self.A_interpolation = nn.Parameter(torch.zeros(1, c, c))
        self.mask_tokens = nn.ParameterList()
        self.densify_projs = nn.ModuleList()
        for i, e in enumerate(widths):
            token = nn.Parameter(torch.zeros(1, e, 1, 1, 1))
            nn.init.trunc_normal_(token, std=0.02, a=-0.02, b=0.02)
            self.mask_tokens.append(token)
            d = decoder_width // 2 ** i
            k = 1 if i == 0 else 3
            self.densify_projs.append(nn.Identity() if i == 0 and e == d else nn.Conv3d(e, d, k, padding=k // 2))
        self.decoder = LightDecoder(DOWNSAMPLE, decoder_width, in_channels)

    def no_weight_decay(self) -> set[str]:
        return {"mamba_mask_token", "A_interpolation"} | {f"mask_tokens.{i}" for i in range(len(self.mask_tokens))}

    def grid(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(s // DOWNSAMPLE for s in x.shape[2:])

    def keep_ids(self, active: torch.Tensor, ids_shuffle: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n) tokens the Mamba stage runs: visible first in raster order (or ``ids_shuffle``'s order),
        n = the most visible tokens of a sample (official_keep: their sum over the batch), at most L."""
        flat = active.flatten(1)
        counts = flat.sum(dim=1)
        n = int(counts.sum() if self.official_keep else counts.max())
        n = min(max(n, 1), flat.shape[1])
        if ids_shuffle is None:
            ids_shuffle = torch.argsort((~flat).to(torch.int8), dim=1, stable=True)
        return ids_shuffle.reshape(flat.shape)[:, :n]

    def forward(self, x: torch.Tensor, active: torch.Tensor | None = None,
                ids_shuffle: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Masked reconstruction.

        Args:
            x: (B, C, D, H, W) crops of ``img_size`` (any multiple of 16 works).
            active: (B, 1, D/16, H/16, W/16) bool, True = visible; None draws one with ``mask_ratio``.
            ids_shuffle: optional (B, L[, 1]) token order of the Mamba stage (visible first), e.g. the one a
                recorded official run used; default raster order.

        Returns:
            dict: ``loss`` (scalar), ``reconstruction`` (B, C, D, H, W) decoder output (normalised patch units),
            ``reconstruction_image`` (input intensities: input where visible, de-normalised reconstruction
            where masked), ``active``, ``mamba`` (Mamba-stage output) and ``toki`` (TOKI tokens).
        """
        grid = self.grid(x)
        if x.dim() != 5 or any(s % DOWNSAMPLE for s in x.shape[2:]):
            raise ValueError(f"MambaMIM: argument 'x' must be (B, C, D, H, W) with sizes multiples of {DOWNSAMPLE}; "
                             f"got {tuple(x.shape)}")
        if active is None:
            active = random_mask(x.shape[0], grid, self.mask_ratio, x.device)
        if active.shape != (x.shape[0], 1, *grid) or active.dtype != torch.bool:
            raise ValueError(f"MambaMIM: argument 'active' must be bool (B, 1, *grid) = {(x.shape[0], 1, *grid)}; "
                             f"got {tuple(active.shape)} {active.dtype}")
        masked = x * upsample_mask(active, x.shape[2:]).to(x.dtype)
        feats = self.encoder(masked, active, self.keep_ids(active, ids_shuffle), self.mamba_mask_token)[::-1]
        toki = toki_interpolate(feats[0], active, self.A_interpolation, self.official_reshape)
        to_dec, cur = [], active
        for i, feat in enumerate(feats):
            fill = toki if i == 0 else self.mask_tokens[i].expand_as(feat)
            to_dec.append(self.densify_projs[i](torch.where(cur, feat, fill)))
            cur = upsample_mask(cur, [2 * s for s in cur.shape[2:]])
        rec = self.decoder(to_dec)
        target = patchify(x, DOWNSAMPLE)
        mean = target.mean(dim=-1, keepdim=True)
        std = (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
        per_patch = ((patchify(rec, DOWNSAMPLE) - (target - mean) / std) ** 2).mean(dim=-1)  # (B, L)
        hidden = (~active).flatten(1).to(per_patch.dtype)
        loss = (per_patch * hidden).sum() / (hidden.sum() + 1e-8)
        rec_img = unpatchify(patchify(rec, DOWNSAMPLE) * std + mean, grid, DOWNSAMPLE)
        full = upsample_mask(active, x.shape[2:])
        return {"loss": loss, "reconstruction": rec, "reconstruction_image": torch.where(full, x, rec_img),
                "active": active, "mamba": feats[0], "toki": toki}

    @classmethod
    def from_official(cls, official_kwargs: Mapping[str, Any],
                      official_state_dict: Mapping[str, torch.Tensor]) -> MambaMIM:
        """Build from the official constructor arguments ``{"encoder": Encoder kwargs, "sparse_encoder":
        {"input_size", "sbn"}, "decoder": {"up_sample_ratio", "width", "sbn"}, "mambamim": {"mask_ratio",
        "densify_norm", "sbn"}}`` and load the official ``MambaMIM`` state dict (official TOKI reshape and
        batch-coupled token keeping switched on)."""
        for part in ("encoder", "sparse_encoder", "decoder", "mambamim"):
            if part not in official_kwargs:
                raise ValueError(f"MambaMIM.from_official: official_kwargs lacks {part!r}")
        enc = official_to_hymamba_kwargs(official_kwargs["encoder"])
        size = official_kwargs["sparse_encoder"].get("input_size", enc.get("img_size", 96))
        if size != enc.get("img_size", 96):
            raise ValueError(f"MambaMIM.from_official: sparse_encoder input_size {size} != encoder img_size "
                             f"{enc.get('img_size')}")
        dec = official_kwargs["decoder"]
        if dec.get("up_sample_ratio", DOWNSAMPLE) != DOWNSAMPLE:
            raise ValueError(f"MambaMIM.from_official: decoder up_sample_ratio must be {DOWNSAMPLE}")
        model = cls(**enc, mask_ratio=official_kwargs["mambamim"].get("mask_ratio", 0.6),
                    decoder_width=dec.get("width", 768), official_reshape=True, official_keep=True)
        sd = unwrap_checkpoint(official_state_dict)
        mapped, unmatched, origins, dropped = apply_rules(sd, OFFICIAL_MIM_RULES)
        state = finish_conversion(mapped, model, "MambaMIM", unmatched, origins, dropped=dropped)
        model.load_state_dict(state, strict=True)
        return model


OFFICIAL_MIM_RULES: list[Rule] = [
    (r"sparse_encoder\.mae\.mask_token$", "mamba_mask_token"),
    *[(r"sparse_encoder\." + pattern, repl) for pattern, repl in OFFICIAL_ENCODER_RULES],
    (r"A_interpolation$", "A_interpolation"),
    (r"dense_decoder\.fuse\.0\.", None),  # built but never used by the official forward
    (r"dense_decoder\.", "decoder."),
    (r"densify_projs\.", "densify_projs."),
    (r"mask_tokens\.", "mask_tokens."),
]


def _encoder_rules(keys: Sequence[str]) -> list[Rule]:
    """Rules mapping a checkpoint's encoder keys to ``encoder.*`` (everything else dropped)."""
    if any(k.startswith("sparse_encoder.") for k in keys):  # official MambaMIM state dict
        rules = [(r"sparse_encoder\." + p, r) for p, r in OFFICIAL_ENCODER_RULES]
    elif any(k.startswith(("embeddings.", "mae.")) for k in keys):  # official encoder file / Hybird
        rules = list(OFFICIAL_ENCODER_RULES)
    else:  # ours: MambaMIM / HyMamba state dict, or a Lightning checkpoint of our tasks
        rules = [(r"(model\.)?encoder\.", "encoder.")]
    return [*rules, (r".", None)]


def encoder_state_from_checkpoint(checkpoint: Mapping[str, Any], encoder: nn.Module) -> ConvertedStateDict:
    """The ``HyMambaEncoder`` state dict inside a pre-training / segmentation checkpoint (ours or official).

    The fixed sin-cos position embedding is always the encoder's own (recomputed for its img_size), so a
    checkpoint pre-trained at another crop size loads too.
    """
    sd = unwrap_checkpoint(checkpoint)
    mapped, unmatched, origins, dropped = apply_rules(sd, _encoder_rules(list(sd)))
    inner = {k[len("encoder."):]: v for k, v in mapped.items() if not k.endswith("mamba.pos_embed")}
    if not inner:
        raise ValueError(f"no HyMamba encoder weights in the checkpoint (keys start with "
                         f"{sorted({k.split('.')[0] for k in sd})[:10]})")
    origins = {k[len("encoder."):]: v for k, v in origins.items()}
    return finish_conversion(inner, encoder, "HyMamba encoder", unmatched, origins, fill_missing=[r"mamba\.pos_embed$"],
                             dropped=dropped)
