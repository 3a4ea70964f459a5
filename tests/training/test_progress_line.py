"""EpochProgressLine: one plain line per epoch with metrics, elapsed and remaining time."""
from __future__ import annotations

import io
import re
from types import SimpleNamespace

import torch

from ssm_apps.training.progress import EpochProgressLine, format_duration


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.4, 61, 3600 + 62)] == ["0s", "59s", "1m01s", "1h01m02s"]


def test_one_line_per_epoch_with_metrics_elapsed_and_remaining(monkeypatch):
    clock = iter([100.0, 130.0, 160.0])
    monkeypatch.setattr("ssm_apps.training.progress.time.perf_counter", lambda: next(clock))
    stream = io.StringIO()
    line = EpochProgressLine(stream)
    trainer = SimpleNamespace(current_epoch=0, global_step=0, max_epochs=4, max_steps=-1, is_global_zero=True,
                              sanity_checking=False, callback_metrics={})
    line.on_train_start(trainer, None)
    trainer.global_step, trainer.callback_metrics = 10, {"train_loss_step": torch.tensor(9.0),
                                                          "train_loss_epoch": torch.tensor(0.51234),
                                                          "val_loss": torch.tensor(0.6)}
    line.on_train_epoch_end(trainer, None)
    trainer.current_epoch, trainer.global_step = 1, 20
    line.on_train_epoch_end(trainer, None)
    first, second = stream.getvalue().splitlines()
    assert first == "epoch 1/4  step 10  train_loss_epoch 0.5123  val_loss 0.6  elapsed 30s  remaining ~1m30s"
    assert re.fullmatch(r"epoch 2/4  step 20  .*elapsed 1m00s  remaining ~1m00s", second)
