"""Vision: timm backbones and their Lightning fine-tuning.

Importing this package registers the timm models ``vmamba_tiny_s1l8``, ``vmamba_small_s2l15``,
``vmamba_base_s2l15``, ``vmamba_{tiny,small,base}_v0``, ``efficientvmamba_{tiny,small,base}`` and
``segman_encoder_{tiny,small,base,large}``.
"""
from .data import ImageClassificationDataModule
from .efficientvmamba import EfficientVMamba
from .prediction_writer import TopKPredictionWriter
from .segman import SegMAN, SegMANDecoder, SegMANEncoder
from .segmentation import SegmentationModel
from .segmentation_data import SegmentationDataModule
from .segmentation_heads import FCNHead, UperNetHead
from .segmentation_task import SegmentationTask
from .segmentation_writer import SegmentationPredictionWriter
from .task import ClassificationTask
from .vmamba import VMamba

__all__ = [
    "ClassificationTask", "EfficientVMamba", "FCNHead", "ImageClassificationDataModule", "SegMAN", "SegMANDecoder",
    "SegMANEncoder", "SegmentationDataModule", "SegmentationModel", "SegmentationPredictionWriter", "SegmentationTask",
    "TopKPredictionWriter", "UperNetHead", "VMamba",
]
