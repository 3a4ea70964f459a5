"""Fused 2-D / 3-D selective scan: the K routes of a scan pattern read straight from the map and merged back.

``api`` (``selective_scan_2d`` / ``selective_scan_3d``, and the unfused chain of the other backends),
``checks`` (argument checks), ``triton`` (the autograd Function over the GATHER mode of the
``scan.triton`` kernels).
"""
from .api import (
    FUSED_PATTERNS_2D,
    FUSED_PATTERNS_3D,
    selective_scan_2d,
    selective_scan_3d,
)

__all__ = ["FUSED_PATTERNS_2D", "FUSED_PATTERNS_3D", "selective_scan_2d", "selective_scan_3d"]
