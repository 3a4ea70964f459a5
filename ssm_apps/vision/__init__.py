"""Vision: timm backbones and their Lightning fine-tuning.

Importing this package registers the timm models ``vmamba_tiny_s1l8``, ``vmamba_small_s2l15``,
``vmamba_base_s2l15``, ``vmamba_{tiny,small,base}_v0`` and ``efficientvmamba_{tiny,small,base}``.
"""
from .data import ImageClassificationDataModule
from .efficientvmamba import EfficientVMamba
from .prediction_writer import TopKPredictionWriter
from .task import ClassificationTask
from .vmamba import VMamba

__all__ = ["ClassificationTask", "EfficientVMamba", "ImageClassificationDataModule", "TopKPredictionWriter", "VMamba"]
