"""Channel-first layers: ``LayerNorm2d`` and ``Linear2d`` over dim 1 of (B, C, *spatial) maps.

"2d" follows timm's naming of channel-first layers; both take 2-D (B, C, H, W) and 3-D
(B, C, D, H, W) maps. ``set_norm_backend`` switches every ``LayerNorm2d`` of a model between the
PyTorch path and the Triton kernel of ``ssm_apps.kernels.norm``.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels.norm import layer_norm_2d, triton_supported

__all__ = ["NORM_BACKENDS", "LayerNorm2d", "Linear2d", "set_norm_backend"]

NormBackend = Literal["torch", "triton", "auto"]
NORM_BACKENDS: tuple[str, ...] = ("torch", "triton", "auto")
NormOutput = Literal["channels_last", "preserve"]
_OUTPUT_FORMATS = {"channels_last": torch.channels_last, "preserve": torch.preserve_format}


class Linear2d(nn.Linear):
    """nn.Linear over the channels of a (B, C, H, W) or (B, C, D, H, W) map: a 1x1 (x1) convolution
    keeping the Linear's 2-D weight (so official ``Linear2d`` state dicts load unchanged).

    On a CPU it runs as a GEMM over the map's own memory (``F.linear`` over channels-last memory,
    ``weight @ x`` over contiguous memory; no copy either way): on the 2-core machine that is 1.3-3x
    faster than oneDNN's 1x1 convolution at VMamba-T's shapes. Elsewhere it is the convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            last = x.movedim(1, -1)
            if last.is_contiguous():
                return F.linear(last, self.weight, self.bias).movedim(-1, 1)
            if x.is_contiguous():
                y = torch.matmul(self.weight, x.flatten(2))
                y = y if self.bias is None else y + self.bias[:, None]
                return y.view(x.shape[0], -1, *x.shape[2:])
        if x.dim() == 5:
            return F.conv3d(x, self.weight[:, :, None, None, None], self.bias)
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) or (B, C, D, H, W) map (contiguous or
    channels-last memory).

    Under autocast the norm runs in the autocast dtype (statistics still accumulated in float32
    by the kernel) instead of autocast's float32 round trip, as timm's "fast norm" does: in a
    VMamba-T bf16 training step on an H100 the float32 casts and norm kernels were a quarter of
    the GPU time. Without autocast (e.g. fp32 evaluation) the PyTorch path is exactly ``F.layer_norm``.

    Args:
        normalized_shape: the channel count C (as ``nn.LayerNorm``).
        eps: added to the variance.
        backend: "torch" (permute -> ``F.layer_norm``; output in channels-last memory), "triton" (the
            fused kernel of ``ssm_apps.kernels.norm`` reading the map in place; needs CUDA tensors), or
            "auto" (Triton on CUDA tensors when triton is installed, else PyTorch). An attribute:
            ``set_norm_backend`` changes it model-wide.
        output_format: memory layout of the Triton path's output: "channels_last" (that of the
            PyTorch path, channels_last / channels_last_3d) or "preserve" (the input's layout, e.g. NCDHW
            maps stay NCDHW for the convolutions after them).
        **kwargs: the other ``nn.LayerNorm`` arguments (``elementwise_affine``, ``bias``, ``device``, ``dtype``).
    """

    def __init__(
        self,
        normalized_shape: int,
        eps: float = 1e-5,
        backend: NormBackend = "torch",
        output_format: NormOutput = "channels_last",
        **kwargs,
    ) -> None:
        super().__init__(normalized_shape, eps=eps, **kwargs)
        self.backend = _checked_backend(backend)
        if output_format not in _OUTPUT_FORMATS:
            raise ValueError(f"LayerNorm2d: argument 'output_format' must be one of {tuple(_OUTPUT_FORMATS)}; "
                             f"got {output_format!r}")
        self.output_format = output_format

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "triton" or (self.backend == "auto" and x.is_cuda and triton_supported(x.device)):
            return self._forward_triton(x)
        x = x.movedim(1, -1)
        device = x.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
            weight = None if self.weight is None else self.weight.to(dtype)
            bias = None if self.bias is None else self.bias.to(dtype)
            with torch.autocast(device, enabled=False):
                x = F.layer_norm(x.to(dtype), self.normalized_shape, weight, bias, self.eps)
        else:
            x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1)

    def _forward_triton(self, x: torch.Tensor) -> torch.Tensor:
        """The Triton kernel on x, a 3-D map viewed as (B, C, D*H, W) (a view for contiguous and
        channels_last_3d strides; other strides are copied once by ``flatten``)."""
        fmt = _OUTPUT_FORMATS[self.output_format]
        if x.dim() == 5:
            y = layer_norm_2d(x.flatten(2, 3), self.weight, self.bias, self.eps, backend="triton", memory_format=fmt)
            return y.unflatten(2, x.shape[2:4])
        return layer_norm_2d(x, self.weight, self.bias, self.eps, backend="triton", memory_format=fmt)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, backend={self.backend!r}, output_format={self.output_format!r}"


def _checked_backend(backend: str) -> str:
    if backend not in NORM_BACKENDS:
        raise ValueError(f"LayerNorm2d: argument 'backend' must be one of {NORM_BACKENDS}; got {backend!r}")
    return backend


def set_norm_backend(model: nn.Module, backend: NormBackend) -> int:
    """Set ``backend`` on every ``LayerNorm2d`` in ``model``; returns how many were set."""
    backend = _checked_backend(backend)
    count = 0
    for m in model.modules():
        if isinstance(m, LayerNorm2d):
            m.backend = backend
            count += 1
    return count
