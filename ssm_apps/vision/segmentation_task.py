"""``SegmentationTask``: trains and evaluates a ``SegmentationModel`` (timm backbone + UperNet / SegMAN head).

SegMAN's recipe (mmseg): pixel-wise cross entropy with an ignore index (+ ``aux_weight`` x the
auxiliary FCN head's loss when the model has one), AdamW with the decode heads at ``head_lr_mult``
x the learning rate and no weight decay on norms, biases, position blocks (``rpb`` tables, the SSMs'
``A_logs``/``Ds``), a poly schedule with linear warm-up, stepped per optimizer step:

    lr(t) = (lr - min_lr) * (1 - t / T) ** power + min_lr,  times (1 - (1 - t / W) * (1 - warmup_ratio)) for t < W

Metrics from a torchmetrics confusion matrix accumulated over the epoch: ``{stage}_mIoU`` (mean of
the per-class IoU over classes present in prediction or target, as mmseg), ``{stage}_aAcc`` (pixel
accuracy), ``{stage}_IoU_<class>``. Evaluation is at full resolution: ``inference="whole"`` pads the
image to ``size_divisor`` and crops the logits back, ``"slide"`` averages ``crop_size`` windows at
``stride`` (mmseg's slide inference).

The model is rebuilt from the saved hyper-parameters, so ``SegmentationTask.load_from_checkpoint(path)``
needs nothing else.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassConfusionMatrix

from ..training.optim import param_groups_weight_decay
from ..training.task import SSMTask
from .segmentation import SegmentationModel

__all__ = ["SegmentationTask", "iou_from_confusion", "poly_warmup_factor"]

Batch = Mapping[str, Any]
NO_DECAY_KEYWORDS = ("rpb", "pos_block", "absolute_pos_embed")


def poly_warmup_factor(step: int, total_steps: int, warmup_steps: int = 0, warmup_ratio: float = 1e-6,
                       power: float = 1.0, min_lr_ratio: float = 0.0) -> float:
    """mmseg's poly schedule with linear warm-up, as a factor of the base lr (see the module docstring)."""
    t = min(step, total_steps)
    factor = (1.0 - min_lr_ratio) * (1.0 - t / max(total_steps, 1)) ** power + min_lr_ratio
    if step < warmup_steps:
        factor *= 1.0 - (1.0 - step / warmup_steps) * (1.0 - warmup_ratio)
    return factor


