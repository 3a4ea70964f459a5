"""Exact resume and clean interruption of ``fit``.

* ``RandomStateCheckpoint``: saves the Python, NumPy and torch (CPU and CUDA) random states in
  every checkpoint and puts them back on resume at the point where they were taken (before the
  first training batch of a mid-epoch checkpoint, at the start of the epoch otherwise). With the
  data loaders' own state (torchdata's ``StatefulDataLoader``, saved and restored by Lightning),
  a run resumed from a mid-epoch ``last.ckpt`` takes the same steps as an uninterrupted one.
* ``InterruptCheckpoint``: SIGTERM and SIGINT during ``fit`` stop training at the next batch
  boundary, write ``last.ckpt`` there (resumable) and record the signal, so that the command exits
  with ``128 + signal`` (143 / 130) rather than 0. A second SIGINT interrupts at once.
* ``last_checkpoints``: the two ``ModelCheckpoint`` callbacks that keep ``last.ckpt`` current
  (every ``every_n_train_steps`` optimizer steps, and at every epoch end).
* ``ContinuingCSVLogger``: a CSV logger that appends to the run's ``metrics.csv`` on resume
  (Lightning's deletes it), dropping rows logged after the checkpoint it resumes from.
"""
from __future__ import annotations

import csv
import os
import random
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["ContinuingCSVLogger", "InterruptCheckpoint", "RandomStateCheckpoint", "last_checkpoints"]


# ------------------------------------------------------------------------------- random states
def get_random_states() -> dict[str, Any]:
    """Python, NumPy and torch random states, in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch_cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "torch_cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch_cuda"])


def _epoch_accumulators(trainer: L.Trainer) -> dict[str, dict[str, torch.Tensor]]:
    """The running sums of the epoch-level training metrics (``self.log(..., on_epoch=True)``)."""
    results = trainer.fit_loop.epoch_loop._results
    return {key: {"value": metric.value.detach().clone(), "cumulated_batch_size": metric.cumulated_batch_size.clone()}
            for key, metric in results.items()
            if metric.is_tensor and metric.meta.on_epoch and hasattr(metric, "cumulated_batch_size")}


def _merge_epoch_accumulators(trainer: L.Trainer, saved: dict[str, dict[str, torch.Tensor]]) -> None:
    """Adds the sums saved before the interruption to the ones of the first resumed batch: the same
    floating-point result as the uninterrupted run's running sum (``s + x == x + s`` exactly)."""
    results = trainer.fit_loop.epoch_loop._results
    for key, state in saved.items():
        metric = results.get(key)
        if metric is None:
            continue
        value = state["value"].to(metric.value.device)
        if metric.meta.is_max_reduction:
            metric.value = torch.maximum(metric.value, value)
        elif metric.meta.is_min_reduction:
            metric.value = torch.minimum(metric.value, value)
        else:
            metric.value = metric.value + value
        metric.cumulated_batch_size = metric.cumulated_batch_size + state["cumulated_batch_size"].to(
            metric.cumulated_batch_size.device)


class RandomStateCheckpoint(Callback):
    """Random states (and the running sums of epoch-level training metrics) in checkpoints, put back
    where they were taken (see the module docstring): a resumed epoch logs the same epoch means."""

    def __init__(self) -> None:
        self._mid_epoch = False
        self._pending: dict[str, Any] | None = None
        self._pending_sums: dict[str, Any] | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mid_epoch = True
        if self._pending is not None and not self._pending["mid_epoch"]:
            self._restore()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._pending is not None:
            self._pending_sums = self._pending.get("epoch_sums") if self._pending["mid_epoch"] else None
            self._restore()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._pending_sums is not None:
            _merge_epoch_accumulators(trainer, self._pending_sums)
            self._pending_sums = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mid_epoch = False

    def _restore(self) -> None:
        assert self._pending is not None
        set_random_states(self._pending["states"])
        self._pending = None

    def state_dict(self) -> dict[str, Any]:
        state = {"mid_epoch": self._mid_epoch, "states": get_random_states()}
        trainer = getattr(self, "_trainer", None)
        if self._mid_epoch and trainer is not None:
            state["epoch_sums"] = _epoch_accumulators(trainer)
        return state

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)


