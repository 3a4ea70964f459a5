"""Functional kernels: the selective scan and the 1D/2D/3D scan patterns."""
from .scan_patterns import (
    PATTERNS_2D,
    PATTERNS_3D,
    cross_merge,
    cross_merge_3d,
    cross_scan,
    cross_scan_3d,
    scan_index,
    scan_index_3d,
)
from .scan_2d import FUSED_PATTERNS_2D, FUSED_PATTERNS_3D, selective_scan_2d, selective_scan_3d
from .selective_scan import BACKENDS, default_backend, selective_scan, triton_available

__all__ = [
    "BACKENDS", "PATTERNS_2D", "PATTERNS_3D", "cross_merge", "cross_merge_3d", "cross_scan", "cross_scan_3d",
    "FUSED_PATTERNS_2D", "FUSED_PATTERNS_3D", "default_backend", "scan_index", "scan_index_3d", "selective_scan",
    "selective_scan_2d", "selective_scan_3d", "triton_available",
]
