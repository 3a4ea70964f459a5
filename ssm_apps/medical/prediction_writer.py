"""``NiftiPredictionWriter``: segmentations written as NIfTI on the input's grid, with the input's affine and header.

The predicted label map (in the pre-processed space: RAS, resampled) is mapped back through MONAI's
``Invertd`` with the predict transforms, so it has the input volume's shape and voxel order; it is saved as
uint8 with the input file's affine and header (a NIfTI input) or the affine MONAI read (a DICOM series folder).
2-D inputs (PNG etc.) are written as PNG class-index images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

__all__ = ["NiftiPredictionWriter", "write_label_map"]


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".png", ".jpg", ".tif"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def write_label_map(label: np.ndarray, source: str | Path, output_dir: str | Path, affine: Any = None) -> Path:
    """Write ``label`` (the source's spatial shape) next to nothing else: ``<output_dir>/<source stem>_seg.nii.gz``
    with the source NIfTI's affine and header, or with ``affine`` for a DICOM folder; PNG for 2-D sources."""
    import nibabel as nib

    source, out_dir = Path(source), Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    label = np.asarray(label).astype(np.uint8)
    if source.suffix.lower() in (".png", ".jpg", ".tif"):
        from PIL import Image

        path = out_dir / f"{_stem(source)}_seg.png"
        Image.fromarray(label.T if label.ndim == 2 else label).save(path)  # MONAI's PIL reader transposes
        return path
    path = out_dir / f"{_stem(source)}_seg.nii.gz"
    if source.is_file() and source.name.endswith((".nii", ".nii.gz")):
        ref = nib.load(str(source))
        if tuple(ref.shape[:3]) != tuple(label.shape):
            raise ValueError(f"prediction shape {label.shape} does not match {source} shape {ref.shape[:3]}")
        img = nib.Nifti1Image(label, ref.affine, header=ref.header.copy())
        img.header.set_data_dtype(np.uint8)
        img.header.set_slope_inter(1.0, 0.0)
    else:
        img = nib.Nifti1Image(label, np.asarray(affine, dtype=np.float64))
    nib.save(img, str(path))
    return path


class NiftiPredictionWriter(BasePredictionWriter):
    """Writes each predicted volume of ``MedicalSegmentationTask.predict_step`` to ``output_dir``.

    Args:
        output_dir: folder of the ``*_seg.nii.gz`` files.
    """

    def __init__(self, output_dir: str = "predictions") -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.written: list[Path] = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx=0) -> None:
        from monai.data import decollate_batch
        from monai.transforms import Invertd

        dataset = trainer.datamodule.datasets["predict"]
        invert = Invertd(keys="pred", transform=dataset.transform, orig_keys="image", nearest_interp=True,
                         to_tensor=True)
        for item in decollate_batch(prediction):
            source = item["image"].meta["filename_or_obj"]
            item = invert(item)
            pred = torch.as_tensor(item["pred"]).cpu().numpy()[0]
            affine = item["image"].meta.get("original_affine", item["image"].affine)
            path = write_label_map(pred, source, self.output_dir, affine)
            self.written.append(path)
            print(f"[NiftiPredictionWriter] wrote {path}")
