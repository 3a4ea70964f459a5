"""Channel-first LayerNorm of (B, C, H, W) maps: ``layer_norm_2d`` (Triton on CUDA, PyTorch elsewhere).

``torch.py`` holds the permute -> ``F.layer_norm`` reference path, ``triton.py`` the fused kernels
reading the map in place, ``function.py`` the autograd Function and the dispatching entry point.
"""
from .function import BACKENDS, LayerNorm2dTritonFn, layer_norm_2d, triton_supported
from .torch import layer_norm_2d_torch

__all__ = ["BACKENDS", "LayerNorm2dTritonFn", "layer_norm_2d", "layer_norm_2d_torch", "triton_supported"]
