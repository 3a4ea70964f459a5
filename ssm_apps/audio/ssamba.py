"""SSAMBA: self-supervised audio representation learning with a bidirectional (Vim) Mamba encoder.

Shiri et al., "SSAMBA: Self-Supervised Audio Representation Learning with Mamba State Space Model",
SLT 2024; official code SiavashShams/ssamba (SSAST's recipe on hustvl/Vim's encoder).

Layout (as the official model computes it):

- input fbank (B, T frames, F mel) -> (B, 1, F, T) -> Conv2d patch embedding (16 x 16 patches, stride
  16 for pretraining, 10 for fine-tuning) -> tokens flattened frequency-major (index = f * t_dim + t);
- one cls token at position 0, learned absolute position embedding over [cls, patches];
- ``depth`` Vim blocks ``r = h if r is None else r + drop_path(h); h = BiMamba_v2(Norm(r))``, run as
  ``depth / 2`` pairs: the second block of a pair sees the time-reversed sequence and the pair's
  hidden states and residuals are **summed** (``h = h_f + flip(h_b)``, ``r = r_f + flip(r_b)``);
- final ``norm_f(r + drop_path(h))``, and ``norm_f`` applied **a second time** (official quirk);
- heads: ``mean`` pooling over the patch tokens (cls excluded) or the cls token -> LayerNorm + Linear;
  for pretraining a learnable mask embedding and two MLP heads predicting the 256 values of a masked
  16 x 16 patch (InfoNCE "mpc" and MSE "mpg").

Presets: :func:`ssamba_tiny` (192 wide), :func:`ssamba_small` (384), :func:`ssamba_base` (768), 24
blocks each (12 bidirectional pairs). Official checkpoints load with :meth:`SSAMBA.from_official`.
"""
from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..convert import (
    ConversionError,
    ConvertedStateDict,
    apply_rules,
    finish_conversion,
    unwrap_checkpoint,
)
from ..layers import BiMamba
from .masking import check_num_masked, draw_masks

Pooling = Literal["mean", "cls"]
DEFAULT_MASK_SHARE = 0.6


def _pair(v: int | tuple[int, int], name: str) -> tuple[int, int]:
    out = (v, v) if isinstance(v, int) else tuple(v)
    if len(out) != 2 or any(int(x) <= 0 for x in out):
        raise ValueError(f"argument {name!r} must be a positive int or a pair of them; got {v!r}")
    return int(out[0]), int(out[1])


