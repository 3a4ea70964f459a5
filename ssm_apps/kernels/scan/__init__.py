"""The 1-D selective scan: dispatcher, sequential and chunked PyTorch backends, B/C layout, input checks.

``api.selective_scan`` checks the call (``checks``) and runs one backend: ``ref.scan_ref``
(sequential), ``chunked.scan_chunked`` (the "torch" backend) or the Triton kernels of
``scan.triton`` (CUDA), run as ``options.TritonScanOptions`` says.
"""
from .api import BACKENDS, Backend, default_backend, selective_scan
from .options import TritonScanOptions

__all__ = ["BACKENDS", "Backend", "TritonScanOptions", "default_backend", "selective_scan"]
