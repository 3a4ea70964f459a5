"""Lightning tasks for SSAMBA: masked-patch pretraining and fine-tuning for classification.

Both build their model from plain arguments (``model_name`` preset + ``model_kwargs``) saved as
hyper-parameters, so ``Task.load_from_checkpoint(path)`` needs nothing else. Batches are the dicts of
:class:`~ssm_apps.audio.AudioDataModule` (``fbank``, ``label``, ``index``).
"""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..convert import ConvertedStateDict
from ..training.checks import check_choice, check_int, check_interval
from ..training.task import SSMTask
from .ssamba import SSAMBA, create_ssamba, load_pretrained_encoder

Batch = Mapping[str, torch.Tensor]


class AudioPretrainTask(SSMTask):
    """Self-supervised SSAMBA pretraining (masked spectrogram patch modelling, the official "joint" task).

    Each step runs two encoder passes with independently drawn cluster masks: InfoNCE between predicted
    and true patches (mpc) and MSE of the predicted patch values (mpg); ``loss = nce + 10 * mse``.
    Optimiser (through :class:`~ssm_apps.training.SSMTask`): AdamW (betas 0.95 / 0.999, weight decay 5e-8
    as the official; none on norms, biases, embeddings) with a linear warm-up per step, then a constant
    learning rate (``schedule="constant"``, official) or a cosine decay to ``min_lr`` over the run
    (``"cosine"``). Logs ``train_loss``, ``train_mpc_acc``, ``val_loss``,
    ``val_mpc_acc`` (masked-patch accuracy; validation masks drawn from a fixed seed), ``val_mpc_nce``,
    ``val_mpg_mse``.

    Args:
        model_name: SSAMBA preset (``ssamba_tiny`` / ``ssamba_small`` / ``ssamba_base``).
        model_kwargs: constructor overrides (``input_tdim``, ``num_masked``, ...); ``patch_stride`` is set to
            the patch size and ``pretrain_heads=True``.
        lr: peak learning rate.
        weight_decay: AdamW weight decay (not on norms, biases, embeddings).
        betas: AdamW betas.
        warmup_steps: linear warm-up steps.
        schedule: ``"constant"`` or ``"cosine"`` after the warm-up.
        min_lr: final learning rate of the cosine schedule.
        val_seed: seed of the validation masks.
    """

    def __init__(
        self,
        model_name: str = "ssamba_tiny",
        model_kwargs: dict[str, Any] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 5e-8,
        betas: Sequence[float] = (0.95, 0.999),
        warmup_steps: int = 1000,
        schedule: str = "constant",
        min_lr: float = 0.0,
        val_seed: int = 0,
    ) -> None:
        super().__init__()
        check_choice(type(self).__name__, "schedule", schedule, ("constant", "cosine"))
        self.save_hyperparameters()
        self.check_task_hyperparameters()
        kwargs = dict(model_kwargs or {})
        kwargs.setdefault("patch_stride", kwargs.get("patch_size", 16))
        self.model: SSAMBA = create_ssamba(model_name, num_classes=0, pretrain_heads=True, **kwargs)

    def _common_step(self, batch: Batch, stage: str) -> torch.Tensor:
        fbank = batch["fbank"]
        rng = None if stage == "train" else self._val_rng
        losses = self.model.masked_losses(fbank, rng=rng)
        on_step = stage == "train"
        self.log_dict({f"{stage}_{k}": v for k, v in losses.items() if k != "loss"}, on_step=on_step, on_epoch=True,
                      batch_size=fbank.shape[0], sync_dist=not on_step)
        self.log(f"{stage}_loss", losses["loss"], prog_bar=True, on_step=on_step, on_epoch=True,
                 batch_size=fbank.shape[0], sync_dist=not on_step)
        return losses["loss"]

    def on_validation_epoch_start(self) -> None:
        self._val_rng = random.Random(self.hparams.val_seed)

    def on_test_epoch_start(self) -> None:
        self._val_rng = random.Random(self.hparams.val_seed)


