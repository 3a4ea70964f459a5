"""``ImageCompressionDataModule``: random crops of image folders for training, whole images to evaluate.

Training: every image under ``train_dirs`` (searched recursively; PNG, JPEG, TIFF, BMP, WebP, PPM),
one random ``crop_size`` crop per visit with random horizontal and vertical flips, ``epoch_size``
visits per epoch (default: one per image). Validation and test: the images of ``val_dir`` /
``test_dir`` (Kodak by default), centre-cropped to ``val_crop`` when given, otherwise whole and
replicate-padded to a multiple of 64 (the batch then carries the original size to crop back).
Batches are float32 (B, 3, H, W) in [0, 1] (validation/test: ``(images, sizes)``).

Every file is opened (header only) when the module is set up: an unreadable file or one smaller
than the crop is an error naming the file, the crop and the size found.
"""
from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm")
PAD_MULTIPLE = 64


def image_files(folders: Sequence[str | Path]) -> list[Path]:
    """Image files under the folders (recursive, sorted); a missing or empty folder is an error."""
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder {folder} does not exist")
        found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        if not found:
            raise ValueError(f"image folder {folder} holds no image ({', '.join(IMG_EXTENSIONS)})")
        files += found
    return files


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header; ValueError naming the file when it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


def load_rgb(path: Path) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]; grayscale/RGBA/palette images converted to RGB."""
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255)


class RandomCropDataset(Dataset):
    """Random ``crop_size`` crops with random flips of the given images.

    Args:
        files: image files (each at least ``crop_size`` on both sides).
        crop_size: side of the square crops.
        epoch_size: samples per epoch (default ``len(files)``); sample i reads image ``i % len(files)``.
        skip_small: leave out (with a warning naming them) images smaller than the crop instead of
            raising.
    """

    def __init__(self, files: Sequence[Path], crop_size: int = 256, epoch_size: int | None = None,
                 skip_small: bool = False) -> None:
        if crop_size < 1:
            raise ValueError(f"RandomCropDataset: 'crop_size' must be >= 1; got {crop_size}")
        kept, small = [], []
        for path in files:
            width, height = image_size(path)
            if width >= crop_size and height >= crop_size:
                kept.append(path)
            elif skip_small:
                small.append(f"{path.name} ({width}x{height})")
            else:
                raise ValueError(f"image {path} is {width}x{height}, smaller than the {crop_size}x{crop_size} crop "
                                 "(skip_small=True leaves such images out)")
        if small:
            warnings.warn(f"{len(small)} training image(s) smaller than the {crop_size} crop left out: {', '.join(small)}",
                          stacklevel=2)
        if not kept:
            raise ValueError(f"no training image is at least {crop_size}x{crop_size}")
        self.files, self.crop_size = kept, crop_size
        self.epoch_size = epoch_size or len(self.files)

    def __len__(self) -> int:
        return self.epoch_size

    def __getitem__(self, index: int) -> torch.Tensor:
        image = load_rgb(self.files[index % len(self.files)])
        _, height, width = image.shape
        top, left = random.randint(0, height - self.crop_size), random.randint(0, width - self.crop_size)
        crop = image[:, top: top + self.crop_size, left: left + self.crop_size]
        if random.random() < 0.5:
            crop = crop.flip(-1)
        if random.random() < 0.5:
            crop = crop.flip(-2)
        return crop.contiguous()


class EvalImageDataset(Dataset):
    """Whole images padded to a multiple of 64, or centre crops: ``(image, (height, width))``."""

    def __init__(self, files: Sequence[Path], crop: int | None = None) -> None:
        for path in files:
            width, height = image_size(path)
            if crop is not None and (width < crop or height < crop):
                raise ValueError(f"image {path} is {width}x{height}, smaller than the {crop}x{crop} evaluation crop")
        self.files, self.crop = list(files), crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = load_rgb(self.files[index])
        _, height, width = image.shape
        if self.crop is not None:
            top, left = (height - self.crop) // 2, (width - self.crop) // 2
            image = image[:, top: top + self.crop, left: left + self.crop]
            height = width = self.crop
        pad_h, pad_w = (-height) % PAD_MULTIPLE, (-width) % PAD_MULTIPLE
        if pad_h or pad_w:
            image = F.pad(image[None], (0, pad_w, 0, pad_h), mode="replicate")[0]
        return image.contiguous(), torch.tensor([height, width])


class ImageCompressionDataModule(L.LightningDataModule):
    """Random training crops from image folders; Kodak (or any folder) for validation and test.

    Args:
        train_dirs: training image folders (default: ../shared/data/images/train and .../extra).
        val_dir: validation images (default: ../shared/data/images/kodak).
        test_dir: test images (default: ``val_dir``).
        crop_size: training crop side.
        batch_size: training batch size.
        epoch_size: training samples per epoch (default: one per image).
        val_crop: centre-crop side of validation/test images (None: whole images, batch size 1).
        val_limit: use only the first ``val_limit`` validation/test images (None: all).
        val_batch_size: validation/test batch size (only with ``val_crop``).
        num_workers: DataLoader workers.
        skip_small: leave out training images smaller than the crop (warning) instead of raising.
    """

    def __init__(
        self,
        train_dirs: Sequence[str] = ("../shared/data/images/train", "../shared/data/images/extra"),
        val_dir: str = "../shared/data/images/kodak",
        test_dir: str | None = None,
        crop_size: int = 256,
        batch_size: int = 8,
        epoch_size: int | None = None,
        val_crop: int | None = None,
        val_limit: int | None = None,
        val_batch_size: int = 1,
        num_workers: int = 0,
        skip_small: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if val_crop is None and val_batch_size != 1:
            raise ValueError("ImageCompressionDataModule: whole-image evaluation (val_crop None) needs val_batch_size 1")
        self.train_set: RandomCropDataset | None = None
        self.val_set: EvalImageDataset | None = None
        self.test_set: EvalImageDataset | None = None

    def _eval_set(self, folder: str) -> EvalImageDataset:
        files = image_files([folder])[: self.hparams.val_limit]
        return EvalImageDataset(files, self.hparams.val_crop)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = RandomCropDataset(image_files(hp.train_dirs), hp.crop_size, hp.epoch_size, hp.skip_small)
        if stage in (None, "fit", "validate") and self.val_set is None:
            self.val_set = self._eval_set(hp.val_dir)
        if stage in (None, "test") and self.test_set is None:
            self.test_set = self._eval_set(hp.test_dir or hp.val_dir)

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=shuffle,
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.hparams.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.hparams.val_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.hparams.val_batch_size, False)
