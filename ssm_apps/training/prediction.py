"""``DictPredictionWriter``: the base of every task's prediction writer.

The protocol: ``predict_step`` returns a dict of batch-first tensors (same keys every batch), with an
optional ``"index"`` (B,) of the samples' positions in the predict dataset. After ``predict`` the base

1. flattens the batches of every predict dataloader into one list;
2. concatenates each key over the batches (on the CPU);
3. under several processes, either gathers every rank's outputs to global rank 0
   (``mode="gather"``, the default: one complete output) or lets every rank write its own share
   into ``<output_dir>/rank<r>`` (``mode="shard"``, as the multi-device example of Lightning's
   ``BasePredictionWriter``);
4. orders the rows by ``index`` when present, dropping repeats (a distributed sampler pads the last
   batch with repeated samples);
5. resolves the sample names: ``datamodule.predict_names[index]`` (or the index as text);
6. creates the output folder and calls :meth:`write` with the result.

Subclasses implement only :meth:`write` (CSV, plots, images, bitstreams).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

__all__ = ["DictPredictionWriter", "concat_predictions", "flatten_predictions"]


def flatten_predictions(predictions: Sequence[Any]) -> list[dict[str, torch.Tensor]]:
    """The batches of one or several predict dataloaders as one list of dicts."""
    if predictions and isinstance(predictions[0], list):  # several predict dataloaders
        return [p for per_loader in predictions for p in per_loader]
    return list(predictions)


def concat_predictions(owner: str, batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate each key over the batches (CPU tensors).

    Raises:
        ValueError: no batches, a batch that is not a dict, or batches with different keys.
    """
    if not batches:
        raise ValueError(f"{owner}: predict produced no batches")
    if not all(isinstance(b, dict) for b in batches):
        raise ValueError(f"{owner}: predict_step must return a dict of tensors; got {type(batches[0]).__name__}")
    keys = list(batches[0])
    for b in batches:
        if list(b) != keys:
            raise ValueError(f"{owner}: predict batches have different keys: {keys} and {list(b)}")
    return {k: torch.cat([b[k].detach().cpu() for b in batches]) for k in keys}


class DictPredictionWriter(BasePredictionWriter):
    """Gathers (or shards), concatenates and names ``predict`` outputs; subclasses write them.

    Args:
        output_dir: folder of the written files (created when missing).
        mode: ``"gather"`` (global rank 0 writes everything) or ``"shard"`` (every rank writes its
            own share under ``<output_dir>/rank<r>`` when there are several processes).
    """

    def __init__(self, output_dir: str = "predictions", mode: Literal["gather", "shard"] = "gather") -> None:
        super().__init__(write_interval="epoch")
        if mode not in ("gather", "shard"):
            raise ValueError(f"{type(self).__name__}: unknown mode {mode!r}; choose 'gather' or 'shard'")
        self.output_dir = Path(output_dir)
        self.mode = mode

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: dict[str, torch.Tensor],
              names: list[str], output_dir: Path) -> None:
        """Write the outputs (rows ordered by ``index`` when there is one; ``names[i]`` names row i)."""
        raise NotImplementedError(f"{type(self).__name__} must implement write()")

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           predictions: Sequence[Any], batch_indices: Sequence[Any]) -> None:
        owner = type(self).__name__
        batches = flatten_predictions(predictions)
        output_dir = self.output_dir
        if trainer.world_size > 1 and self.mode == "gather":
            every = [None] * trainer.world_size
            torch.distributed.all_gather_object(every, batches)
            if not trainer.is_global_zero:
                return
            batches = [b for rank in every for b in rank]
        elif trainer.world_size > 1:
            output_dir = output_dir / f"rank{trainer.global_rank}"
        outputs = _ordered(concat_predictions(owner, batches))
        n = len(next(iter(outputs.values())))
        index = outputs["index"].tolist() if "index" in outputs else list(range(n))
        dm = getattr(trainer, "datamodule", None)
        known = list(getattr(dm, "predict_names", None) or [])
        names = [str(known[i]) if 0 <= i < len(known) else str(i) for i in index]
        output_dir.mkdir(parents=True, exist_ok=True)
        self.write(trainer, pl_module, outputs, names, output_dir)


def _ordered(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rows sorted by ``index`` with repeated indices dropped (no-op without ``index``)."""
    if "index" not in outputs:
        return outputs
    index = outputs["index"].long()
    order = torch.argsort(index, stable=True)
    sorted_index = index[order]
    keep = torch.ones_like(sorted_index, dtype=torch.bool)
    keep[1:] = sorted_index[1:] != sorted_index[:-1]
    order = order[keep]
    return {k: v[order] for k, v in outputs.items()}
