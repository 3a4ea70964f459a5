"""Prints and writes ``predict`` results of ``ClassificationTask``: the top-k classes per image."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch

from ..training.prediction import DictPredictionWriter

__all__ = ["TopKPredictionWriter"]


class TopKPredictionWriter(DictPredictionWriter):
    """After ``predict``: prints one line per image (its name, then ``class (probability)`` for the
    top-k classes, and the true class when known) and writes ``<output_dir>/<filename>`` with the
    columns ``index, image, label, top1, top1_prob, ..., topk, topk_prob`` (``label`` empty when
    unknown), one row per image in the order of the datamodule's ``predict_names``.

    Image names come from the datamodule's ``predict_names`` (file paths, or ``digits[i]`` for the
    scikit-learn digits) through the ``index`` the predict batches carry; class names from the
    datamodule's (or the task's) ``classes``, else the class indices. Several predict dataloaders
    and several devices are handled by ``ssm_apps.training.prediction.DictPredictionWriter``.

    Args:
        output_dir: folder of the CSV (created when missing).
        filename: the CSV's name.
        print_limit: print at most this many images (None = all; 0 = none); the CSV has them all.
        mode: "gather" (one CSV from global rank 0) or "shard" (one per rank).
    """

    def __init__(self, output_dir: str = "predictions", filename: str = "predictions.csv",
                 print_limit: int | None = None, mode: Literal["gather", "shard"] = "gather") -> None:
        super().__init__(output_dir, mode)
        if print_limit is not None and print_limit < 0:
            raise ValueError(f"TopKPredictionWriter: 'print_limit' must be >= 0 or None; got {print_limit}")
        self.filename = filename
        self.print_limit = print_limit

    @property
    def path(self) -> Path:
        return self.output_dir / self.filename

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: dict[str, torch.Tensor],
              names: list[str], output_dir: Path) -> None:
        top_i, top_p = outputs["topk_indices"], outputs["topk_probs"].float()
        n, k = top_i.shape
        index = outputs["index"].tolist() if "index" in outputs else list(range(n))
        labels = outputs["labels"].tolist() if "labels" in outputs else [-1] * n
        dm = getattr(trainer, "datamodule", None)
        classes = getattr(dm, "classes", None) or getattr(pl_module, "classes", None)

        def class_name(c: int) -> str:
            return str(classes[c]) if classes is not None else str(c)

        rows = []
        for j in range(n):
            label = class_name(labels[j]) if labels[j] >= 0 else ""
            row: dict[str, Any] = {"index": index[j], "image": names[j], "label": label}
            for r in range(k):
                row[f"top{r + 1}"] = class_name(int(top_i[j, r]))
                row[f"top{r + 1}_prob"] = f"{float(top_p[j, r]):.6f}"
            rows.append(row)
        path = output_dir / self.filename
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        self._print(rows, k, path)

    def _print(self, rows: list[dict[str, Any]], k: int, path: Path) -> None:
        shown = rows if self.print_limit is None else rows[:self.print_limit]
        if shown:
            print(f"top-{k} predictions:")
        width = max((len(str(r["image"])) for r in shown), default=0)
        for r in shown:
            tops = ", ".join(f"{r[f'top{i + 1}']} ({float(r[f'top{i + 1}_prob']):.3f})" for i in range(k))
            truth = f"   [true: {r['label']}]" if r["label"] != "" else ""
            print(f"  {str(r['image']):<{width}}  {tops}{truth}")
        if len(shown) < len(rows):
            print(f"  ... {len(rows) - len(shown)} more")
        correct = [r["label"] == r["top1"] for r in rows if r["label"] != ""]
        summary = f"; top-1 accuracy {sum(correct) / len(correct):.4f} on {len(correct)} labelled" if correct else ""
        print(f"{len(rows)} predictions written to {path}{summary}")
