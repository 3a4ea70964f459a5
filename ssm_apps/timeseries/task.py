"""ForecastingTask: the LightningModule that trains and evaluates any forecaster
``model(x (B, lookback, N), x_mark (B, lookback, F)) -> (B, horizon, N)``."""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError

from .data import check_finite_windows

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # x, x_mark, y, y_mark


class ForecastingTask(L.LightningModule):
    """MSE training with Adam; the long-horizon benchmarks' schedule: the learning rate is
    ``learning_rate`` for the first two epochs, then multiplied by ``lr_decay`` after every epoch
    (the official ``lradj='type1'``: lr_e = lr * 0.5 ** max(0, e - 1) for 0-based epoch e).
    Logs ``train_loss``, ``val_loss`` (MSE, scaled values) and ``test_mse``/``test_mae``
    (over every test window and variate, scaled values).

    Args:
        model: the forecaster (e.g. ``ssm_apps.timeseries.SMamba``).
        learning_rate: Adam learning rate.
        lr_decay: per-epoch factor after the second epoch (1.0 = constant).
        use_time_marks: pass the time features to the model.
    """

    def __init__(self, model: nn.Module, learning_rate: float = 1e-4, lr_decay: float = 0.5,
                 use_time_marks: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.test_mse = MeanSquaredError()
        self.test_mae = MeanAbsoluteError()

    def forward(self, x: torch.Tensor, x_mark: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, x_mark if self.hparams.use_time_marks else None)

    def _loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, x_mark, y, _ = batch
        pred = self(x, x_mark)
        if pred.shape != y.shape:
            raise ValueError(
                f"ForecastingTask: the model's forecast {tuple(pred.shape)} does not match the target "
                f"{tuple(y.shape)}: set the model's lookback/horizon to the data's"
            )
        return F.mse_loss(pred, y), pred, y

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch[0].shape[0])
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, _, _ = self._loss(batch)
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=batch[0].shape[0])

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        _, pred, y = self._loss(batch)
        pred, y = pred.reshape(-1), y.reshape(-1)  # forecasts may be non-contiguous views
        self.test_mse(pred, y)
        self.test_mae(pred, y)
        self.log_dict({"test_mse": self.test_mse, "test_mae": self.test_mae}, on_epoch=True)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        x, x_mark, y, _ = batch
        loader = self.trainer.predict_dataloaders if self._trainer is not None else None
        check_finite_windows(x, batch_idx * (getattr(loader, "batch_size", None) or len(x)), "input")
        return {"input": x, "forecast": self(x, x_mark), "target": y}

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)
        decay = self.hparams.lr_decay
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: decay ** max(0, epoch - 1))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
