"""Audio: SSAST / SSAMBA features, the SSAMBA model, its pretraining / fine-tuning tasks and data.

Importing this package does not import torchaudio or Lightning; the tasks and the data module are
loaded on first use (``ssm_apps.audio.AudioPretrainTask`` etc.).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from .features import NORM_STATS, fbank_features, load_audio, norm_stats, to_mono_16k
from .masking import cluster_mask, draw_masks
from .ssamba import MODEL_CFGS, SSAMBA, create_ssamba, resize_pos_embed, ssamba_base, ssamba_small, ssamba_tiny

_LAZY = {
    "AudioPretrainTask": "tasks",
    "AudioClassificationTask": "tasks",
    "AudioDataModule": "data",
    "TopKPredictionWriter": "prediction_writer",
}

__all__ = [
    "MODEL_CFGS", "NORM_STATS", "SSAMBA", "cluster_mask", "create_ssamba", "draw_masks", "fbank_features",
    "load_audio", "norm_stats", "resize_pos_embed", "ssamba_base", "ssamba_small", "ssamba_tiny", "to_mono_16k",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