# ------------------------------------------------------------------------------ interruption
class InterruptCheckpoint(Callback):
    """SIGTERM/SIGINT during ``fit``: stop at the next batch boundary, write ``last.ckpt``, exit 128 + signal.

    Args:
        dirpath: the folder of ``last.ckpt`` (the run's ``checkpoints`` folder).
        filename: the checkpoint's file name.
    """

    def __init__(self, dirpath: str | os.PathLike, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename
        self.signal: int | None = None
        self.saved: Path | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after Lightning registered its SIGTERM handler (which makes the loops stop at a batch boundary)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._make_handler(trainer))

    def _make_handler(self, trainer: L.Trainer):
        def handler(signum: int, frame: FrameType | None) -> None:
            if self.signal is not None and signum == signal.SIGINT:  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            self.signal = signum
            print(f"\nssm-apps: received {signal.Signals(signum).name}: stopping after this batch and writing "
                  f"{self.path} (send SIGINT again to stop at once)", file=sys.stderr, flush=True)
            previous = self._previous.get(signal.SIGTERM)
            if signum == signal.SIGTERM and callable(previous):
                previous(signum, frame)  # Lightning's: sets trainer.received_sigterm
            else:
                trainer._signal_connector.received_sigterm = True
        return handler

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            if handler is not None:
                signal.signal(signum, handler)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path)
        self.saved = self.path
        if trainer.is_global_zero:
            print(f"ssm-apps: wrote a resumable checkpoint {self.path}; resume with --ckpt_path {self.path}",
                  file=sys.stderr, flush=True)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # the loop stops right after this hook: save here, at the state of a mid-epoch checkpoint
        if self.signal is not None and self.saved is None:
            self._save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()
        if (isinstance(exception, SIGTERMException) and trainer.state.fn == "fit" and self.signal is not None
                and self.saved is None):  # stopped during validation or between epochs
            self._save(trainer)

    @property
    def exit_code(self) -> int | None:
        """``128 + signal`` once a signal stopped ``fit``, else ``None``."""
        return None if self.signal is None else 128 + int(self.signal)


def last_checkpoints(dirpath: str | os.PathLike, every_n_train_steps: int) -> list[ModelCheckpoint]:
    """``last.ckpt`` in ``dirpath`` after every ``every_n_train_steps`` optimizer steps (mid-epoch,
    for resuming after SIGKILL) and after every epoch.

    Args:
        dirpath: the run's checkpoint folder.
        every_n_train_steps: steps between mid-epoch saves (0 = at epoch ends only).
    """
    common = dict(dirpath=str(dirpath), filename="last", save_top_k=1, enable_version_counter=False)
    callbacks = [ModelCheckpoint(**common)]
    if every_n_train_steps > 0:
        callbacks.append(ModelCheckpoint(every_n_train_steps=every_n_train_steps, **common))
    return callbacks


# ------------------------------------------------------------------------------------ logging
class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, but an existing ``metrics.csv`` is kept (and extended)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as fh:
                header = next(csv.reader(fh), [])
            self.metrics_keys = sorted(header)


class ContinuingCSVLogger(CSVLogger):
    """``<save_dir>/metrics.csv`` and ``hparams.yaml``, continued across resumes of one run.

    Resuming from a checkpoint at global step ``s`` drops the rows with ``step >= s`` first (they
    were logged after that checkpoint by the interrupted run and are logged again).

    Args:
        save_dir: the run's log folder.
        flush_logs_every_n_steps: steps between writes of ``metrics.csv`` (1: a killed run loses no row).
    """

    def __init__(self, save_dir: str | os.PathLike, flush_logs_every_n_steps: int = 1) -> None:
        super().__init__(save_dir=str(save_dir), name="", version="", flush_logs_every_n_steps=flush_logs_every_n_steps)

    @property
    def log_dir(self) -> str:
        return str(self.save_dir)

    @property
    def experiment(self) -> _AppendingWriter:  # type: ignore[override]
        if self._experiment is None:
            os.makedirs(self.save_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def truncate_after(self, step: int) -> None:
        """Drops the rows of ``metrics.csv`` logged at ``step`` or later."""
        path = Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE
        if not path.is_file():
            return
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            rows = [r for r in reader if not r.get("step") or int(float(r["step"])) < step]
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
