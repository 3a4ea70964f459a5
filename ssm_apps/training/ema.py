"""Weight EMA for every task: one mixin on the pattern of timm's ``TrainingTask`` (``setup_ema``,
``update_ema``, ``eval_model``), on timm's ``ModelEmaV3``.

* The EMA copy is a submodule (``model_ema``), so its weights are in the task's ``state_dict`` and
  hence in every Lightning checkpoint; it is never optimised (``requires_grad=False``).
* It is updated once per optimizer step: ``on_train_batch_end`` updates it only when
  ``trainer.global_step`` has moved since the last update, so under ``accumulate_grad_batches=k``
  the k micro-batches of one step give one update. The step of the last update is saved in the
  checkpoint (``ema_step``), so a resumed run neither repeats nor skips an update.
* Decay: ``ema_decay``, or with ``ema_warmup`` timm's warm-up ``min(ema_decay, 1 - (1 + step) ** -2/3)``
  at optimizer step ``step``.
* ``eval_model`` is the EMA copy when on, else the trained model: tasks use it for validation, test
  and predict.

Why not Lightning's ``EMAWeightAveraging`` callback: it swaps the averaged weights into the task at
validation and copies them over the trained weights at the end of ``fit``. Keeping the EMA beside the
raw weights (as timm does) leaves the trained weights as they are and lets ``load_from_checkpoint``
restore both without the callback.
"""
from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["EMAMixin"]


class EMAMixin:
    """Adds ``model_ema`` (timm ``ModelEmaV3``) to a LightningModule; see the module docstring.

    Call :meth:`setup_ema` once the model exists; the mixin's hooks do the rest.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model_ema: nn.Module | None = None
        self._ema_step = 0

    def setup_ema(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        """Create the EMA copy of ``model``.

        Args:
            model: the network being trained.
            decay: EMA decay in [0, 1).
            warmup: timm's decay warm-up.
        """
        from timm.utils import ModelEmaV3

        self.model_ema = ModelEmaV3(model, decay=decay, use_warmup=warmup)
        self.model_ema.requires_grad_(False)  # never optimised (and no unused-parameter trouble in DDP)
        self.model_ema.train(self.training)  # follows the task's mode (the trainer switches it for eval)
        self._ema_step = 0

    def update_ema(self, model: nn.Module, step: int) -> bool:
        """Update the EMA from ``model`` if optimizer step ``step`` has not been averaged yet.

        Returns:
            Whether an update happened.
        """
        if self.model_ema is None or step == self._ema_step:
            return False
        self._ema_step = step
        self.model_ema.update(model, step=step)
        return True

    def ema_source(self) -> nn.Module:
        """The module the EMA follows (tasks override it when the network is not ``self.model``)."""
        return self.model

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.model_ema is not None:
            self.update_ema(self.ema_source(), self.global_step)

    @property
    def eval_model(self) -> nn.Module:
        """The weights used for validation, test and predict: the EMA when on, else the model."""
        return self.model_ema.module if self.model_ema is not None else self.ema_source()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ema_step"] = self._ema_step

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._ema_step = int(checkpoint.get("ema_step", 0))
