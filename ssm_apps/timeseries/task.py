"""ForecastingTask: the LightningModule that trains and evaluates any forecaster
``model(x (B, lookback, N), x_mark (B, lookback, F)) -> (B, horizon, N)``."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError

from ..training.task import SSMTask, build_module

__all__ = ["ForecastingTask"]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # x, x_mark, y, y_mark


class ForecastingTask(SSMTask):
    """MSE training with Adam; the long-horizon benchmarks' schedule: the learning rate is ``lr`` for
    the first two epochs, then multiplied by ``lr_decay`` after every epoch (the official
    ``lradj='type1'``: lr_e = lr * 0.5 ** max(0, e - 1) for 0-based epoch e).
    Logs ``train_loss``, ``val_loss`` (MSE, scaled values) and ``test_mse``/``test_mae``
    (over every test window and variate, scaled values).

    The model is given by class (see ``ssm_apps.training.task``): in a YAML as ``class_path`` /
    ``init_args``, from Python as that dict or as a module object. With a config (YAML or dict),
    ``ForecastingTask.load_from_checkpoint(path)`` rebuilds the model from the checkpoint alone.

    Args:
        model: the forecaster (e.g. ``ssm_apps.timeseries.SMamba``), or its
            ``{"class_path": ..., "init_args": ...}`` config.
        lr: Adam learning rate.
        lr_decay: per-epoch factor after the second epoch (1.0 = constant).
        weight_decay: Adam weight decay of matrices and kernels (norms, biases, ``A_log``/``D`` excluded).
        use_time_marks: pass the time features to the model.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = dict(SSMTask.DEFAULTS, optimizer="adam", schedule="step")

    def __init__(self, model: nn.Module | dict[str, Any], lr: float = 1e-4, lr_decay: float = 0.5,
                 weight_decay: float = 0.0, use_time_marks: bool = True) -> None:
        super().__init__()
        self.save_task_hyperparameters("model")
        self.check_task_hyperparameters()
        self.model = build_module(type(self).__name__, "model", model)
        self.test_mse = MeanSquaredError()
        self.test_mae = MeanAbsoluteError()

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, x_mark if self.hparams.use_time_marks else None)

    def _forecast(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, x_mark, y, _ = batch
        pred = self(x, x_mark)
        if pred.shape != y.shape:
            raise ValueError(
                f"ForecastingTask: the model's forecast {tuple(pred.shape)} does not match the target "
                f"{tuple(y.shape)}: set the model's lookback/horizon to the data's"
            )
        return pred, y

    def _common_step(self, batch: Batch, stage: str) -> torch.Tensor | None:
        pred, y = self._forecast(batch)
        if stage == "test":
            pred, y = pred.reshape(-1), y.reshape(-1)  # forecasts may be non-contiguous views
            self.test_mse(pred, y)
            self.test_mae(pred, y)
            self.log_dict({"test_mse": self.test_mse, "test_mae": self.test_mae}, on_epoch=True)
            return None
        loss = F.mse_loss(pred, y)
        if stage == "train":
            self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch[0].shape[0])
        else:
            self.log("val_loss", loss, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=batch[0].shape[0])
        return loss

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        x, x_mark, y, _ = batch
        return {"input": x, "forecast": self(x, x_mark), "target": y}
