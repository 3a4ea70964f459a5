"""Functional kernels: the selective scan and the 1D/2D/3D scan patterns."""
from .selective_scan import BACKENDS, default_backend, selective_scan, triton_available

__all__ = ["BACKENDS", "default_backend", "selective_scan", "triton_available"]