class AudioClassificationTask(SSMTask):
    """Fine-tune SSAMBA for audio classification (single-label CE, or multi-label / official BCE).

    Tokens -> mean over the patch tokens (``pooling="mean"``, the official ``ft_avgtok``) or the cls
    token -> LayerNorm + Linear. Training augmentations on the cached features: mixup (per clip with
    probability ``mixup``, partner drawn from the batch, lambda ~ Beta(10, 10), labels mixed), SpecAugment
    with ``torchaudio.transforms.FrequencyMasking(freqm)`` / ``TimeMasking(timem)``, and the official noise
    augmentation (``noise=True``: uniform noise * U(0,1) / 10 and a time roll of up to +-10 frames).
    Optimiser as the official fine-tuning, through :class:`~ssm_apps.training.SSMTask` (schedule
    ``"multistep"``): Adam (betas 0.95 / 0.999, weight decay 5e-7; none on norms, biases, embeddings),
    the head at ``lr * head_lr_mult``, linear warm-up over ``warmup_steps`` (smooth; the official steps
    it every 50 steps), then the official MultiStepLR milestones: during (0-based) epoch e the learning
    rate is multiplied by ``lr_decay`` once per milestone ``lr_decay_start, lr_decay_start +
    lr_decay_step, ...`` that is <= e (the official scheduler steps after each 1-based epoch, which
    gives the same epochs).
    Metrics (torchmetrics): accuracy, and mAP for multi-label.

    Args:
        num_classes: classes.
        model_name: SSAMBA preset.
        model_kwargs: constructor overrides (``input_tdim``, ``patch_stride`` (10 in the recipes), ...).
        pretrained: encoder weights to start from: our pretraining checkpoint (``.ckpt``) or an official
            SSAMBA pretraining checkpoint (``.pth``, ``module.*`` keys); loaded at the start of a fresh
            ``fit`` (not when resuming, not by ``load_from_checkpoint``).
        pooling: ``"mean"`` or ``"cls"``.
        multilabel: sigmoid outputs, BCE loss, mAP (labels (B, C) float).
        loss: ``"ce"`` or ``"bce"`` (BCE on one-hot labels, as the official Speech Commands recipe).
        lr: encoder learning rate.
        head_lr_mult: head learning rate / ``lr`` (the official ``head_lr``).
        weight_decay: Adam weight decay (not on norms, biases, embeddings).
        betas: Adam betas.
        warmup_steps: linear warm-up steps (0 = none).
        lr_decay_start: first (0-based) epoch at which the learning rate is multiplied by ``lr_decay``.
        lr_decay_step: epochs between further decays.
        lr_decay: decay factor.
        mixup: probability of mixing a clip with another one of the batch.
        freqm: SpecAugment maximum frequency-mask width (mel bins; 0 = off).
        timem: SpecAugment maximum time-mask width (frames; 0 = off).
        mask_value: value of masked cells (normalised features); the official masks before normalising,
            i.e. ``-mean / (2 std)`` (0.615 for the Speech Commands statistics).
        noise: the official noise + time-roll augmentation.
        label_smoothing: CE label smoothing.
        classes: class names (stored for prediction writers).
    """

    DEFAULTS = {**SSMTask.DEFAULTS, "optimizer": "adam", "schedule": "multistep"}

    def __init__(
        self,
        num_classes: int,
        model_name: str = "ssamba_tiny",
        model_kwargs: dict[str, Any] | None = None,
        pretrained: str | None = None,
        pooling: str = "mean",
        multilabel: bool = False,
        loss: str = "ce",
        lr: float = 2.5e-4,
        head_lr_mult: float = 1.0,
        weight_decay: float = 5e-7,
        betas: Sequence[float] = (0.95, 0.999),
        warmup_steps: int = 1000,
        lr_decay_start: int = 5,
        lr_decay_step: int = 1,
        lr_decay: float = 0.85,
        mixup: float = 0.0,
        freqm: int = 0,
        timem: int = 0,
        mask_value: float = 0.0,
        noise: bool = False,
        label_smoothing: float = 0.0,
        classes: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_int(owner, "num_classes", num_classes, 1)
        check_interval(owner, "mixup", mixup, 0.0, 1.0, high_closed=True)
        check_choice(owner, "pooling", pooling, ("mean", "cls"))
        check_choice(owner, "loss", loss, ("ce", "bce"))
        if multilabel and loss != "bce":
            raise ValueError(f"{owner}: multilabel=True needs loss='bce'; got loss={loss!r}")
        if classes is not None and len(classes) != num_classes:
            raise ValueError(f"{owner}: argument 'classes' has {len(classes)} names for num_classes={num_classes}")
        self.save_hyperparameters()
        self.check_task_hyperparameters()
        self.model: SSAMBA = create_ssamba(model_name, num_classes=num_classes, **dict(model_kwargs or {}))
        self.classes = list(classes) if classes is not None else None
        self.freq_mask = self.time_mask = None
        if freqm or timem:
            import torchaudio

            self.freq_mask = torchaudio.transforms.FrequencyMasking(freqm) if freqm else None
            self.time_mask = torchaudio.transforms.TimeMasking(timem) if timem else None
        from torchmetrics import MetricCollection
        from torchmetrics.classification import (
            MulticlassAccuracy,
            MultilabelAveragePrecision,
        )

        metrics: dict[str, Any] = {"acc": MulticlassAccuracy(num_classes, average="micro")}
        if multilabel:
            metrics["map"] = MultilabelAveragePrecision(num_classes, average="macro")
        self.val_metrics = MetricCollection(metrics, prefix="val_")
        self.test_metrics = self.val_metrics.clone(prefix="test_")
        self.loaded_encoder: ConvertedStateDict | None = None

    # ------------------------------------------------------------------ model
    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> logits (B, num_classes)."""
        return self.model(fbank, pooling=self.hparams.pooling)

    def load_encoder(self, path: str) -> ConvertedStateDict:
        """Load encoder weights from our pretraining checkpoint or an official one (see ``pretrained``)."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        converted = load_pretrained_encoder(self.model, checkpoint)
        self.model.load_state_dict(converted, strict=True)
        self.loaded_encoder = converted
        return converted

    def on_fit_start(self) -> None:
        if self.hparams.pretrained and self.trainer.ckpt_path is None and self.loaded_encoder is None:
            self.load_encoder(self.hparams.pretrained)

    # ------------------------------------------------------------------ steps
    def _targets(self, labels: torch.Tensor) -> torch.Tensor:
        """Class indices (B,) -> one-hot / soft (B, C) float; multi-label (B, C) unchanged."""
        if labels.dim() == 2:
            return labels.float()
        return F.one_hot(labels, self.hparams.num_classes).float()

    def _augment(self, fbank: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hp = self.hparams
        if hp.mixup > 0:
            b = fbank.shape[0]
            mix = torch.rand(b, device=fbank.device) < hp.mixup
            lam = torch.distributions.Beta(10.0, 10.0).sample((b,)).to(fbank.device)
            lam = torch.where(mix, lam, torch.ones_like(lam))
            partner = torch.randint(0, b, (b,), device=fbank.device)
            fbank = lam[:, None, None] * fbank + (1 - lam[:, None, None]) * fbank[partner]
            target = lam[:, None] * target + (1 - lam[:, None]) * target[partner]
        if self.freq_mask is not None or self.time_mask is not None:
            spec = fbank.transpose(1, 2)  # (B, F, T), as torchaudio's masks expect
            masked = []
            for clip in spec:  # one mask per clip, as the official per-sample data loader
                clip = clip.unsqueeze(0)
                if self.freq_mask is not None:
                    clip = self.freq_mask(clip, hp.mask_value)
                if self.time_mask is not None:
                    clip = self.time_mask(clip, hp.mask_value)
                masked.append(clip.squeeze(0))
            fbank = torch.stack(masked).transpose(1, 2)
        if hp.noise:
            b = fbank.shape[0]
            scale = torch.rand(b, 1, 1, device=fbank.device) / 10
            fbank = fbank + torch.rand_like(fbank) * scale
            shifts = torch.randint(-10, 10, (b,)).tolist()
            fbank = torch.stack([torch.roll(x, s, dims=0) for x, s in zip(fbank, shifts)])
        return fbank, target

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.hparams.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.cross_entropy(logits, target, label_smoothing=self.hparams.label_smoothing)

    def _common_step(self, batch: Batch, stage: str) -> torch.Tensor:
        fbank, labels = batch["fbank"], batch["label"]
        target = self._targets(labels)
        if stage == "train":
            fbank, target = self._augment(fbank, target)
        logits = self(fbank)
        loss = self._loss(logits, target)
        b = fbank.shape[0]
        if stage == "train":
            self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=b)
            return loss
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        if self.hparams.multilabel:
            metrics["acc"].update(logits.argmax(-1), labels.argmax(-1))
            metrics["map"].update(logits.sigmoid(), labels.long())
        else:
            metrics["acc"].update(logits.argmax(-1), labels)
        self.log(f"{stage}_loss", loss, prog_bar=True, on_epoch=True, batch_size=b, sync_dist=True)
        self.log_dict(metrics, on_epoch=True, prog_bar=True, batch_size=b)
        return loss

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        logits = self(batch["fbank"])
        probs = logits.sigmoid() if self.hparams.multilabel else logits.softmax(-1)
        out = {"probs": probs, "index": batch["index"]}
        if "label" in batch:
            out["label"] = batch["label"]
        return out
