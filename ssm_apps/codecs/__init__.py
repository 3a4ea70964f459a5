"""Learned image compression: the CMamba codec, real bitstreams, training and evaluation.

Importing this package is light; CompressAI (and torch's heavy parts) load with the first use of
a name below (``ssm_apps.codecs.compress``, ``ssm_apps.codecs.CMamba``, ...).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "CMamba": "cmamba", "CMambaConfig": "cmamba", "CONFIGS": "cmamba", "MSE_LAMBDAS": "cmamba",
    "MS_SSIM_LAMBDAS": "cmamba", "create_cmamba": "cmamba", "deterministic_inference": "cmamba",
    "RateDistortionLoss": "losses",
    "BitstreamError": "container", "Header": "container",
    "compress": "codec", "decompress": "codec", "encode": "codec", "read_image": "codec", "write_image": "codec",
    "load_pretrained": "pretrained", "available_qualities": "pretrained",
    "ImageCompressionTask": "task", "ImageCompressionDataModule": "data",
}

__all__ = [
    "CONFIGS",
    "MSE_LAMBDAS",
    "MS_SSIM_LAMBDAS",
    "BitstreamError",
    "CMamba",
    "CMambaConfig",
    "Header",
    "ImageCompressionDataModule",
    "ImageCompressionTask",
    "RateDistortionLoss",
    "available_qualities",
    "compress",
    "create_cmamba",
    "decompress",
    "deterministic_inference",
    "encode",
    "load_pretrained",
    "read_image",
    "write_image",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
