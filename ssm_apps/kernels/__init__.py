"""Functional kernels: the selective scan and the 1D/2D/3D scan patterns.

Families, as mamba_ssm's ``ops/`` + ``ops/triton/``: ``scan`` (the 1-D selective scan; its Triton
kernels in ``scan.triton``), ``patterns`` (cross scan / merge in 2-D and 3-D), ``fused`` (the 2-D /
3-D scan with the patterns fused in); ``_backend`` (backend selection, shared by all three).
"""
from ._backend import needs_autograd, tensor_cache, triton_available
from .fused import (
    FUSED_PATTERNS_2D,
    FUSED_PATTERNS_3D,
    selective_scan_2d,
    selective_scan_3d,
)
from .patterns import (
    PATTERNS_2D,
    PATTERNS_3D,
    cross_merge,
    cross_merge_3d,
    cross_scan,
    cross_scan_3d,
    scan_index,
    scan_index_3d,
)
from .scan import BACKENDS, default_backend, selective_scan
from .scan.options import TritonScanOptions

__all__ = [
    "BACKENDS", "PATTERNS_2D", "PATTERNS_3D", "cross_merge", "cross_merge_3d", "cross_scan", "cross_scan_3d",
    "FUSED_PATTERNS_2D", "FUSED_PATTERNS_3D", "default_backend", "scan_index", "scan_index_3d", "selective_scan",
    "selective_scan_2d", "selective_scan_3d", "needs_autograd", "tensor_cache", "triton_available", "TritonScanOptions",
]
