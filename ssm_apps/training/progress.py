"""``EpochProgressLine``: one plain line per epoch (metrics, elapsed, remaining) for logs and schedulers."""
from __future__ import annotations

import sys
import time
from typing import IO

import lightning as L
from lightning.pytorch.callbacks import Callback

__all__ = ["EpochProgressLine", "format_duration"]


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class EpochProgressLine(Callback):
    """After every training epoch (and its validation): ``epoch 3/10  train_loss_epoch 0.4123
    val_loss 0.5012  elapsed 1m12s  remaining ~2m48s``. ``remaining`` extrapolates the mean epoch
    time of this session to ``max_epochs`` (or ``max_steps``).

    Args:
        stream: where to write (``None`` = standard output, flushed per line).
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream
        self._start = 0.0
        self._first_epoch = 0
        self._first_step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self._first_epoch = trainer.current_epoch
        self._first_step = trainer.global_step

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        elapsed = time.perf_counter() - self._start
        done_epochs = trainer.current_epoch + 1 - self._first_epoch
        remaining = ""
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            left = trainer.max_epochs - trainer.current_epoch - 1
            remaining = f"  remaining ~{format_duration(elapsed / max(1, done_epochs) * left)}"
            of = f"/{trainer.max_epochs}"
        elif trainer.max_steps and trainer.max_steps > 0:
            steps = trainer.global_step - self._first_step
            left = trainer.max_steps - trainer.global_step
            remaining = f"  remaining ~{format_duration(elapsed / max(1, steps) * left)}"
            of = ""
        else:
            of = ""
        metrics = "  ".join(f"{k} {float(v):.4g}" for k, v in sorted(trainer.callback_metrics.items())
                            if getattr(v, "numel", lambda: 1)() == 1 and not k.endswith("_step"))
        line = (f"epoch {trainer.current_epoch + 1}{of}  step {trainer.global_step}  {metrics}  "
                f"elapsed {format_duration(elapsed)}{remaining}")
        stream = self.stream or sys.stdout
        print(line, file=stream, flush=True)
