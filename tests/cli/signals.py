"""A callback for the signal tests: the training process sends itself a real signal at a chosen step."""
from __future__ import annotations

import os
import signal

from lightning.pytorch.callbacks import Callback


class SignalAt(Callback):
    """Sends ``signum`` (a name: ``SIGKILL``, ``SIGTERM``, ``SIGINT``) to this process once, after
    optimizer step ``step`` (in ``on_train_batch_end``, i.e. mid-epoch when ``step`` is)."""

    def __init__(self, step: int, signum: str = "SIGKILL") -> None:
        self.step = step
        self.signum = getattr(signal, signum)
        self.sent = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.sent and trainer.global_step == self.step:
            self.sent = True
            os.kill(os.getpid(), self.signum)
