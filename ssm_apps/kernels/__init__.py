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
from .selective_scan import BACKENDS, default_backend, selective_scan, triton_available

__all__ = [
    "BACKENDS", "PATTERNS_2D", "PATTERNS_3D", "cross_merge", "cross_merge_3d", "cross_scan", "cross_scan_3d",
    "default_backend", "scan_index", "scan_index_3d", "selective_scan", "triton_available",
]
