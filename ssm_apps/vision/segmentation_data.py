"""``SegmentationDataModule``: image / label-mask pairs for ``SegmentationTask``.

Layouts (``layout``):

* ``"ade20k"``: ``root/images/{training,validation}/X.jpg`` with ``root/annotations/<same split>/X.png``.
* ``"cityscapes"``: ``root/leftImg8bit/<split>/<city>/X_leftImg8bit.png`` with
  ``root/gtFine/<split>/<city>/X_gtFine_labelTrainIds.png`` (splits train / val / test).
* ``"folder"``: ``root/<image_dir>/X.*`` with ``root/<mask_dir>/X.png`` (default ``images`` / ``masks``);
  the pairs (natural sort order of the names) are split by ``split_ranges``, e.g.
  ``{"train": [0, 24], "val": [24, 30], "test": [24, 30]}`` (half-open index ranges).
* ``"csv"``: ``csv_files[split]`` with columns ``image,mask`` (paths relative to the CSV's folder).

Labels: ``label_map`` remaps raw values first (e.g. ``{255: 1}`` for 0/255 binary masks); then
``reduce_zero_label`` (mmseg's: 0 -> ignore, v -> v - 1); values outside ``[0, num_classes)`` that
are not ``ignore_index`` raise a ValueError naming the file.

Training pipeline (mmseg's ADE20K recipe): random rescale of ``scale`` by a ratio in
``ratio_range`` (keeping the aspect ratio), random crop ``crop_size`` retried up to 10 times until no
class covers more than ``cat_max_ratio`` of it, horizontal flip (p 0.5), photometric distortion
(brightness +-32, contrast / saturation 0.5-1.5, hue +-18 degrees of OpenCV's 180, each p 0.5),
normalisation, padding to ``crop_size`` (image 0, mask ``ignore_index``). Validation / test /
predict: the image resized to ``eval_scale`` (keeping the aspect ratio, as mmseg's test ``Resize``;
None = full resolution) and normalised, the mask at its original size (the task pads to
``size_divisor`` or slides a window, and resizes the logits to the mask).
Batches are dicts ``{"image": (B, 3, H, W) float, "mask": (B, H, W) int64,
"path": [str]}``; evaluation batches of differently sized images need ``eval_batch_size`` 1.
"""
from __future__ import annotations

import csv
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

