"""3-D (and 2-D) medical segmentation with Mamba: HyMamba and MambaMIM pre-training, on MONAI.

Names are imported lazily, so ``import ssm_apps.medical`` does not import MONAI.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "HyMamba": "hymamba", "HyMambaEncoder": "hymamba", "HyMambaDecoder": "hymamba", "create_hymamba": "hymamba",
    "HYMAMBA_CONFIGS": "hymamba",
    "MambaMIM": "mambamim", "LightDecoder": "mambamim", "toki_interpolate": "mambamim", "random_mask": "mambamim",
    "MedicalPretrainTask": "task", "MedicalSegmentationTask": "task",
    "MedicalDataModule": "data",
    "NiftiPredictionWriter": "prediction_writer",
}

__all__ = [
    "HYMAMBA_CONFIGS", "HyMamba", "HyMambaDecoder", "HyMambaEncoder", "LightDecoder", "MambaMIM", "MedicalDataModule",
    "MedicalPretrainTask", "MedicalSegmentationTask", "NiftiPredictionWriter", "create_hymamba", "random_mask",
    "toki_interpolate",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ssm_apps.medical' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
