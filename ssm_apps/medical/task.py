"""Lightning tasks: ``MedicalPretrainTask`` (MambaMIM) and ``MedicalSegmentationTask`` (HyMamba).

Both rebuild their network from plain arguments saved with ``save_hyperparameters()``, so
``Task.load_from_checkpoint(path)`` needs no YAML. Both are :class:`~ssm_apps.training.SSMTask` subclasses
(``_common_step(batch, stage)``, the shared AdamW and parameter groups); their schedule is the official one below,
set per optimizer step rather than through a torch scheduler because it moves the weight decay too.

Schedules (per optimizer step s of S, warm-up W), as the official MambaMIM pre-training:

    lr(s) = lr * (warmup_start + (1 - warmup_start) * s / W)                   s < W
          = min_lr + (lr - min_lr) * (1 + cos(pi * (s - W) / (S - 1 - W))) / 2  otherwise
    wd(s) = weight_decay_end + (weight_decay - weight_decay_end) * (1 + cos(pi * s / (S - 1))) / 2

(official: warmup_start 0.005, min_lr = 0.001 lr, weight decay 0.04 -> 0.2). Norm weights, biases, the
mask tokens and TOKI matrix get no weight decay.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..training.optim import param_groups_weight_decay
from ..training.schedules import warmup_cosine_lr
from ..training.task import SSMTask
from .hymamba import create_hymamba
from .mambamim import MambaMIM

__all__ = ["MedicalPretrainTask", "MedicalSegmentationTask", "lr_wd_at", "param_groups"]


def lr_wd_at(step: int, total: int, lr: float, min_lr: float, warmup_steps: int, warmup_start: float,
             weight_decay: float, weight_decay_end: float) -> tuple[float, float]:
    """(learning rate, weight decay) of optimizer step ``step`` (0-based) of ``total`` (formula in the module doc)."""
    cur = warmup_cosine_lr(step, lr, total - 1, warmup_steps, warmup_start * lr, min_lr)
    t = min(1.0, step / max(1, total - 1))
    wd = weight_decay_end + (weight_decay - weight_decay_end) * 0.5 * (1 + math.cos(math.pi * t))
    return cur, wd


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The shared two groups (:func:`~ssm_apps.training.optim.param_groups_weight_decay`: no decay on
    parameters with at most one dimension, biases, ``_no_weight_decay`` ones and ``model.no_weight_decay()``
    names), each with ``wd_scale`` (1 / 0) for the weight-decay schedule."""
    return [dict(g, wd_scale=1.0 if g["weight_decay"] else 0.0)
            for g in param_groups_weight_decay(model, weight_decay)]


class _ScheduledTask(SSMTask):
    """AdamW with per-step lr / weight-decay schedules (``lr_wd_at``) and gradient-norm clipping."""

    model: nn.Module

    def optim_param_groups(self) -> list[dict[str, Any]]:
        return param_groups(self.model, self.hparams.weight_decay)

    def build_scheduler(self, optimizer: torch.optim.Optimizer, base_lr: float) -> None:
        return None  # lr and weight decay are set per step in on_train_batch_start

    def _total_steps(self) -> int:
        return max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        h = self.hparams
        lr, wd = lr_wd_at(self.global_step, self._total_steps(), h.lr, h.min_lr, h.warmup_steps, h.warmup_start,
                          h.weight_decay, h.weight_decay_end)
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                group["lr"], group["weight_decay"] = lr, wd * group.get("wd_scale", 1.0)
        self.log("lr", lr, prog_bar=False, on_step=True, on_epoch=False)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        clip = self.hparams.grad_clip if gradient_clip_val is None else gradient_clip_val
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")