def patch_grid(input_fdim: int, input_tdim: int, patch_size: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    """(f_dim, t_dim) patches of a (input_fdim, input_tdim) spectrogram (a strided conv's output size)."""
    f_dim = (input_fdim - patch_size[0]) // stride[0] + 1
    t_dim = (input_tdim - patch_size[1]) // stride[1] + 1
    if f_dim <= 0 or t_dim <= 0:
        raise ValueError(f"a ({input_fdim}, {input_tdim}) spectrogram holds no {patch_size} patch")
    return f_dim, t_dim


def resize_pos_embed(pos_embed: torch.Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int],
                     num_prefix_tokens: int = 1) -> torch.Tensor:
    """Adapt a learned position embedding to a new patch grid as the official fine-tuning constructor does.

    Time axis first: centre crop when the new grid is shorter, else bilinear interpolation
    (``align_corners=False``); then the frequency axis the same way. The prefix (cls) slots are kept.
    (The official code interpolates time to a hard-coded 8 frequency rows and crops frequency with the
    time size; both equal the rule here for 128 mel bins and 16-high patches, the only shipped setting.)

    Args:
        pos_embed: (1, num_prefix_tokens + src_f * src_t, D).
        src_grid: (src_f, src_t) patch grid ``pos_embed`` was learned for.
        dst_grid: (f, t) patch grid of the new model.
        num_prefix_tokens: leading non-patch tokens.

    Returns:
        (1, num_prefix_tokens + f * t, D).
    """
    (pf, pt), (f, t) = src_grid, dst_grid
    dim = pos_embed.shape[-1]
    if pos_embed.shape[1] != num_prefix_tokens + pf * pt:
        raise ValueError(f"argument 'pos_embed' has {pos_embed.shape[1]} slots; the grid {src_grid} needs "
                         f"{num_prefix_tokens + pf * pt}")
    prefix = pos_embed[:, :num_prefix_tokens]
    grid = pos_embed[:, num_prefix_tokens:].transpose(1, 2).reshape(1, dim, pf, pt)
    if t < pt:
        grid = grid[..., pt // 2 - t // 2: pt // 2 - t // 2 + t]
    else:
        grid = F.interpolate(grid, size=(pf, t), mode="bilinear")
    if f < pf:
        grid = grid[:, :, pf // 2 - f // 2: pf // 2 - f // 2 + f]
    else:
        grid = F.interpolate(grid, size=(f, t), mode="bilinear")
    return torch.cat([prefix, grid.reshape(1, dim, f * t).transpose(1, 2)], dim=1)


class VimBlock(nn.Module):
    """Vim's "add -> norm -> mixer" block: ``r = h if r is None else r + drop_path(h); h = mixer(norm(r))``.

    Args:
        dim: model width.
        norm_layer: builds the pre-norm (LayerNorm or RMSNorm) for ``dim``.
        drop_path: stochastic-depth rate on the incoming hidden states.
        d_state: SSM state size.
        d_conv: causal conv width.
        expand: inner width factor.
        scan_backend: selective-scan backend (None = best available).
    """

    def __init__(self, dim: int, norm_layer: Callable[[int], nn.Module], drop_path: float = 0.0, d_state: int = 16,
                 d_conv: int = 4, expand: float = 2, scan_backend: str | None = None) -> None:
        super().__init__()
        from timm.layers import DropPath

        self.mixer = BiMamba(dim, d_state=d_state, d_conv=d_conv, expand=expand, mode="v2", scan_backend=scan_backend)
        self.norm = norm_layer(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden, residual: (B, L, dim) -> (mixer output, new residual), both (B, L, dim)."""
        residual = hidden if residual is None else residual + self.drop_path(hidden)
        return self.mixer(self.norm(residual)), residual


def _norm_layer(norm: str, eps: float) -> Callable[[int], nn.Module]:
    if norm == "layer":
        return lambda d: nn.LayerNorm(d, eps=eps)
    if norm == "rms":
        return lambda d: nn.RMSNorm(d, eps=eps)
    raise ValueError(f"argument 'norm' must be 'layer' or 'rms'; got {norm!r}")


class SSAMBA(nn.Module):
    """SSAMBA encoder with classification and (optional) masked-patch pretraining heads.

    Args:
        num_classes: classes of the fine-tuning head (LayerNorm + Linear); 0 = no head.
        embed_dim: model width D.
        depth: number of Vim blocks (even when ``paired_layers``).
        patch_size: (frequency, time) patch size, or one int.
        patch_stride: (frequency, time) stride; equal to ``patch_size`` for pretraining.
        input_fdim: mel bins of the input.
        input_tdim: frames of the input (the position embedding is learned for this length).
        d_state: SSM state size.
        d_conv: causal conv width.
        expand: Mamba inner width factor.
        norm: ``"layer"`` (LayerNorm, as the shipped SSAMBA recipes) or ``"rms"`` (RMSNorm).
        norm_eps: epsilon of every norm but the head's (1e-5 there).
        drop_path_rate: stochastic depth; block i gets ``[0] + linspace(0, rate, depth)`` at i (as Vim),
            the final residual add the full rate.
        drop_rate: dropout after the position embedding.
        paired_layers: run the blocks as summed forward/reversed pairs (Vim's ``if_bidirectional``).
        pretrain_heads: build the mask embedding and the two prediction heads (``masked_losses``).
        num_masked: patches masked per clip when ``masked_losses`` draws its own masks; None = 60 % of the
            patches (the shipped recipe masks 300 of 512, the SSAMBA fixture 40 of 64).
        cluster_masking: draw masks by cluster masking (else uniformly).
        scan_backend: selective-scan backend (None = best available).
    """

    num_prefix_tokens = 1

    def __init__(
        self,
        num_classes: int = 0,
        embed_dim: int = 192,
        depth: int = 24,
        patch_size: int | tuple[int, int] = 16,
        patch_stride: int | tuple[int, int] = 10,
        input_fdim: int = 128,
        input_tdim: int = 1024,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        norm: str = "layer",
        norm_eps: float = 1e-5,
        drop_path_rate: float = 0.1,
        drop_rate: float = 0.0,
        paired_layers: bool = True,
        pretrain_heads: bool = False,
        num_masked: int | None = None,
        cluster_masking: bool = True,
        scan_backend: str | None = None,
    ) -> None:
        super().__init__()
        from timm.layers import DropPath, trunc_normal_

        if paired_layers and depth % 2:
            raise ValueError(f"argument 'depth' must be even with paired_layers=True; got {depth}")
        self.patch_size, self.patch_stride = _pair(patch_size, "patch_size"), _pair(patch_stride, "patch_stride")
        self.input_fdim, self.input_tdim = input_fdim, input_tdim
        self.grid = patch_grid(input_fdim, input_tdim, self.patch_size, self.patch_stride)
        self.num_patches = self.grid[0] * self.grid[1]
        self.embed_dim, self.num_classes, self.paired_layers = embed_dim, num_classes, paired_layers

        self.patch_embed = nn.Conv2d(1, embed_dim, self.patch_size, stride=self.patch_stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + self.num_patches, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        norm_layer = _norm_layer(norm, norm_eps)
        rates = [0.0] + torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.layers = nn.ModuleList(
            VimBlock(embed_dim, norm_layer, rates[i], d_state, d_conv, expand, scan_backend) for i in range(depth))
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.norm_f = norm_layer(embed_dim)
        self.head: nn.Module = (nn.Sequential(OrderedDict(norm=nn.LayerNorm(embed_dim), fc=nn.Linear(embed_dim, num_classes)))
                                if num_classes > 0 else nn.Identity())

        self.pretrain_heads = pretrain_heads
        self.num_masked = int(DEFAULT_MASK_SHARE * self.num_patches) if num_masked is None else num_masked
        self.cluster_masking = cluster_masking
        if pretrain_heads:
            if self.patch_stride != self.patch_size:
                raise ValueError(f"pretraining needs non-overlapping patches: patch_stride {self.patch_stride} must "
                                 f"equal patch_size {self.patch_size}")
            check_num_masked(self.num_masked, self.num_patches)
            patch_values = self.patch_size[0] * self.patch_size[1]
            self.mask_embed = nn.Parameter(nn.init.xavier_normal_(torch.zeros(1, 1, embed_dim)))
            self.mpc_head = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, patch_values))
            self.mpg_head = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, patch_values))

        # Vim's initialisation: tokens trunc-normal(0.02); Linear biases of the blocks zero (dt_proj's kept);
        # out_proj re-drawn (kaiming-uniform) and scaled by 1/sqrt(depth).
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for block in self.layers:
            nn.init.kaiming_uniform_(block.mixer.out_proj.weight, a=math.sqrt(5))
            with torch.no_grad():
                block.mixer.out_proj.weight /= math.sqrt(depth)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        """The classification head (LayerNorm + Linear; ``nn.Identity`` without classes), timm convention."""
        return self.head

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay (timm convention)."""
        return {"pos_embed", "cls_token", "mask_embed"}

    # ------------------------------------------------------------------ encoder
    def _check_input(self, fbank: torch.Tensor) -> None:
        if fbank.dim() != 3 or fbank.shape[1:] != (self.input_tdim, self.input_fdim):
            raise ValueError(f"SSAMBA: argument 'fbank' must be (B, input_tdim={self.input_tdim}, "
                             f"input_fdim={self.input_fdim}); got {tuple(fbank.shape)}")

    def patchify(self, fbank: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> raw patch values (B, N, patch_f * patch_t), frequency-major patches, (f, t) row-major."""
        x = fbank.unsqueeze(1).transpose(2, 3)
        return F.unfold(x, self.patch_size, stride=self.patch_stride).transpose(1, 2)

    def _encode(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, residual = tokens, None
        if self.paired_layers:
            for fwd, bwd in zip(self.layers[0::2], self.layers[1::2]):
                h_f, r_f = fwd(hidden, residual)
                h_b, r_b = bwd(hidden.flip(1), None if residual is None else residual.flip(1))
                hidden, residual = h_f + h_b.flip(1), r_f + r_b.flip(1)
        else:
            for layer in self.layers:
                hidden, residual = layer(hidden, residual)
        residual = hidden if residual is None else residual + self.drop_path(hidden)
        return self.norm_f(residual)

    def forward_features(self, fbank: torch.Tensor, mask: torch.Tensor | None = None,
                         double_norm: bool = True) -> torch.Tensor:
        """Token features.

        Args:
            fbank: (B, input_tdim, input_fdim) normalised log-mel features.
            mask: optional (B, N) bool, True where the patch embedding is replaced by the mask embedding.
            double_norm: apply ``norm_f`` a second time, as the official model does (False: once).

        Returns:
            (B, 1 + N, D): the cls token then the patches, frequency-major.
        """
        self._check_input(fbank)
        x = self.patch_embed(fbank.unsqueeze(1).transpose(2, 3)).flatten(2).transpose(1, 2)
        if mask is not None:
            if not self.pretrain_heads:
                raise ValueError("SSAMBA: masking needs the model built with pretrain_heads=True")
            x = torch.where(mask.unsqueeze(-1), self.mask_embed.to(x.dtype), x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self._encode(self.pos_drop(x))
        return self.norm_f(x) if double_norm else x

    def pool(self, tokens: torch.Tensor, pooling: Pooling = "mean") -> torch.Tensor:
        """(B, 1 + N, D) -> (B, D): mean over the patch tokens, or the cls token."""
        if pooling == "mean":
            return tokens[:, self.num_prefix_tokens:].mean(dim=1)
        if pooling == "cls":
            return tokens[:, 0]
        raise ValueError(f"argument 'pooling' must be 'mean' or 'cls'; got {pooling!r}")

    def forward(self, fbank: torch.Tensor, pooling: Pooling = "mean") -> torch.Tensor:
        """(B, input_tdim, input_fdim) -> logits (B, num_classes) (pooled features when num_classes == 0)."""
        return self.head(self.pool(self.forward_features(fbank), pooling))

    # ------------------------------------------------------------------ pretraining
    def draw_masks(self, batch: int, rng: random.Random | None = None) -> torch.Tensor:
        """(batch, num_masked) patch indices drawn by the model's masking rule."""
        return draw_masks(batch, self.num_patches, self.num_masked, self.grid[1], self.cluster_masking, rng)

    def _masked_pass(self, fbank: torch.Tensor, index: torch.Tensor, head: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        b = fbank.shape[0]
        if index.dim() != 2 or index.shape[0] != b:
            raise ValueError(f"SSAMBA: mask indices must be (B={b}, M); got {tuple(index.shape)}")
        if index.min() < 0 or index.max() >= self.num_patches:
            raise ValueError(f"SSAMBA: mask indices must lie in [0, {self.num_patches}); got "
                             f"[{int(index.min())}, {int(index.max())}]")
        index = index.to(fbank.device)
        mask = torch.zeros(b, self.num_patches, dtype=torch.bool, device=fbank.device)
        mask.scatter_(1, index, True)
        tokens = self.forward_features(fbank, mask=mask)
        picked = torch.gather(tokens, 1, (index + self.num_prefix_tokens).unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        target = torch.gather(self.patchify(fbank), 1, index.unsqueeze(-1).expand(-1, -1, self.patch_values))
        return head(picked), target

    @property
    def patch_values(self) -> int:
        return self.patch_size[0] * self.patch_size[1]

    def masked_losses(self, fbank: torch.Tensor, mask_index_mpc: torch.Tensor | None = None,
                      mask_index_mpg: torch.Tensor | None = None,
                      rng: random.Random | None = None) -> dict[str, torch.Tensor]:
        """Masked patch modelling losses: two encoder passes with independent masks.

        mpc: InfoNCE between the predicted and the true values of each clip's masked patches
        (``S = target @ pred^T``, loss = -mean log_softmax(S)[i, i]), accuracy = share of masked
        patches j with ``argmax_i softmax(S)[i, j] == j``; mpg: MSE of the predicted patch values.

        Args:
            fbank: (B, input_tdim, input_fdim).
            mask_index_mpc: (B, M) masked patch indices of the mpc pass (drawn when None).
            mask_index_mpg: (B, M) masked patch indices of the mpg pass (drawn when None).
            rng: randomness for drawn masks (the module ``random`` when None).

        Returns:
            dict with ``mpc_acc``, ``mpc_nce``, ``mpg_mse`` and ``loss = mpc_nce + 10 * mpg_mse`` (scalars).
        """
        if not self.pretrain_heads:
            raise ValueError("SSAMBA: masked_losses needs the model built with pretrain_heads=True")
        self._check_input(fbank)
        b = fbank.shape[0]
        if mask_index_mpc is None:
            mask_index_mpc = self.draw_masks(b, rng)
        pred, target = self._masked_pass(fbank, mask_index_mpc, self.mpc_head)
        scores = torch.bmm(target, pred.transpose(1, 2))  # (B, M, M)
        m = scores.shape[-1]
        nce = -torch.diagonal(F.log_softmax(scores, dim=-1), dim1=-2, dim2=-1).mean()
        hits = scores.softmax(dim=-1).argmax(dim=1) == torch.arange(m, device=scores.device)
        acc = hits.float().mean()
        if mask_index_mpg is None:
            mask_index_mpg = self.draw_masks(b, rng)
        pred_g, target_g = self._masked_pass(fbank, mask_index_mpg, self.mpg_head)
        mse = F.mse_loss(pred_g, target_g)
        return {"mpc_acc": acc, "mpc_nce": nce, "mpg_mse": mse, "loss": nce + 10 * mse}

    # ------------------------------------------------------------------ official checkpoints
    @classmethod
    def from_official(cls, official_kwargs: Mapping[str, Any], official_state_dict: Mapping[str, Any],
                      **overrides: Any) -> SSAMBA:
        """Build from the official ``AMBAModel`` constructor arguments and a checkpoint in its layout.

        Args:
            official_kwargs: ``AMBAModel(**kwargs)`` arguments: ``pretrain_stage``, ``fshape``, ``tshape``,
                ``fstride``, ``tstride``, ``input_fdim``, ``input_tdim``, ``label_dim``, ``vision_mamba_config``
                (``model_size`` and ``load_pretrained_mdl_path`` are not needed: the weights are given).
            official_state_dict: the DataParallel state dict (``module.*`` keys) the official scripts save:
                a pretraining checkpoint (holds ``p_input_fdim``), or a fine-tuning one (holds ``mlp_head``).
                With ``pretrain_stage=False`` and a pretraining checkpoint the model is built as the official
                fine-tuning constructor does: encoder from the checkpoint, patch embedding moved to the new
                stride, position embedding cropped/interpolated to the new grid, a new head.
            overrides: our constructor arguments to set on top (e.g. ``scan_backend``, ``num_masked``).

        Returns:
            The model with the checkpoint's weights (train mode, as a fresh module).
        """
        sd = unwrap_checkpoint(official_state_dict)
        kwargs = official_to_kwargs(official_kwargs)
        kwargs.update(overrides)
        pretrain_stage = bool(official_kwargs.get("pretrain_stage", True))
        from_pretraining = "p_input_fdim" in sd
        if pretrain_stage and not from_pretraining:
            raise ConversionError("SSAMBA: pretrain_stage=True needs a pretraining checkpoint (with 'module.p_input_fdim')")
        if from_pretraining:
            p_fdim, p_tdim = int(sd["p_input_fdim"]), int(sd["p_input_tdim"])
            p_patch = tuple(sd["v.patch_embed.proj.weight"].shape[2:])
            if p_patch != _pair(kwargs["patch_size"], "patch_size"):
                raise ConversionError(f"SSAMBA: the checkpoint's patch shape {p_patch} differs from fshape/tshape "
                                      f"{kwargs['patch_size']}")
            if pretrain_stage and (p_fdim, p_tdim) != (kwargs["input_fdim"], kwargs["input_tdim"]):
                raise ConversionError(f"SSAMBA: checkpoint input size {(p_fdim, p_tdim)} differs from input_fdim/"
                                      f"input_tdim {(kwargs['input_fdim'], kwargs['input_tdim'])}")
        model = cls(pretrain_heads=pretrain_stage, **kwargs)
        if from_pretraining and not pretrain_stage:
            converted = load_pretrained_encoder(model, sd)
        else:
            rules = OFFICIAL_ENCODER_RULES + (OFFICIAL_PRETRAIN_RULES if pretrain_stage else OFFICIAL_PRETRAIN_DROP_RULES)
            mapped, unmatched, origins, dropped = apply_rules(sd, rules + OFFICIAL_HEAD_RULES)
            converted = finish_conversion(mapped, model, "SSAMBA", unmatched, origins, dropped=dropped)
        model.load_state_dict(converted, strict=True)
        return model


def load_pretrained_encoder(model: SSAMBA, checkpoint: Mapping[str, Any]) -> ConvertedStateDict:
    """Encoder weights of a pretraining checkpoint converted for ``model`` (any stride / input length).

    Accepts an official SSAMBA pretraining checkpoint (``module.*`` keys with ``p_input_fdim``), our
    Lightning checkpoint of :class:`~ssm_apps.audio.AudioPretrainTask` (``model.*`` keys) or a bare
    SSAMBA state dict. As the official fine-tuning constructor: encoder tensors copied, patch embedding
    reused with the new stride (summed over input channels), position embedding cropped / interpolated
    from the pretraining grid (:func:`resize_pos_embed`), pretraining heads and mask embedding dropped,
    the classification head left as ``model`` initialised it (reported in ``.filled``).

    Args:
        model: the model to load into.
        checkpoint: the checkpoint (a dict of tensors, or a dict holding one under ``state_dict``).

    Returns:
        A :class:`~ssm_apps.convert.ConvertedStateDict` for ``model.load_state_dict(..., strict=True)``.
    """
    sd = unwrap_checkpoint(checkpoint)
    if "p_input_fdim" in sd:
        rules = OFFICIAL_ENCODER_RULES + OFFICIAL_PRETRAIN_DROP_RULES + OFFICIAL_HEAD_RULES
        mapped, unmatched, origins, dropped = apply_rules(sd, rules)
        patch = tuple(sd["v.patch_embed.proj.weight"].shape[2:])
        src_grid = patch_grid(int(sd["p_input_fdim"]), int(sd["p_input_tdim"]), patch, patch)
    else:
        rules = [(r"(model\.)?(mpc_head\.|mpg_head\.|mask_embed$|head\.)", None), (r"model\.", ""), (r"", "")]
        mapped, unmatched, origins, dropped = apply_rules(sd, rules)
        if "patch_embed.weight" not in mapped or "pos_embed" not in mapped:
            raise ConversionError("SSAMBA: the checkpoint holds no 'patch_embed.weight' / 'pos_embed'")
        patch = tuple(mapped["patch_embed.weight"].shape[2:])
        f_dim = patch_grid(model.input_fdim, patch[1], patch, patch)[0]
        n = mapped["pos_embed"].shape[1] - model.num_prefix_tokens
        if n % f_dim:
            raise ConversionError(f"SSAMBA: a pretraining position embedding of {n} patches does not fit "
                                  f"{f_dim} frequency rows")
        src_grid = (f_dim, n // f_dim)
    if patch != model.patch_size:
        raise ConversionError(f"SSAMBA: the checkpoint's patch shape {patch} differs from the model's {model.patch_size}")
    mapped = adapt_pretrained_encoder(mapped, src_grid, model)
    return finish_conversion(mapped, model, "SSAMBA", unmatched, origins, fill_missing=[r"head\."], dropped=dropped)


def adapt_pretrained_encoder(state_dict: Mapping[str, torch.Tensor], src_grid: tuple[int, int],
                             model: SSAMBA) -> dict[str, torch.Tensor]:
    """Encoder weights of a pretraining model (our key names) made to fit ``model`` (another grid/stride).

    As the official fine-tuning constructor: the patch-embedding kernel is summed over input channels
    (one channel: unchanged) and reused with the new stride; the position embedding is resized with
    :func:`resize_pos_embed`; the pretraining heads and mask embedding are dropped.

    Args:
        state_dict: our SSAMBA keys (``patch_embed.*``, ``pos_embed``, ``layers.*``, ...).
        src_grid: the pretraining patch grid (f_dim, t_dim).
        model: the model to load into.

    Returns:
        The adapted encoder tensors (no ``head.*``, no pretraining keys).
    """
    out = {k: v for k, v in state_dict.items()
           if not k.startswith(("mpc_head.", "mpg_head.", "mask_embed", "head."))}
    out["patch_embed.weight"] = out["patch_embed.weight"].sum(dim=1, keepdim=True)
    out["pos_embed"] = resize_pos_embed(out["pos_embed"], src_grid, model.grid, model.num_prefix_tokens)
    return out


OFFICIAL_ENCODER_RULES = [
    (r"v\.patch_embed\.proj\.", "patch_embed."),
    (r"v\.cls_token$", "cls_token"),
    (r"v\.pos_embed$", "pos_embed"),
    (r"v\.layers\.", "layers."),
    (r"v\.norm_f\.", "norm_f."),
    (r"v\.head\.", None),  # VisionMamba's ImageNet head: built by the official code, never used
    (r"p_input_[ft]dim$", None),  # pretraining input size: read, not a weight
]
OFFICIAL_PRETRAIN_RULES = [(r"mask_embed$", "mask_embed"), (r"cpredlayer\.", "mpc_head."), (r"gpredlayer\.", "mpg_head.")]
OFFICIAL_PRETRAIN_DROP_RULES = [(r"mask_embed$", None), (r"cpredlayer\.", None), (r"gpredlayer\.", None)]
OFFICIAL_HEAD_RULES = [(r"mlp_head\.0\.", "head.norm."), (r"mlp_head\.1\.", "head.fc.")]

# Official defaults: AMBAModel's default vision_mamba_config, then VisionMamba's own argument defaults.
_AMBA_DEFAULTS = {"embed_dim": 768, "depth": 24, "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
                  "bimamba_type": "v2", "if_cls_token": True, "if_devide_out": True, "if_rope": False}
_VIM_DEFAULTS = {"d_state": 16, "drop_rate": 0.0, "drop_path_rate": 0.1, "norm_epsilon": 1e-5, "if_bidirectional": False,
                 "if_bimamba": False, "use_double_cls_token": False, "ssm_cfg": None, "if_rope_residual": False}
# vision_mamba_config keys with no effect on AMBAModel's maths (it replaces the patch embedding and position
# embedding, always puts one cls token first, never uses VisionMamba's head or pooling; fused_add_norm and
# residual_in_fp32 change kernels and precision, not the float32 result).
_IGNORED = ("img_size", "patch_size", "stride", "channels", "num_classes", "final_pool_type", "if_abs_pos_embed",
            "use_middle_cls_token", "fused_add_norm", "residual_in_fp32", "device", "dtype")


def official_to_kwargs(official_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Our SSAMBA constructor arguments (without ``pretrain_heads``) for official ``AMBAModel`` kwargs."""
    vm = {**_VIM_DEFAULTS, **_AMBA_DEFAULTS, **dict(official_kwargs.get("vision_mamba_config") or {})}
    unsupported = []
    if vm.get("if_bimamba") or vm["bimamba_type"] != "v2":
        unsupported.append(f"bimamba_type={vm['bimamba_type']!r}/if_bimamba={vm['if_bimamba']} (only 'v2')")
    for key, want in (("if_devide_out", True), ("if_cls_token", True), ("if_rope", False), ("if_rope_residual", False),
                      ("use_double_cls_token", False)):
        if bool(vm.get(key, want)) != want:
            unsupported.append(f"{key}={vm[key]} (only {want})")
    if vm.get("ssm_cfg"):
        unsupported.append(f"ssm_cfg={vm['ssm_cfg']} (only the default Mamba settings)")
    known = set(_IGNORED) | set(_AMBA_DEFAULTS) | set(_VIM_DEFAULTS) | {"if_divide_out"}
    unknown = sorted(set(vm) - known)
    if unknown:
        unsupported.append(f"unknown vision_mamba_config keys {unknown}")
    if unsupported:
        raise ConversionError("SSAMBA.from_official: unsupported official settings: " + "; ".join(unsupported))
    get = official_kwargs.get
    pretrain = bool(get("pretrain_stage", True))
    return {
        "num_classes": 0 if pretrain else int(get("label_dim", 527)),
        "embed_dim": int(vm["embed_dim"]), "depth": int(vm["depth"]),
        "patch_size": (int(get("fshape", 128)), int(get("tshape", 2))),
        "patch_stride": (int(get("fstride", 128)), int(get("tstride", 2))),
        "input_fdim": int(get("input_fdim", 128)), "input_tdim": int(get("input_tdim", 1024)),
        "d_state": int(vm["d_state"]), "norm": "rms" if vm["rms_norm"] else "layer", "norm_eps": float(vm["norm_epsilon"]),
        "drop_path_rate": float(vm["drop_path_rate"]), "drop_rate": float(vm["drop_rate"]),
        "paired_layers": bool(vm["if_bidirectional"]),
    }


# ---------------------------------------------------------------------- presets
MODEL_CFGS: dict[str, dict[str, Any]] = {
    "ssamba_tiny": {"embed_dim": 192, "depth": 24},
    "ssamba_small": {"embed_dim": 384, "depth": 24},
    "ssamba_base": {"embed_dim": 768, "depth": 24},
}


def create_ssamba(name: str, **kwargs: Any) -> SSAMBA:
    """Build a preset (``ssamba_tiny`` / ``ssamba_small`` / ``ssamba_base``) with constructor overrides."""
    if name not in MODEL_CFGS:
        raise ValueError(f"unknown SSAMBA preset {name!r}; expected one of {sorted(MODEL_CFGS)}")
    return SSAMBA(**{**MODEL_CFGS[name], **kwargs})


def ssamba_tiny(**kwargs: Any) -> SSAMBA:
    """SSAMBA-tiny: 192 wide, 24 blocks (12 bidirectional pairs)."""
    return create_ssamba("ssamba_tiny", **kwargs)


def ssamba_small(**kwargs: Any) -> SSAMBA:
    """SSAMBA-small: 384 wide, 24 blocks."""
    return create_ssamba("ssamba_small", **kwargs)


def ssamba_base(**kwargs: Any) -> SSAMBA:
    """SSAMBA-base: 768 wide, 24 blocks."""
    return create_ssamba("ssamba_base", **kwargs)
