"""Prints and writes ``predict`` results of ``ClassificationTask``: the top-k classes per image."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

__all__ = ["TopKPredictionWriter"]


class TopKPredictionWriter(BasePredictionWriter):
    """After ``predict``: prints one line per image (its name, then ``class (probability)`` for the
    top-k classes, and the true class when known) and writes ``<output_dir>/<filename>`` with the
    columns ``index, image, label, top1, top1_prob, ..., topk, topk_prob`` (``label`` empty when
    unknown), one row per image in the order of the datamodule's ``predict_names``.

    Image names come from the datamodule's ``predict_names`` (file paths, or ``digits[i]`` for the
    scikit-learn digits) through the ``index`` the predict batches carry; class names from the
    datamodule's (or the task's) ``classes``, else the class indices. Written by global rank 0
    from its own predictions (run predict on one device for a complete file).

    Args:
        output_dir: folder of the CSV (created when missing).
        filename: the CSV's name.
        print_limit: print at most this many images (None = all; 0 = none); the CSV has them all.
    """

    def __init__(self, output_dir: str = "predictions", filename: str = "predictions.csv",
                 print_limit: int | None = None) -> None:
        super().__init__(write_interval="epoch")
        if print_limit is not None and print_limit < 0:
            raise ValueError(f"TopKPredictionWriter: 'print_limit' must be >= 0 or None; got {print_limit}")
        self.output_dir = Path(output_dir)
        self.filename = filename
        self.print_limit = print_limit

    @property
    def path(self) -> Path:
        return self.output_dir / self.filename

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           predictions: Sequence[Any], batch_indices: Sequence[Any]) -> None:
        if not trainer.is_global_zero:
            return
        if predictions and isinstance(predictions[0], list):  # several predict dataloaders: flatten
            predictions = [p for per_loader in predictions for p in per_loader]
        if not predictions:
            raise ValueError("TopKPredictionWriter: predict produced no batches")
        cat = {k: torch.cat([p[k] for p in predictions]).cpu() for k in predictions[0]}
        top_i, top_p = cat["topk_indices"], cat["topk_probs"].float()
        n, k = top_i.shape
        index = cat["index"].tolist() if "index" in cat else list(range(n))
        labels = cat["labels"].tolist() if "labels" in cat else [-1] * n
        dm = getattr(trainer, "datamodule", None)
        names = list(getattr(dm, "predict_names", None) or [])
        classes = getattr(dm, "classes", None) or getattr(pl_module, "classes", None)

        def class_name(c: int) -> str:
            return str(classes[c]) if classes is not None else str(c)

        rows = []
        for j in sorted(range(n), key=lambda r: index[r]):
            i = index[j]
            name = names[i] if i < len(names) else str(i)
            label = class_name(labels[j]) if labels[j] >= 0 else ""
            row: dict[str, Any] = {"index": i, "image": name, "label": label}
            for r in range(k):
                row[f"top{r + 1}"] = class_name(int(top_i[j, r]))
                row[f"top{r + 1}_prob"] = f"{float(top_p[j, r]):.6f}"
            rows.append(row)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        self._print(rows, k)

    def _print(self, rows: list[dict[str, Any]], k: int) -> None:
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
        print(f"{len(rows)} predictions written to {self.path}{summary}")