class MedicalPretrainTask(_ScheduledTask):
    """MambaMIM masked pre-training of a HyMamba encoder on (unlabelled) volumes.

    Args:
        model_kwargs: ``MambaMIM`` arguments (channels, depths, exp_r, img_size, depth, mask_ratio, decoder_width...).
        lr: peak learning rate (official 1e-4).
        min_lr: final learning rate (official 0.001 * lr; None = that).
        warmup_steps: linear warm-up steps.
        warmup_start: warm-up starts at ``warmup_start * lr`` (official 0.005).
        weight_decay: initial weight decay (official 0.04).
        weight_decay_end: final weight decay (official 0.2).
        grad_clip: gradient-norm clip (official 5; 0 = off).
    """

    def __init__(self, model_kwargs: Mapping[str, Any] | None = None, lr: float = 1e-4, min_lr: float | None = None,
                 warmup_steps: int = 0, warmup_start: float = 0.005, weight_decay: float = 0.04,
                 weight_decay_end: float = 0.2, grad_clip: float = 5.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        if min_lr is None:
            self.hparams.min_lr = 0.001 * lr
        self.model = MambaMIM(**dict(model_kwargs or {}))

    def forward(self, x: torch.Tensor, active: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.model(x, active)

    def _common_step(self, batch: Mapping[str, torch.Tensor], stage: str) -> torch.Tensor:
        x = batch["image"]
        out = self.model(torch.as_tensor(x))
        self.log(f"{stage}_loss", out["loss"], prog_bar=True, batch_size=x.shape[0], on_step=stage == "train",
                 on_epoch=True)
        return out["loss"]


class MedicalSegmentationTask(_ScheduledTask):
    """HyMamba (or any preset of ``create_hymamba``) trained with MONAI's DiceCELoss, evaluated by sliding-window
    inference with per-class Dice.

    Args:
        model: a ``HYMAMBA_CONFIGS`` name ("hymamba_official", "hymamba_small", "hymamba_tiny").
        model_kwargs: overrides for it (e.g. ``scan: tri6``, ``img_size``, ``spatial_dims``).
        num_classes: output classes including background.
        class_names: names of classes 1..K for the logged Dice (default "class_k").
        lr, min_lr, warmup_steps, warmup_start, weight_decay, weight_decay_end, grad_clip: optimisation (module doc).
        roi_size: sliding-window size (default 96^3; must be what the network takes, a multiple of 16).
        sw_batch_size: windows per forward.
        overlap: window overlap (0.5).
        padding_mode: how sliding-window inference pads a volume smaller than ``roi_size`` (MONAI's
            ``padding_mode``: "constant" with 0, the default, "reflect" or "replicate").
        pretrained: optional pre-training checkpoint (ours or official MambaMIM) whose encoder weights are loaded.
        lambda_dice, lambda_ce: weights of DiceCELoss's two terms.
    """

    def __init__(self, model: str = "hymamba_official", model_kwargs: Mapping[str, Any] | None = None,
                 num_classes: int = 14, class_names: Sequence[str] | None = None, lr: float = 1e-4,
                 min_lr: float = 1e-6, warmup_steps: int = 0, warmup_start: float = 0.005, weight_decay: float = 1e-5,
                 weight_decay_end: float | None = None, grad_clip: float = 0.0,
                 roi_size: Sequence[int] = (96, 96, 96), sw_batch_size: int = 2, overlap: float = 0.5,
                 padding_mode: str = "constant", pretrained: str | None = None, lambda_dice: float = 1.0,
                 lambda_ce: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"MedicalSegmentationTask: argument 'overlap' must be in [0, 1); got {overlap}")
        if padding_mode not in ("constant", "reflect", "replicate"):
            raise ValueError(f"MedicalSegmentationTask: argument 'padding_mode' must be 'constant', 'reflect' or "
                             f"'replicate'; got {padding_mode!r}")
        if class_names is not None and len(class_names) != num_classes - 1:
            raise ValueError(f"MedicalSegmentationTask: 'class_names' must name the {num_classes - 1} foreground "
                             f"classes; got {len(class_names)}")
        self.save_hyperparameters()
        if weight_decay_end is None:
            self.hparams.weight_decay_end = weight_decay
        kwargs = dict(model_kwargs or {})
        kwargs.setdefault("img_size", tuple(roi_size))
        self.model = create_hymamba(model, out_channels=num_classes, **kwargs)
        self.class_names = list(class_names or [f"class_{k}" for k in range(1, num_classes)])
        from monai.losses import DiceCELoss
        from monai.metrics import DiceMetric

        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=lambda_dice, lambda_ce=lambda_ce)
        self.dice = {s: DiceMetric(include_background=False, reduction="mean_batch", ignore_empty=True)
                     for s in ("val", "test")}
        self.loaded_keys: list[str] = []
        if pretrained:
            self.load_pretrained(pretrained)

    def load_pretrained(self, path: str) -> list[str]:
        """Load the encoder of a pre-training checkpoint (ours or official); returns and prints the loaded keys."""
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        state = self.model.load_encoder(ckpt)
        self.loaded_keys = sorted(k for k in state if k not in state.filled)
        print(f"[MedicalSegmentationTask] loaded {len(self.loaded_keys)} encoder tensors from {path}"
              + (f"; kept own values for {state.filled}" if state.filled else "")
              + f"; {len(state.dropped)} checkpoint tensors not used (decoder / MIM heads)")
        return self.loaded_keys

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Sliding-window logits over a whole volume (B, C, *spatial) -> (B, num_classes, *spatial)."""
        from monai.inferers import sliding_window_inference

        return sliding_window_inference(x, tuple(self.hparams.roi_size), self.hparams.sw_batch_size, self.model,
                                        overlap=self.hparams.overlap, mode="gaussian",
                                        padding_mode=self.hparams.padding_mode)

    def _common_step(self, batch: Mapping[str, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch["image"], batch["label"]
        logits = self.model(x) if stage == "train" else self.infer(x)
        loss = self.loss_fn(logits, y)
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=x.shape[0], on_step=stage == "train", on_epoch=True)
        if stage != "train":
            from monai.networks.utils import one_hot

            pred = one_hot(logits.argmax(1, keepdim=True), self.hparams.num_classes)
            self.dice[stage](pred, one_hot(torch.as_tensor(y).long(), self.hparams.num_classes))
        return loss

    def _dice_epoch_end(self, stage: str) -> dict[str, float]:
        scores = self.dice[stage].aggregate()
        self.dice[stage].reset()
        out = {f"{stage}_dice_{n}": float(v) for n, v in zip(self.class_names, scores)}
        self.log_dict(out, prog_bar=False)
        out[f"{stage}_dice"] = float(torch.nanmean(scores))
        self.log(f"{stage}_dice", out[f"{stage}_dice"], prog_bar=True)
        return out

    def on_validation_epoch_end(self) -> None:
        self._dice_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._dice_epoch_end("test")

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """Label map (B, 1, *spatial) as a MetaTensor carrying the image's meta (for inversion / writing)."""
        x = batch["image"]
        pred = self.infer(x).argmax(1, keepdim=True).to(torch.uint8)
        if hasattr(x, "meta"):
            from monai.data import MetaTensor

            pred = MetaTensor(pred, affine=x.affine, meta=x.meta, applied_operations=x.applied_operations)
        return {"pred": pred, "image": x}