__all__ = ["SegmentationDataModule", "SegmentationDataset", "load_mask", "scan_pairs"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
LAYOUTS = ("ade20k", "cityscapes", "folder", "csv")


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem)]


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted((p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _pair_by_stem(image_root: Path, mask_root: Path, mask_suffix: str, strip: str = "") -> list[tuple[Path, Path]]:
    """Each image under ``image_root`` with the mask at the same relative folder under ``mask_root``,
    named ``<stem without strip><mask_suffix>``; a missing mask raises FileNotFoundError naming both."""
    pairs = []
    for img in _images(image_root):
        stem = img.stem[: -len(strip)] if strip and img.stem.endswith(strip) else img.stem
        mask = mask_root / img.parent.relative_to(image_root) / f"{stem}{mask_suffix}"
        if not mask.exists():
            raise FileNotFoundError(f"missing mask for image {img}: expected {mask}")
        pairs.append((img, mask))
    return pairs


def scan_pairs(layout: str, root: Path, split: str, image_dir: str = "images", mask_dir: str = "masks",
               csv_file: str | None = None) -> list[tuple[Path, Path]]:
    """(image, mask) path pairs of one split of ``layout`` under ``root`` (see the module docstring)."""
    if layout == "ade20k":
        folder = {"train": "training", "val": "validation", "test": "validation"}.get(split, split)
        return _pair_by_stem(root / "images" / folder, root / "annotations" / folder, ".png")
    if layout == "cityscapes":
        return _pair_by_stem(root / "leftImg8bit" / split, root / "gtFine" / split,
                             "_gtFine_labelTrainIds.png", strip="_leftImg8bit")
    if layout == "folder":
        return _pair_by_stem(root / image_dir, root / mask_dir, ".png")
    if layout == "csv":
        if csv_file is None:
            raise ValueError(f"layout 'csv': no CSV given for split {split!r} (csv_files)")
        path = Path(csv_file)
        if not path.is_file():
            raise FileNotFoundError(f"CSV {path} does not exist")
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"image", "mask"} <= set(rows[0]):
            raise ValueError(f"{path}: needs a header with columns 'image' and 'mask'")
        return [((path.parent / r["image"]), (path.parent / r["mask"])) for r in rows]
    raise ValueError(f"SegmentationDataModule: argument 'layout' must be one of {LAYOUTS}; got {layout!r}")


def load_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; clear errors for missing / unreadable files."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"unreadable image {path}: {e}") from None


def load_mask(path: Path, num_classes: int, ignore_index: int = 255, label_map: Mapping[int, int] | None = None,
              reduce_zero_label: bool = False) -> np.ndarray:
    """(H, W) int64 class indices (remapped, zero label reduced), checked against ``num_classes``."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"mask {path}: expected a single-channel label image; got mode {im.mode}")
            raw = np.asarray(im).astype(np.int64)
    except FileNotFoundError:
        raise FileNotFoundError(f"mask {path} does not exist") from None
    except UnidentifiedImageError as e:
        raise ValueError(f"unreadable mask {path}: {e}") from None
    mask = raw.copy()
    for src, dst in (label_map or {}).items():
        mask[raw == int(src)] = int(dst)
    if reduce_zero_label:
        zero = mask == 0
        mask = mask - 1
        mask[zero] = ignore_index
        mask[mask == ignore_index - 1] = ignore_index
    bad = (mask != ignore_index) & ((mask < 0) | (mask >= num_classes))
    if bad.any():
        values = sorted(set(np.unique(raw[bad]).tolist()))[:10]
        raise ValueError(f"mask {path}: label values {values} are outside [0, {num_classes}) and not the ignore "
                         f"index {ignore_index} (after label_map / reduce_zero_label)")
    return mask


class SegmentationDataset(Dataset):
    """Pairs -> ``{"image", "mask", "path"}``; ``train=True`` applies the training pipeline."""

    def __init__(self, pairs: Sequence[tuple[Path, Path]], num_classes: int, train: bool, crop_size: tuple[int, int],
                 scale: tuple[int, int] | None, ratio_range: tuple[float, float], cat_max_ratio: float,
                 ignore_index: int, label_map: Mapping[int, int] | None, reduce_zero_label: bool,
                 photometric: bool = True, eval_scale: tuple[int, int] | None = None) -> None:
        self.pairs, self.num_classes, self.train = list(pairs), num_classes, train
        self.eval_scale = eval_scale
        self.crop_size, self.scale, self.ratio_range = crop_size, scale, ratio_range
        self.cat_max_ratio, self.ignore_index = cat_max_ratio, ignore_index
        self.label_map, self.reduce_zero_label, self.photometric = label_map, reduce_zero_label, photometric

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        img_path, mask_path = self.pairs[index]
        img = load_image(img_path)
        mask = load_mask(mask_path, self.num_classes, self.ignore_index, self.label_map, self.reduce_zero_label)
        if img.shape[:2] != mask.shape:
            raise ValueError(f"image {img_path} is {img.shape[1]}x{img.shape[0]} but its mask {mask_path} is "
                             f"{mask.shape[1]}x{mask.shape[0]} (W x H)")
        return torch.from_numpy(img.copy()).permute(2, 0, 1), torch.from_numpy(mask), str(img_path)

    def _random_crop(self, img: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ch, cw = self.crop_size
        h, w = mask.shape
        for _ in range(10):
            top, left = random.randint(0, max(h - ch, 0)), random.randint(0, max(w - cw, 0))
            crop = mask[top: top + ch, left: left + cw]
            _labels, counts = torch.unique(crop[crop != self.ignore_index], return_counts=True)
            if self.cat_max_ratio >= 1.0 or (len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio):
                break
        return img[:, top: top + ch, left: left + cw], crop

    def _photometric(self, img: torch.Tensor) -> torch.Tensor:
        x = img.float()
        if random.random() < 0.5:
            x = x + random.uniform(-32, 32)
        contrast_first = random.random() < 0.5
        if contrast_first and random.random() < 0.5:
            x = x * random.uniform(0.5, 1.5)
        x = x.clamp(0, 255).to(torch.uint8)
        if random.random() < 0.5:
            x = TF.adjust_saturation(x, random.uniform(0.5, 1.5))
        if random.random() < 0.5:
            x = TF.adjust_hue(x, random.uniform(-18, 18) / 180.0)
        if not contrast_first and random.random() < 0.5:
            x = (x.float() * random.uniform(0.5, 1.5)).clamp(0, 255).to(torch.uint8)
        return x

    @staticmethod
    def _rescaled(h: int, w: int, scale: tuple[int, int], ratio: float = 1.0) -> list[int]:
        """mmseg's keep-ratio rescale: the largest size fitting (long, short) = scale * ratio."""
        s = min(scale[0] * ratio / max(h, w), scale[1] * ratio / min(h, w))
        return [max(int(h * s + 0.5), 1), max(int(w * s + 0.5), 1)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        img, mask, path = self._load(index)
        h, w = mask.shape
        if not self.train and self.eval_scale is not None:
            size = self._rescaled(h, w, self.eval_scale)
            img = TF.resize(img, size, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        if self.train:
            size = self._rescaled(h, w, self.scale or (max(h, w), min(h, w)), random.uniform(*self.ratio_range))
            img = TF.resize(img, size, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
            mask = TF.resize(mask[None], size, interpolation=TF.InterpolationMode.NEAREST)[0]
            img, mask = self._random_crop(img, mask)
            if random.random() < 0.5:
                img, mask = img.flip(-1), mask.flip(-1)
            if self.photometric:
                img = self._photometric(img)
        x = (img.float() - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
        if self.train:
            ph, pw = self.crop_size[0] - x.shape[1], self.crop_size[1] - x.shape[2]
            if ph > 0 or pw > 0:
                x = F.pad(x, (0, max(pw, 0), 0, max(ph, 0)), value=0.0)
                mask = F.pad(mask, (0, max(pw, 0), 0, max(ph, 0)), value=self.ignore_index)
        return {"image": x, "mask": mask.long(), "path": path}


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    shapes = {tuple(i["image"].shape) for i in items}
    if len(shapes) > 1:
        raise ValueError(f"SegmentationDataModule: images of one batch differ in size {sorted(shapes)}; "
                         "use eval_batch_size 1 for full-resolution evaluation")
    return {"image": torch.stack([i["image"] for i in items]), "mask": torch.stack([i["mask"] for i in items]),
            "path": [i["path"] for i in items]}


class SegmentationDataModule(L.LightningDataModule):
    """Image / mask pairs for semantic segmentation (see the module docstring for layouts and pipeline).

    Args:
        root: dataset folder.
        num_classes: classes (mask values in [0, num_classes) or ``ignore_index``).
        layout: "ade20k", "cityscapes", "folder" or "csv".
        image_dir: "folder" layout: image sub-folder.
        mask_dir: "folder" layout: mask sub-folder.
        split_ranges: "folder" layout: half-open index ranges per split over the sorted pairs
            (default: all pairs for train, val and test).
        csv_files: "csv" layout: CSV per split.
        crop_size: training crop (H, W).
        scale: training base scale (long side, short side); None = the image's own size.
        eval_scale: evaluation resize (long side, short side) of the image; None = full resolution.
        ratio_range: random rescale ratio range.
        cat_max_ratio: max fraction of one class in a training crop (1 = no check).
        ignore_index: label ignored by loss and metrics.
        label_map: raw mask value -> class index, applied first.
        reduce_zero_label: mmseg's ADE20K convention (0 -> ignore, v -> v - 1).
        photometric: photometric distortion in training.
        classes: class names (None: "class_i").
        batch_size: training batch size.
        eval_batch_size: validation / test / predict batch size.
        num_workers: DataLoader workers.
        train_repeat: iterate the training pairs this many times per epoch (mmseg's RepeatDataset).
    """

    def __init__(
        self,
        root: str,
        num_classes: int,
        layout: str = "folder",
        image_dir: str = "images",
        mask_dir: str = "masks",
        split_ranges: Mapping[str, Sequence[int]] | None = None,
        csv_files: Mapping[str, str] | None = None,
        crop_size: Sequence[int] = (512, 512),
        scale: Sequence[int] | None = None,
        eval_scale: Sequence[int] | None = None,
        ratio_range: Sequence[float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        ignore_index: int = 255,
        label_map: Mapping[int, int] | None = None,
        reduce_zero_label: bool = False,
        photometric: bool = True,
        classes: Sequence[str] | None = None,
        batch_size: int = 4,
        eval_batch_size: int = 1,
        num_workers: int = 0,
        train_repeat: int = 1,
    ) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"SegmentationDataModule: argument 'layout' must be one of {LAYOUTS}; got {layout!r}")
        if num_classes < 1:
            raise ValueError(f"SegmentationDataModule: num_classes must be >= 1; got {num_classes}")
        if classes is not None and len(classes) != num_classes:
            raise ValueError(f"SegmentationDataModule: {len(classes)} class names for num_classes={num_classes}")
        if len(crop_size) != 2 or min(crop_size) < 1:
            raise ValueError(f"SegmentationDataModule: crop_size must be (H, W) > 0; got {list(crop_size)}")
        self.root = Path(root)
        self.num_classes, self.layout, self.image_dir, self.mask_dir = num_classes, layout, image_dir, mask_dir
        self.split_ranges = {k: tuple(v) for k, v in (split_ranges or {}).items()}
        self.csv_files = dict(csv_files or {})
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.scale = tuple(int(s) for s in scale) if scale is not None else None
        self.eval_scale = tuple(int(s) for s in eval_scale) if eval_scale is not None else None
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))
        self.cat_max_ratio, self.ignore_index = float(cat_max_ratio), int(ignore_index)
        self.label_map = {int(k): int(v) for k, v in (label_map or {}).items()}
        self.reduce_zero_label, self.photometric = reduce_zero_label, photometric
        self.classes = list(classes) if classes is not None else [f"class_{i}" for i in range(num_classes)]
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.train_repeat = int(train_repeat)
        self._pairs: dict[str, list[tuple[Path, Path]]] = {}

    def pairs(self, split: str) -> list[tuple[Path, Path]]:
        """The (image, mask) pairs of ``split`` ("train", "val", "test", "predict" = test)."""
        split = "test" if split == "predict" else split
        if split not in self._pairs:
            pairs = scan_pairs(self.layout, self.root, split, self.image_dir, self.mask_dir, self.csv_files.get(split))
            if self.layout == "folder" and split in self.split_ranges:
                lo, hi = self.split_ranges[split]
                if not 0 <= lo < hi <= len(pairs):
                    raise ValueError(f"SegmentationDataModule: split_ranges[{split!r}] = [{lo}, {hi}) is outside the "
                                     f"{len(pairs)} pairs of {self.root}")
                pairs = pairs[lo:hi]
            self._pairs[split] = pairs
        return self._pairs[split]

    def dataset(self, split: str) -> SegmentationDataset:
        train = split == "train"
        pairs = self.pairs(split) * (self.train_repeat if train else 1)
        return SegmentationDataset(pairs, self.num_classes, train, self.crop_size, self.scale, self.ratio_range,
                                   self.cat_max_ratio, self.ignore_index, self.label_map, self.reduce_zero_label,
                                   self.photometric, None if train else self.eval_scale)

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        return DataLoader(self.dataset(split), batch_size=self.batch_size if train else self.eval_batch_size,
                          shuffle=train, drop_last=train and len(self.pairs(split)) * self.train_repeat
                          >= self.batch_size, num_workers=self.num_workers, collate_fn=_collate,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")
