"""``ClassificationTask``: trains and evaluates a timm image classifier (VMamba, EfficientVMamba or
any other registered timm model) on ``(images, labels)`` batches.

The model is named, not passed: ``model: str`` is a timm model name, built with
``timm.create_model(model, num_classes=..., drop_path_rate=..., **model_kwargs)`` (``model_kwargs``
reach the constructor, e.g. ``dims``/``depths`` for a reduced VMamba or ``scan_backend``). The
``ssm_apps.vision`` models are registered by importing this module. For a model timm does not know,
register a builder with ``timm.models.register_model`` and name it.
"""
from __future__ import annotations

from typing import Any, Literal

import timm
import torch
import torch.nn.functional as F
from timm.data import Mixup
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ..training.checks import check_fraction, check_int
from ..training.task import SSMTask
from . import efficientvmamba as _efficientvmamba  # noqa: F401  (registers the timm models)
from . import vmamba as _vmamba  # noqa: F401

__all__ = ["ClassificationTask"]

Batch = tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class ClassificationTask(SSMTask):
    """Image classification with a timm model.

    * Loss: cross-entropy with ``label_smoothing``; with mixup/cutmix on (``mixup_alpha`` or
      ``cutmix_alpha`` > 0), timm's ``Mixup`` mixes each training batch (the batch size must be
      even) into soft targets smoothed by ``label_smoothing``, and the loss is the soft-target
      cross-entropy ``-(target * log_softmax(logits)).sum(-1).mean()``.
    * Optimiser: AdamW; weight decay ``weight_decay`` except norms, biases and ``_no_weight_decay``
      parameters; optional layer-wise lr decay and head-lr multiplier (``ssm_apps.training.optim``).
    * Schedule, per optimizer step: linear warm-up then cosine decay
      (``ssm_apps.training.schedules.warmup_cosine_lr``); the
      total is ``trainer.estimated_stepping_batches``, the warm-up ``warmup_steps`` or, when that is
      None, ``warmup_epochs`` epochs (needs ``max_epochs``).
    * EMA (``ema=True``): timm's ``ModelEmaV3`` of the weights, updated once per optimizer step
      and used for validation, test and predict (the raw weights keep training); see
      ``ssm_apps.training.ema``.
    * Metrics: ``train_loss``, ``val_loss``/``val_acc1``/``val_acc5``, ``test_loss``/``test_acc1``/
      ``test_acc5`` (micro top-k accuracy; top-5 only when there are >= 5 classes), ``lr``.
    * ``predict_step`` returns a dict of ``topk_indices`` and ``topk_probs`` (B, k) with
      k = min(``predict_top_k``, num_classes), the ``labels`` (-1 when unknown) and, when the batch
      carries it, the images' ``index``.

    ``num_classes=None`` takes the class count from the datamodule (``num_classes``) when the trainer
    sets the task up and then builds the model; the resolved count is stored in the hyper-parameters,
    so ``load_from_checkpoint`` rebuilds the same model. The class names (``classes``) are stored in
    the checkpoint too.

    Args:
        model: timm model name (e.g. ``efficientvmamba_tiny``, ``vmamba_tiny_s1l8``).
        num_classes: classifier outputs; None = from the datamodule.
        model_kwargs: extra keyword arguments of the model constructor.
        drop_path_rate: stochastic depth.
        pretrained_file: a checkpoint to start from (timm ``pretrained=True`` with this file: official
            VMamba/EfficientVMamba releases or our own state dicts; a classifier of another size is dropped).
            Checkpoints of the task store it as None: their own weights supersede the file.
        lr, weight_decay, betas, eps: AdamW.
        layer_decay: layer-wise lr decay through the model's ``group_matcher`` (1 = off).
        head_lr_mult: lr multiplier of the classifier (1 = off).
        warmup_epochs, warmup_steps, warmup_lr_init, min_lr: the schedule (see ``warmup_cosine_lr``).
        label_smoothing: smoothing of the (hard or mixed) targets.
        mixup_alpha, cutmix_alpha, mixup_prob, mixup_switch_prob, mixup_mode: timm ``Mixup`` (off when
            both alphas are 0).
        ema, ema_decay, ema_warmup: weight EMA (``ema_warmup``: timm's decay warm-up
            ``1 - (1 + step) ** -2/3``, capped at ``ema_decay``).
        predict_top_k: classes returned per image by ``predict_step``.
        classes: class names (None = from the datamodule when there is one).
    """

    def __init__(
        self,
        model: str = "efficientvmamba_tiny",
        num_classes: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        drop_path_rate: float = 0.1,
        pretrained_file: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        layer_decay: float = 1.0,
        head_lr_mult: float = 1.0,
        warmup_epochs: float = 1.0,
        warmup_steps: int | None = None,
        warmup_lr_init: float = 1e-6,
        min_lr: float = 1e-6,
        label_smoothing: float = 0.1,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mixup_prob: float = 1.0,
        mixup_switch_prob: float = 0.5,
        mixup_mode: Literal["batch", "pair", "elem"] = "batch",
        ema: bool = False,
        ema_decay: float = 0.999,
        ema_warmup: bool = True,
        predict_top_k: int = 5,
        classes: list[str] | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if not timm.is_model(model):
            raise ValueError(f"{name}: unknown timm model {model!r} (ssm_apps models: "
                             f"{timm.list_models('*vmamba*')})")
        check_int(name, "num_classes", num_classes, 1, allow_none=True)
        check_fraction(name, "label_smoothing", label_smoothing)
        check_int(name, "predict_top_k", predict_top_k, 1)
        if classes is not None and num_classes is not None and len(classes) != num_classes:
            raise ValueError(f"{name}: {len(classes)} class names for num_classes={num_classes}")
        self.save_hyperparameters()
        self.check_task_hyperparameters()
        self.classes = list(classes) if classes is not None else None
        self.model: nn.Module | None = None
        self.mixup: Mixup | None = None
        if num_classes is not None:
            self._build(num_classes)

    # -------------------------------------------------------------------------- building
    def _build(self, num_classes: int) -> None:
        hp = self.hparams
        kwargs = dict(hp.model_kwargs or {})
        if hp.pretrained_file:
            kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=hp.pretrained_file))
        self.model = timm.create_model(hp.model, num_classes=num_classes, drop_path_rate=hp.drop_path_rate, **kwargs)
        self.hparams["num_classes"] = num_classes
        self.setup_ema_from_hparams()
        if hp.mixup_alpha > 0 or hp.cutmix_alpha > 0:
            self.mixup = Mixup(mixup_alpha=hp.mixup_alpha, cutmix_alpha=hp.cutmix_alpha, prob=hp.mixup_prob,
                               switch_prob=hp.mixup_switch_prob, mode=hp.mixup_mode,
                               label_smoothing=hp.label_smoothing, num_classes=num_classes)
        self.metrics = nn.ModuleDict({
            f"{stage}_acc{k}": MulticlassAccuracy(num_classes=num_classes, top_k=k, average="micro")
            for stage in ("val", "test") for k in ((1, 5) if num_classes >= 5 else (1,))
        })

    @property
    def num_classes(self) -> int | None:
        return self.hparams.num_classes

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        dm_classes = getattr(dm, "classes", None)
        if dm_classes is not None:
            if self.classes is None:
                self.classes = list(dm_classes)
            elif list(dm_classes) != self.classes:
                raise ValueError(f"{type(self).__name__}: the task's classes {self.classes} differ from the "
                                 f"datamodule's {list(dm_classes)}")
        n = len(dm_classes) if dm_classes is not None else getattr(dm, "num_classes", None)
        if self.model is None:
            if n is None:
                raise ValueError(f"{type(self).__name__}: num_classes=None needs a datamodule with 'num_classes'; "
                                 f"set model.init_args.num_classes")
            self._build(int(n))
        elif n is not None and int(n) != self.num_classes:
            raise ValueError(f"{type(self).__name__}: the model has num_classes={self.num_classes} but the data "
                             f"has {n} classes")

    def _check_built(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__}: the model is built in setup() when num_classes=None; "
                               f"run it through a Trainer with a datamodule or give num_classes")
        return self.model

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["classes"] = self.classes
        if "hyper_parameters" in checkpoint:  # the checkpoint holds the weights: never re-read the start file
            checkpoint["hyper_parameters"] = {**checkpoint["hyper_parameters"], "pretrained_file": None}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.classes is None and checkpoint.get("classes") is not None:
            self.classes = list(checkpoint["classes"])

    # --------------------------------------------------------------------------- forward
    def ema_source(self) -> nn.Module:
        return self._check_built()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the model being trained in training mode; of ``eval_model`` otherwise."""
        return (self._check_built() if self.training else self.eval_model)(x)

    def _common_step(self, batch: Batch, stage: str) -> torch.Tensor | None:
        x, y = batch[0], batch[1]
        if stage == "train":
            return self._train_loss(x, y)
        logits = self.eval_model(x).float()
        loss = F.cross_entropy(logits, y)
        self.log(f"{stage}_loss", loss, prog_bar=stage == "val", on_epoch=True, sync_dist=True, batch_size=len(x))
        for key, metric in self.metrics.items():
            if key.startswith(stage):
                metric(logits, y)
                self.log(key, metric, prog_bar=key == f"{stage}_acc1", on_epoch=True, batch_size=len(x))
        return loss

    def _train_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model = self._check_built()
        if self.mixup is not None:
            if len(x) % 2:
                raise ValueError(f"{type(self).__name__}: mixup/cutmix needs an even batch size; got a batch of "
                                 f"{len(x)} (use an even batch_size and drop_last_train=True)")
            x, soft = self.mixup(x, y)
            loss = torch.sum(-soft * F.log_softmax(model(x).float(), dim=-1), dim=-1).mean()
        else:
            loss = F.cross_entropy(model(x).float(), y, label_smoothing=self.hparams.label_smoothing)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(x))
        self.log_lr(len(x))
        return loss

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        probs = self.eval_model(x).float().softmax(dim=-1)
        k = min(self.hparams.predict_top_k, probs.shape[-1])
        top_p, top_i = probs.topk(k, dim=-1)
        out = {"topk_indices": top_i, "topk_probs": top_p}
        if isinstance(batch, (tuple, list)) and len(batch) > 1:
            out["labels"] = batch[1]
        if isinstance(batch, (tuple, list)) and len(batch) > 2:
            out["index"] = batch[2]
        return out
