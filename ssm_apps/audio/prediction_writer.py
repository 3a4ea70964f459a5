"""Prints and writes ``predict`` results of ``AudioClassificationTask``: the top-k labels per file."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

__all__ = ["TopKPredictionWriter"]


class TopKPredictionWriter(BasePredictionWriter):
    """After ``predict``: one printed line per file (``file: label (prob), ...`` and the true label when
    known) and ``<output_dir>/<filename>`` with the columns ``file, label, top1, top1_prob, ..., topk,
    topk_prob`` in the order of the datamodule's ``predict_names``. Label names come from the
    datamodule's ``classes`` (else the task's, else class indices). Written by global rank 0.

    Args:
        output_dir: folder of the CSV (created when missing).
        filename: the CSV's name.
        top_k: labels per file.
        print_limit: print at most this many files (None = all, 0 = none); the CSV has them all.
    """

    def __init__(self, output_dir: str = "predictions", filename: str = "predictions.csv", top_k: int = 3,
                 print_limit: int | None = None) -> None:
        super().__init__(write_interval="epoch")
        if top_k < 1:
            raise ValueError(f"TopKPredictionWriter: 'top_k' must be >= 1; got {top_k}")
        if print_limit is not None and print_limit < 0:
            raise ValueError(f"TopKPredictionWriter: 'print_limit' must be >= 0 or None; got {print_limit}")
        self.output_dir, self.filename, self.top_k, self.print_limit = Path(output_dir), filename, top_k, print_limit

    @property
    def path(self) -> Path:
        return self.output_dir / self.filename

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        if not trainer.is_global_zero:
            return
        if predictions and isinstance(predictions[0], list):
            predictions = [p for per_loader in predictions for p in per_loader]
        if not predictions:
            raise ValueError("TopKPredictionWriter: predict produced no batches")
        probs = torch.cat([p["probs"] for p in predictions]).float().cpu()
        index = torch.cat([p["index"] for p in predictions]).tolist()
        labels = torch.cat([p["label"] for p in predictions]).cpu() if "label" in predictions[0] else None
        dm = getattr(trainer, "datamodule", None)
        names = list(getattr(dm, "predict_names", None) or [])
        classes = list(getattr(dm, "classes", None) or getattr(pl_module, "classes", None) or range(probs.shape[1]))
        k = min(self.top_k, probs.shape[1])
        top_p, top_i = probs.topk(k, dim=-1)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["file", "label"] + [c for j in range(1, k + 1) for c in (f"top{j}", f"top{j}_prob")])
            for row, i in enumerate(index):
                name = names[i] if i < len(names) else str(i)
                true = ""
                if labels is not None:
                    lab = labels[row]
                    true = (";".join(str(classes[c]) for c in lab.nonzero().flatten().tolist()) if lab.dim()
                            else str(classes[int(lab)]))
                pairs = [(str(classes[c]), float(p)) for c, p in zip(top_i[row].tolist(), top_p[row].tolist())]
                writer.writerow([name, true] + [v for lab_p in pairs for v in (lab_p[0], f"{lab_p[1]:.4f}")])
                if self.print_limit is None or row < self.print_limit:
                    shown = ", ".join(f"{c} ({p:.3f})" for c, p in pairs)
                    print(f"{name}: {shown}" + (f"  [true: {true}]" if true else ""))
        print(f"TopKPredictionWriter: {len(index)} predictions written to {self.path}")
