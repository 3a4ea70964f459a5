"""S-Mamba (Wang et al., "Is Mamba effective for time series forecasting?"), as its official code computes it.

Each variate's whole lookback window is one token (a Linear over the lookback); time features are
appended as extra tokens and dropped at the output. Layers of
[Mamba over the token sequence + Mamba over the reversed sequence, summed] -> add & LayerNorm ->
1x1-conv FFN -> add & LayerNorm; a final LayerNorm; a Linear to the horizon. With ``use_norm``
each variate is normalised over the lookback (mean, std) and the forecast de-normalised.

NaN/Inf: the model does not check its forecast for non-finite values by default (the check would
synchronise the GPU every forward); ``check_finite=True`` raises a ``FloatingPointError`` naming the
first sample of the batch whose forecast is not finite.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..convert import ConversionError, Rule, apply_rules, finish_conversion, unwrap_checkpoint
from ..layers import BiMamba, Dropout
from ..training.checks import check_finite_output

__all__ = ["SMamba", "SMambaLayer"]


class SMambaLayer(nn.Module):
    """One encoder layer over tokens (b, T, d_model) -> (b, T, d_model)."""

    def __init__(
        self, d_model: int, d_ff: int, d_state: int, d_conv: int, expand: float,
        dropout: float, activation: Literal["relu", "gelu"], scan_backend: str | None,
    ) -> None:
        super().__init__()
        self.mixer = BiMamba(d_model, d_state=d_state, d_conv=d_conv, expand=expand, mode="sum",
                             scan_backend=scan_backend)
        self.conv1 = nn.Conv1d(d_model, d_ff, kernel_size=1)
        self.conv2 = nn.Conv1d(d_ff, d_model, kernel_size=1)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)
        self.activation = F.relu if activation == "relu" else F.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.mixer(x))
        # the official 1x1 Conv1d pair, computed as GEMMs over the (b, T, d) tokens: the same numbers and
        # parameters with no transposes (on the CPU oneDNN's convolution took 2-3x as long at this size)
        y = self.dropout(self.activation(F.linear(x, self.conv1.weight[..., 0], self.conv1.bias)))
        y = self.dropout(F.linear(y, self.conv2.weight[..., 0], self.conv2.bias))
        return self.norm2(x + y)


class SMamba(nn.Module):
    """S-Mamba forecaster: (B, lookback, N) values [+ (B, lookback, F) time marks] -> (B, horizon, N).

    Args:
        lookback, horizon: input and forecast lengths.
        d_model, d_ff: token width and FFN width; e_layers: number of layers.
        d_state, d_conv, expand: Mamba settings (the paper's code: d_conv 2, expand 1).
        dropout, activation ("gelu" or "relu"), use_norm: as the official ``configs``.
        scan_backend: selective-scan backend (None = best available).
        check_finite: raise a ``FloatingPointError`` naming the first sample whose forecast holds NaN
            or Inf (off by default: the check synchronises the GPU).
    """

    def __init__(
        self,
        lookback: int = 96,
        horizon: int = 96,
        d_model: int = 256,
        d_ff: int = 256,
        e_layers: int = 2,
        d_state: int = 2,
        d_conv: int = 2,
        expand: float = 1,
        dropout: float = 0.1,
        activation: Literal["relu", "gelu"] = "gelu",
        use_norm: bool = True,
        scan_backend: str | None = None,
        check_finite: bool = False,
    ) -> None:
        super().__init__()
        self.lookback, self.horizon, self.use_norm = lookback, horizon, use_norm
        self.check_finite = check_finite
        self.embedding = nn.Linear(lookback, d_model)
        self.embedding_dropout = Dropout(dropout)
        self.layers = nn.ModuleList(
            SMambaLayer(d_model, d_ff, d_state, d_conv, expand, dropout, activation, scan_backend)
            for _ in range(e_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.projector = nn.Linear(d_model, horizon)

    def _check(self, x: torch.Tensor, x_mark: torch.Tensor | None) -> None:
        if x.dim() != 3 or x.shape[1] != self.lookback:
            raise ValueError(f"SMamba: argument 'x' must be (B, lookback={self.lookback}, N); got {tuple(x.shape)}")
        if x_mark is not None and (x_mark.dim() != 3 or x_mark.shape[:2] != x.shape[:2]):
            raise ValueError(
                f"SMamba: argument 'x_mark' must be (B={x.shape[0]}, lookback={self.lookback}, n_time_features); "
                f"got {tuple(x_mark.shape)}"
            )

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, lookback, N); x_mark: (B, lookback, F) or None -> forecast (B, horizon, N)."""
        self._check(x, x_mark)
        n_variates = x.shape[-1]
        if self.use_norm:
            means = x.mean(1, keepdim=True).detach()
            x = x - means
            stdev = torch.sqrt(torch.var(x, dim=1, keepdim=True, unbiased=False) + 1e-5)
            x = x / stdev
        tokens = x.transpose(1, 2)  # (B, N, lookback)
        if x_mark is not None:
            tokens = torch.cat([tokens, x_mark.transpose(1, 2).to(tokens.dtype)], dim=1)
        h = self.embedding_dropout(self.embedding(tokens))
        for layer in self.layers:
            h = layer(h)
        out = self.projector(self.norm(h)).transpose(1, 2)[:, :, :n_variates]
        if self.use_norm:
            out = out * stdev + means
        if self.check_finite:
            check_finite_output("SMamba", out, "forecast")
        return out

    # ---- official checkpoints -------------------------------------------------------------
    # Official config keys that set our arguments; every other key (label_len, enc_in, embed,
    # freq, n_heads, ...) has no effect on the forecasting model.
    OFFICIAL_ARGS = {
        "seq_len": "lookback", "pred_len": "horizon", "d_model": "d_model", "d_ff": "d_ff",
        "e_layers": "e_layers", "d_state": "d_state", "dropout": "dropout",
        "activation": "activation", "use_norm": "use_norm",
    }
    # Official state-dict keys: (pattern, replacement); None = unused official tensor, ignored.
    OFFICIAL_KEY_MAP: tuple[Rule, ...] = (
        (r"^enc_embedding\.value_embedding\.", "embedding."),
        (r"^encoder\.attn_layers\.(\d+)\.attention\.", r"layers.\1.mixer.fwd."),
        (r"^encoder\.attn_layers\.(\d+)\.attention_r\.", r"layers.\1.mixer.bwd."),
        (r"^encoder\.attn_layers\.(\d+)\.(man|man2|a)\.", None),  # built but never called officially
        (r"^encoder\.attn_layers\.(\d+)\.", r"layers.\1."),
        (r"^encoder\.norm\.", "norm."),
        (r"^projector\.", "projector."),
    )

    @classmethod
    def convert_official_state_dict(cls, state_dict: Mapping[str, Any],
                                    model: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """Rename official S-Mamba keys to ours with ``OFFICIAL_KEY_MAP`` (``ssm_apps.convert`` rules);
        the unused ``man``, ``man2`` and ``a`` modules are dropped.

        Args:
            state_dict: the official state dict (or a checkpoint holding one).
            model: when given, the result is checked against its keys and shapes
                (``finish_conversion``: nothing missing, nothing extra).

        Raises:
            ConversionError: official keys no rule knows (and, with ``model``, any key mismatch).
        """
        mapped, unmatched, origins, dropped = apply_rules(unwrap_checkpoint(state_dict), cls.OFFICIAL_KEY_MAP)
        if model is not None:
            return finish_conversion(mapped, model, "SMamba", unmatched, origins, dropped=dropped)
        if unmatched:
            raise ConversionError(f"SMamba checkpoint does not fit the model: keys no conversion rule knows: "
                                  f"{sorted(unmatched)}")
        return mapped

    @classmethod
    def from_official(cls, configs: Mapping[str, Any], official_state_dict: Mapping[str, torch.Tensor]) -> SMamba:
        """Build from the official ``configs`` namespace (as a dict) and load its state_dict (strict)."""
        missing = [k for k in cls.OFFICIAL_ARGS if k not in configs]
        if missing:
            raise KeyError(f"SMamba.from_official: configs lacks {missing}")
        model = cls(**{ours: configs[theirs] for theirs, ours in cls.OFFICIAL_ARGS.items()})
        model.load_state_dict(cls.convert_official_state_dict(official_state_dict, model), strict=True)
        return model
