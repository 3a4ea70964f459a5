"""Writes ``SegmentationTask.predict`` results: an index PNG per image plus a colour overlay."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

__all__ = ["SegmentationPredictionWriter", "default_palette"]


def default_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours: the PASCAL VOC bit-interleaved palette (class 0 black)."""
    palette = np.zeros((max(num_classes, 1), 3), dtype=np.uint8)
    for i in range(num_classes):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


class SegmentationPredictionWriter(BasePredictionWriter):
    """After each predict batch: ``<output_dir>/<image stem>.png`` (the class index per pixel, 8-bit
    palette PNG for <= 256 classes, else 16-bit grey) and ``<image stem>_overlay.png`` (the image blended
    with the class colours at ``alpha``). Written by every rank for its own images.

    Args:
        output_dir: folder (created when missing).
        palette: (classes, 3) RGB colours; None = the PASCAL VOC palette (class 1 red, 2 green, ...).
        alpha: overlay opacity of the class colours.
    """

    def __init__(self, output_dir: str = "predictions", palette: Sequence[Sequence[int]] | None = None,
                 alpha: float = 0.5) -> None:
        super().__init__(write_interval="batch")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"SegmentationPredictionWriter: alpha must be in [0, 1]; got {alpha}")
        self.output_dir = Path(output_dir)
        self.palette = None if palette is None else np.asarray(palette, dtype=np.uint8)
        self.alpha = alpha
        self.written: list[Path] = []

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        num_classes = int(pl_module.hparams.num_classes)
        palette = self.palette if self.palette is not None else default_palette(num_classes)
        if len(palette) < num_classes:
            raise ValueError(
                f"SegmentationPredictionWriter: palette has {len(palette)} colours for {num_classes} classes")
        for pred, path in zip(prediction["pred"], prediction["path"]):
            index = pred.cpu().numpy()
            stem = Path(path).stem
            out = self.output_dir / f"{stem}.png"
            if num_classes <= 256:
                im = Image.fromarray(index.astype(np.uint8), mode="P")
                im.putpalette(palette[:256].reshape(-1).tolist())
            else:
                im = Image.fromarray(index.astype(np.uint16))
            im.save(out)
            with Image.open(path) as src:
                rgb = np.asarray(src.convert("RGB"), dtype=np.float32)
            colours = palette[index].astype(np.float32)
            blend = (1 - self.alpha) * rgb + self.alpha * colours
            Image.fromarray(blend.clip(0, 255).astype(np.uint8)).save(self.output_dir / f"{stem}_overlay.png")
            self.written.append(out)

    @staticmethod
    def read_index(path: str | Path) -> torch.Tensor:
        """The class indices of a written index PNG, (H, W) int64."""
        with Image.open(path) as im:
            return torch.from_numpy(np.asarray(im).astype(np.int64))