def iou_from_confusion(confusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-class IoU with NaN for classes absent from prediction and target, mIoU = nanmean, pixel accuracy)."""
    confusion = confusion.double()
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    acc = tp.sum() / confusion.sum().clamp(min=1)
    return iou, iou.nanmean(), acc


class SegmentationTask(SSMTask):
    """Semantic segmentation with a timm ``features_only`` backbone and a decode head.

    Args:
        backbone: timm model name (``segman_encoder_tiny``, ``vmamba_tiny_s1l8``, ``convnext_tiny`` ...).
        num_classes: output classes.
        head: "segman" (MMSCopE) or "upernet".
        head_kwargs: decode head arguments (e.g. ``channels``, ``feat_proj_dim``).
        aux_head: auxiliary FCN head on the stride-16 map.
        aux_weight: weight of the auxiliary loss (mmseg: 0.4).
        backbone_kwargs: extra ``timm.create_model`` arguments.
        pretrained: timm pretrained backbone weights.
        class_names: names for the per-class IoU logs (None: from the datamodule's ``classes``, else indices).
        ignore_index: label ignored by loss and metrics.
        lr: base learning rate (AdamW).
        weight_decay: AdamW weight decay (not on norms / biases / position blocks).
        head_lr_mult: learning-rate multiplier of the decode heads.
        betas: AdamW betas.
        warmup_steps: linear warm-up optimizer steps.
        warmup_ratio: warm-up start factor.
        power: poly power.
        min_lr: final learning rate.
        inference: "whole" or "slide" evaluation.
        crop_size: slide window (H, W).
        stride: slide stride (H, W).
        size_divisor: "whole" pads H, W to multiples of it.
    """

    def __init__(
        self,
        backbone: str = "segman_encoder_tiny",
        num_classes: int = 150,
        head: str = "segman",
        head_kwargs: dict[str, Any] | None = None,
        aux_head: bool = False,
        aux_weight: float = 0.4,
        backbone_kwargs: dict[str, Any] | None = None,
        pretrained: bool = False,
        class_names: list[str] | None = None,
        ignore_index: int = 255,
        lr: float = 6e-5,
        weight_decay: float = 0.01,
        head_lr_mult: float = 10.0,
        betas: Sequence[float] = (0.9, 0.999),
        warmup_steps: int = 1500,
        warmup_ratio: float = 1e-6,
        power: float = 1.0,
        min_lr: float = 0.0,
        inference: str = "whole",
        crop_size: Sequence[int] = (512, 512),
        stride: Sequence[int] = (341, 341),
        size_divisor: int = 32,
    ) -> None:
        super().__init__()
        if inference not in ("whole", "slide"):
            raise ValueError(f"SegmentationTask: argument 'inference' must be 'whole' or 'slide'; got {inference!r}")
        if lr <= 0 or head_lr_mult <= 0 or aux_weight < 0 or warmup_steps < 0:
            raise ValueError("SegmentationTask: lr and head_lr_mult must be > 0, aux_weight and warmup_steps >= 0; "
                             f"got {lr}, {head_lr_mult}, {aux_weight}, {warmup_steps}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"SegmentationTask: {len(class_names)} class_names for num_classes={num_classes}")
        self.save_hyperparameters()
        self.check_task_hyperparameters()
        self.model = SegmentationModel(backbone, num_classes, head, head_kwargs, aux_head, None, backbone_kwargs,
                                       pretrained)
        self.class_names = list(class_names) if class_names is not None else None
        self.confusion = torch.nn.ModuleDict({
            s: MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index) for s in ("val", "test")
        })

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and getattr(dm, "num_classes", self.hparams.num_classes) != self.hparams.num_classes:
            raise ValueError(f"SegmentationTask: the model has {self.hparams.num_classes} classes but the datamodule "
                             f"{dm.num_classes}")
        if self.class_names is None and dm is not None and getattr(dm, "classes", None):
            self.class_names = list(dm.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Full-resolution logits (B, classes, H, W) by the configured inference mode."""
        return self.slide_inference(x) if self.hparams.inference == "slide" else self.whole_inference(x)

    def whole_inference(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        d = self.hparams.size_divisor
        ph, pw = (-h) % d, (-w) % d
        logits = self.model.predict(F.pad(x, (0, pw, 0, ph)))
        return logits[..., :h, :w]

    def slide_inference(self, x: torch.Tensor) -> torch.Tensor:
        ch, cw = self.hparams.crop_size
        sh, sw = self.hparams.stride
        b, _, h, w = x.shape
        out = x.new_zeros(b, self.hparams.num_classes, h, w)
        count = x.new_zeros(1, 1, h, w)
        rows = max(math.ceil((h - ch) / sh), 0) + 1
        cols = max(math.ceil((w - cw) / sw), 0) + 1
        for r in range(rows):
            for c in range(cols):
                y1, x1 = min(r * sh, max(h - ch, 0)), min(c * sw, max(w - cw, 0))
                y2, x2 = min(y1 + ch, h), min(x1 + cw, w)
                crop = x[..., y1:y2, x1:x2]
                ph, pw = ch - crop.shape[-2], cw - crop.shape[-1]
                logits = self.model.predict(F.pad(crop, (0, pw, 0, ph)))[..., : y2 - y1, : x2 - x1]
                out[..., y1:y2, x1:x2] += logits
                count[..., y1:y2, x1:x2] += 1
        return out / count

    def _loss(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(logits.float(), mask, ignore_index=self.hparams.ignore_index)

    def _common_step(self, batch: Batch, stage: str) -> torch.Tensor | None:
        x, mask = batch["image"], batch["mask"]
        if stage == "train":
            logits, aux = self.model.forward_with_aux(x)
            loss = self._loss(logits, mask)
            self.log("train_loss_main", loss, on_step=True, on_epoch=False)
            if aux is not None:
                aux_loss = self._loss(aux, mask)
                self.log("train_loss_aux", aux_loss, on_step=True, on_epoch=False)
                loss = loss + self.hparams.aux_weight * aux_loss
            self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=x.shape[0])
            return loss
        logits = self(x)
        if logits.shape[-2:] != mask.shape[-2:]:  # evaluated on a resized image: logits to the mask's size
            logits = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=False)
        self.log(f"{stage}_loss", F.cross_entropy(logits.float(), mask, ignore_index=self.hparams.ignore_index),
                 on_epoch=True, batch_size=x.shape[0])
        self.confusion[stage].update(logits.argmax(1), mask)
        return None

    def _log_epoch(self, stage: str) -> None:
        iou, miou, acc = iou_from_confusion(self.confusion[stage].compute())
        self.log(f"{stage}_mIoU", miou.float(), prog_bar=True)
        self.log(f"{stage}_aAcc", acc.float())
        names = self.class_names or [str(i) for i in range(self.hparams.num_classes)]
        for name, value in zip(names, iou):
            if not torch.isnan(value):
                self.log(f"{stage}_IoU_{name}", value.float())
        self.confusion[stage].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        logits = self(batch["image"])
        if "mask" in batch and logits.shape[-2:] != batch["mask"].shape[-2:]:
            logits = F.interpolate(logits, size=batch["mask"].shape[-2:], mode="bilinear", align_corners=False)
        return {"pred": logits.argmax(1).to(torch.uint8 if self.hparams.num_classes <= 256 else torch.int32),
                "path": batch["path"]}

    def optim_param_groups(self) -> list[dict[str, Any]]:
        """AdamW groups: (backbone, heads) x (decay, no decay); heads at ``lr_scale = head_lr_mult``
        (the decode heads are not a timm classifier, so the shared grouping's head split does not apply)."""
        hp = self.hparams
        groups = []
        heads = [m for m in (self.model.decode_head, self.model.auxiliary_head) if m is not None]
        for part, mult in ((self.model.backbone, 1.0), (torch.nn.ModuleList(heads), hp.head_lr_mult)):
            skip = [n for n, _ in part.named_parameters() if any(k in n for k in NO_DECAY_KEYWORDS)]
            for g in param_groups_weight_decay(part, hp.weight_decay, extra_no_decay=skip):
                if g["params"]:
                    groups.append(dict(g, lr_scale=mult))
        return groups

    def build_scheduler(self, optimizer: torch.optim.Optimizer, base_lr: float) -> dict[str, Any]:
        """mmseg's poly schedule with its multiplicative warm-up (:func:`poly_warmup_factor`), per step."""
        hp = self.hparams
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(hp.warmup_steps, total)
        floor = hp.min_lr / hp.lr
        sched = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: poly_warmup_factor(step, total, warmup, hp.warmup_ratio, hp.power, floor))
        return {"scheduler": sched, "interval": "step"}
