"""``ImageClassificationDataModule``: images and class labels for ``ClassificationTask``.

Three sources:

* ``"folder"``: the ImageFolder layout, ``root/train/<class>/<image>``, ``root/val/<class>/...`` and
  an optional ``root/test/<class>/...``. The classes are the sub-folders of ``train`` (sorted by
  name) unless ``classes`` is given.
* ``"csv"``: ``train_csv`` / ``val_csv`` / ``test_csv`` with (at least) the columns ``path`` and
  ``label``; a relative ``path`` is relative to the folder of its CSV; ``label`` is a class name.
  The classes are the distinct labels of ``train_csv`` (sorted numerically when every label is an
  integer, else by name) unless ``classes`` is given.
* ``"sklearn_digits"``: the 1797 8x8 handwritten digits shipped inside scikit-learn
  (``sklearn.datasets.load_digits``; nothing is downloaded), as 3-channel images upsampled
  (bilinear) to ``img_size``; split 80/20 into train/test by
  ``train_test_split(test_size=0.2, random_state=seed, stratify=labels)``. Validation is the test
  split unless ``val_fraction`` > 0.

``val_fraction`` > 0 carves a stratified validation set out of the training images
(``random_state=seed``); with the folder/CSV sources it replaces a missing ``val`` split (given
both, it is an error). Batches are ``(images (B, 3, H, W) float32, labels (B,) int64)``.

Transforms are timm's ``create_transform``: training with ``is_training=True`` (random resized
crop with ``scale``/``ratio``, ``hflip``, ``color_jitter``, ``auto_augment``, random erasing
``re_prob``), evaluation resize + centre crop with ``crop_pct``; both normalise with ``mean`` and
``std`` (ImageNet's by default). Mixup/CutMix is done on whole batches by ``ClassificationTask``.

``predict`` runs on the images under ``predict_path`` (a folder, searched recursively, or one image
file; labels unknown) or, when it is ``None``, on the test split (the validation split when there
is no test split). Its batches carry a third item, the index of each image in ``predict_names``.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torch.utils.data import DataLoader, Dataset

from ..training.checks import (
    check_choice,
    check_fraction,
    check_int,
    check_interval,
    check_probability,
    check_range_pair,
)

__all__ = ["IMG_EXTENSIONS", "ImageClassificationDataModule", "ImageListDataset", "IndexedDataset",
           "read_image_csv", "scan_image_folder"]

Source = Literal["folder", "csv", "sklearn_digits"]
IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SPLITS = ("train", "val", "test")
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
UNLABELED = -1
# An image is a file path or an already-decoded PIL image (the digits are kept in memory).
ImageRef = Path | Image.Image


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMG_EXTENSIONS and not path.name.startswith(".")


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in pattern if _is_image(p))


def _sort_labels(labels: Sequence[str]) -> list[str]:
    """Distinct labels, numerically when every one is an integer ('2' before '10'), else by name."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return sorted(distinct)


# ------------------------------------------------------------------------------------ reading
def scan_image_folder(folder: str | Path, classes: Sequence[str] | None = None,
                      require_all_classes: bool = False,
                      allow_empty: bool = False) -> tuple[list[tuple[Path, int]], list[str]]:
    """The images of an ImageFolder split ``folder/<class>/<image>`` -> ``([(path, class index)], classes)``.

    ``classes=None`` takes the sub-folders of ``folder`` (sorted by name). Raises FileNotFoundError
    for a missing folder, ValueError (naming the folder) when there is no class sub-folder, a class
    sub-folder holds no image (``IMG_EXTENSIONS``, searched recursively; skipped instead when
    ``allow_empty``), a sub-folder is not one of
    ``classes``, or (``require_all_classes``) a class of ``classes`` has no sub-folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        raise ValueError(f"{folder}: no class sub-folders; expected {folder}/<class>/<image> "
                         f"(image extensions {', '.join(IMG_EXTENSIONS)})")
    if classes is None:
        classes = subdirs
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    unknown = [d for d in subdirs if d not in index]
    if unknown:
        raise ValueError(f"{folder}: class folder(s) {unknown} are not in the class list {classes}")
    if require_all_classes:
        missing = [c for c in classes if c not in subdirs]
        if missing:
            raise ValueError(f"{folder}: class(es) {missing} have no folder; every class needs training images "
                             f"(expected {folder}/<class>/<image>)")
    samples: list[tuple[Path, int]] = []
    for name in subdirs:
        files = _image_files(folder / name, recursive=True)
        if not files and not allow_empty:
            raise ValueError(f"{folder / name}: empty class {name!r}: no image files "
                             f"(extensions {', '.join(IMG_EXTENSIONS)})")
        samples += [(f, index[name]) for f in files]
    return samples, classes


def read_image_csv(csv_path: str | Path) -> list[tuple[Path, str]]:
    """Rows of an image list CSV with the columns ``path`` and ``label`` -> ``[(image path, label)]``.

    Relative paths are taken relative to the CSV's folder. Raises FileNotFoundError for a missing
    CSV and ValueError (naming the CSV, and the row where there is one) for: no header, missing
    ``path``/``label`` columns, no rows, an empty path or label, an image file that does not exist.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"image list CSV not found: {csv_path}")
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if not header:
            raise ValueError(f"{csv_path}: the file is empty or has no header row; expected columns 'path,label'")
        reader.fieldnames = header
        missing = [c for c in ("path", "label") if c not in header]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {missing}; the header has {header} "
                             f"(expected 'path' and 'label')")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{csv_path}: the file has a header but no rows")
    base = csv_path.parent
    out: list[tuple[Path, str]] = []
    for line, row in enumerate(rows, start=2):
        path, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not path:
            raise ValueError(f"{csv_path}: line {line} has an empty 'path'")
        if not label:
            raise ValueError(f"{csv_path}: line {line} has an empty 'label'")
        file = Path(path).expanduser()
        file = file if file.is_absolute() else base / file
        if not file.is_file():
            raise FileNotFoundError(f"{csv_path}: line {line}: image file not found: {file}")
        out.append((file, label))
    return out


def _digits(img_size: int) -> tuple[list[Image.Image], np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # values 0..16
    pil = [Image.fromarray(im).resize((img_size, img_size), Image.BILINEAR).convert("RGB")
           for im in images]
    return pil, bunch.target.astype(np.int64)


# ------------------------------------------------------------------------------------ datasets
class ImageListDataset(Dataset):
    """``(transform(image), label)`` for a list of ``(path or PIL image, label)``; files are opened
    with PIL and converted to RGB."""

    def __init__(self, samples: Sequence[tuple[ImageRef, int]], transform: Any = None) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> Image.Image:
        ref = self.samples[index][0]
        if isinstance(ref, Image.Image):
            return ref
        try:
            with Image.open(ref) as im:
                return im.convert("RGB")
        except OSError as err:
            raise OSError(f"cannot read image {ref}: {err}") from err

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.load(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.samples[index][1])

    @property
    def targets(self) -> list[int]:
        return [int(s[1]) for s in self.samples]


class IndexedDataset(Dataset):
    """``(image, label, index)``: lets prediction writers name each image, whatever the sampler."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        image, label = self.dataset[index]
        return image, label, int(index)


# --------------------------------------------------------------------------------- data module
class ImageClassificationDataModule(L.LightningDataModule):
    """Train/val/test/predict image classification data from a folder tree, CSV lists or the
    scikit-learn digits (see the module docstring for the layouts).

    Args:
        source: ``"folder"``, ``"csv"`` or ``"sklearn_digits"``.
        root: the ImageFolder root (source ``"folder"``).
        train_csv, val_csv, test_csv: image lists (source ``"csv"``); ``val_csv`` may be left out
            when ``val_fraction`` > 0, ``test_csv`` may be left out.
        classes: the class names in label order; ``None`` = from the training split.
        img_size: side of the square model input; ``None`` = 32 for the digits, 224 otherwise.
        val_fraction: fraction of the training images held out (stratified) for validation; 0 =
            the ``val`` split (the test split for the digits).
        seed: ``random_state`` of the digits' train/test split and of the ``val_fraction`` split.
        batch_size: training batch size (keep it even with mixup); eval_batch_size: validation,
            test and predict batch size (``None`` = ``batch_size``).
        num_workers: DataLoader worker processes.
        drop_last_train: drop the last incomplete training batch.
        scale, ratio: random-resized-crop area and aspect ranges (training).
        hflip: horizontal-flip probability (training; 0 for digits and text).
        color_jitter: colour-jitter strength (training; 0 = off).
        auto_augment: timm auto-augment policy string (e.g. ``"rand-m9-mstd0.5-inc1"``; None = off).
        re_prob: random-erasing probability (training).
        interpolation: resize interpolation (``"bicubic"``, ``"bilinear"``, ...).
        crop_pct: evaluation centre-crop fraction (resize to ``img_size / crop_pct``, crop ``img_size``).
        mean, std: per-channel normalisation.
        predict_path: folder (recursive) or image file to predict; ``None`` = the test split.
    """

    def __init__(
        self,
        source: Source = "folder",
        root: str | None = None,
        train_csv: str | None = None,
        val_csv: str | None = None,
        test_csv: str | None = None,
        classes: list[str] | None = None,
        img_size: int | None = None,
        val_fraction: float = 0.0,
        seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        drop_last_train: bool = True,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        hflip: float = 0.5,
        color_jitter: float = 0.4,
        auto_augment: str | None = None,
        re_prob: float = 0.0,
        interpolation: str = "bicubic",
        crop_pct: float = 0.875,
        mean: tuple[float, float, float] = IMAGENET_DEFAULT_MEAN,
        std: tuple[float, float, float] = IMAGENET_DEFAULT_STD,
        predict_path: str | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_choice(name, "source", source, ("folder", "csv", "sklearn_digits"))
        if source == "folder" and root is None:
            raise ValueError(f"{name}: source 'folder' needs 'root' (the folder holding train/ and val/)")
        if source == "csv" and train_csv is None:
            raise ValueError(f"{name}: source 'csv' needs 'train_csv' (and 'val_csv' or val_fraction > 0)")
        if source == "csv" and val_csv is None and val_fraction == 0:
            raise ValueError(f"{name}: source 'csv' needs 'val_csv' or val_fraction > 0")
        if source == "csv" and val_csv is not None and val_fraction > 0:
            raise ValueError(f"{name}: give either 'val_csv' or val_fraction > 0, not both")
        if classes is not None:
            classes = [str(c) for c in classes]
            dupes = sorted({c for c in classes if classes.count(c) > 1})
            if not classes or dupes:
                raise ValueError(f"{name}: 'classes' must be a non-empty list of distinct names; got {classes}")
        check_int(name, "batch_size", batch_size, 1)
        check_int(name, "num_workers", num_workers, 0)
        check_int(name, "img_size", img_size, 1, allow_none=True)
        check_int(name, "eval_batch_size", eval_batch_size, 1, allow_none=True)
        check_fraction(name, "val_fraction", val_fraction)
        check_interval(name, "crop_pct", crop_pct, 0.0, 1.0, low_closed=False, high_closed=True)
        check_range_pair(name, "scale", scale)
        check_range_pair(name, "ratio", ratio)
        check_probability(name, "hflip", hflip)
        check_probability(name, "re_prob", re_prob)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"{name}: 'mean' and 'std' need 3 values (RGB), std > 0; got {mean}, {std}")
        self.save_hyperparameters()
        self.source = source
        self.root = None if root is None else Path(root).expanduser()
        self.csvs = {"train": train_csv, "val": val_csv, "test": test_csv}
        self.img_size = img_size if img_size is not None else (32 if source == "sklearn_digits" else 224)
        self.val_fraction, self.seed = float(val_fraction), int(seed)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.eval_batch_size = eval_batch_size or batch_size
        self.drop_last_train = drop_last_train
        self.predict_path = None if predict_path is None else Path(predict_path).expanduser()
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self._given_classes = classes
        self._classes: list[str] | None = None
        self._samples: dict[str, list[tuple[ImageRef, int]]] | None = None
        self.datasets: dict[str, Dataset] = {}
        self.predict_names: list[str] = []
        self.train_transform = create_transform(
            self.img_size, is_training=True, scale=tuple(scale), ratio=tuple(ratio), hflip=hflip,
            color_jitter=color_jitter if color_jitter > 0 else None, auto_augment=auto_augment,
            interpolation=interpolation, mean=self.mean, std=self.std, re_prob=re_prob,
        )
        self.eval_transform = create_transform(
            self.img_size, is_training=False, crop_pct=crop_pct, interpolation=interpolation,
            mean=self.mean, std=self.std,
        )

    # --------------------------------------------------------------------------- indexing
    def _index(self) -> dict[str, list[tuple[ImageRef, int]]]:
        """Lists every split's samples (images are read lazily, the digits once) and the classes."""
        if self._samples is not None:
            return self._samples
        if self.source == "sklearn_digits":
            samples = self._index_digits()
        elif self.source == "folder":
            samples = self._index_folder()
        else:
            samples = self._index_csv()
        if self.val_fraction > 0:
            samples["train"], samples["val"] = self._holdout(samples["train"])
        self._samples = samples
        return samples

    def _holdout(self, train: list[tuple[ImageRef, int]]) -> tuple[list, list]:
        from sklearn.model_selection import train_test_split

        labels = [s[1] for s in train]
        try:
            tr, va = train_test_split(train, test_size=self.val_fraction, random_state=self.seed, stratify=labels)
        except ValueError as err:
            raise ValueError(f"{type(self).__name__}: cannot hold out val_fraction={self.val_fraction} of the "
                             f"{len(train)} training images stratified by class: {err}") from err
        return list(tr), list(va)

    def _index_digits(self) -> dict[str, list[tuple[ImageRef, int]]]:
        from sklearn.model_selection import train_test_split

        images, labels = _digits(self.img_size)
        names = [str(i) for i in range(10)]
        if self._given_classes is not None and self._given_classes != names:
            raise ValueError(f"{type(self).__name__}: the digits' classes are {names}; "
                             f"got classes={self._given_classes}")
        self._classes = names
        idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=self.seed,
                                               stratify=labels)
        self._digit_ids = {"train": idx_train, "test": idx_test}
        train = [(images[i], int(labels[i])) for i in idx_train]
        test = [(images[i], int(labels[i])) for i in idx_test]
        return {"train": train, "val": test, "test": test}

    def _index_folder(self) -> dict[str, list[tuple[ImageRef, int]]]:
        root = self.root
        assert root is not None
        if not root.is_dir():
            raise FileNotFoundError(f"image folder root not found: {root}")
        train_dir = root / "train"
        if not train_dir.is_dir():
            raise FileNotFoundError(f"{root}: no 'train' folder ({train_dir} not found); expected "
                                    f"{root}/train/<class>/<image> and {root}/val/<class>/<image>")
        train, classes = scan_image_folder(train_dir, self._given_classes, require_all_classes=True)
        self._classes = classes
        samples = {"train": train}
        val_dir = root / "val"
        if self.val_fraction > 0:
            if val_dir.exists():
                raise ValueError(f"{root}: has a 'val' folder and val_fraction={self.val_fraction} > 0; use one")
        elif not val_dir.is_dir():
            raise FileNotFoundError(f"{root}: no 'val' folder ({val_dir} not found); add one or set val_fraction > 0")
        else:
            samples["val"] = scan_image_folder(val_dir, classes, allow_empty=True)[0]
        if (root / "test").is_dir():
            samples["test"] = scan_image_folder(root / "test", classes, allow_empty=True)[0]
        for split in ("val", "test"):
            if split in samples and not samples[split]:
                raise ValueError(f"{root / split}: no image files in any class folder")
        return samples

    def _index_csv(self) -> dict[str, list[tuple[ImageRef, int]]]:
        rows = {split: read_image_csv(path) for split, path in self.csvs.items() if path is not None}
        classes = self._given_classes or _sort_labels([label for _, label in rows["train"]])
        index = {c: i for i, c in enumerate(classes)}
        for split, split_rows in rows.items():
            unknown = _sort_labels([label for _, label in split_rows if label not in index])
            if unknown:
                raise ValueError(f"{self.csvs[split]}: label(s) {unknown[:10]} are not in the class list {classes}")
        present = {label for _, label in rows["train"]}
        empty = [c for c in classes if c not in present]
        if empty:
            raise ValueError(f"{self.csvs['train']}: empty class(es) {empty}: no training rows with these labels")
        self._classes = list(classes)
        return {split: [(path, index[label]) for path, label in split_rows] for split, split_rows in rows.items()}

    # ------------------------------------------------------------------------- properties
    @property
    def classes(self) -> list[str]:
        """Class names in label order (indexes the data on first use)."""
        self._index()
        assert self._classes is not None
        return list(self._classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_test(self) -> bool:
        return "test" in self._index()

    def split_size(self, split: str) -> int:
        """Number of images of ``train``, ``val`` or ``test`` (0 when there is no such split)."""
        return len(self._index().get(split, []))

    # ------------------------------------------------------------------------------ setup
    def prepare_data(self) -> None:
        """Nothing to do: every source is local (the digits ship with scikit-learn)."""

    def setup(self, stage: str | None = None) -> None:
        samples = self._index()
        wanted = _STAGE_SPLITS.get(stage or "", ("train", "val", "test", "predict"))
        for split in wanted:
            if split in self.datasets:
                continue
            if split == "predict":
                self.datasets["predict"] = self._predict_dataset(samples)
            elif split in samples:
                transform = self.train_transform if split == "train" else self.eval_transform
                self.datasets[split] = ImageListDataset(samples[split], transform)
            elif split == "test" and stage == "test":
                where = self.root / "test" if self.source == "folder" else "'test_csv'"
                raise ValueError(f"{type(self).__name__}: no test split ({where} not given/found)")

    def _predict_dataset(self, samples: dict[str, list[tuple[ImageRef, int]]]) -> Dataset:
        if self.predict_path is not None:
            path = self.predict_path
            if path.is_file():
                if not _is_image(path):
                    raise ValueError(f"predict_path {path} is not an image file ({', '.join(IMG_EXTENSIONS)})")
                files = [path]
            elif path.is_dir():
                files = _image_files(path, recursive=True)
                if not files:
                    raise ValueError(f"predict_path {path}: no image files ({', '.join(IMG_EXTENSIONS)})")
            else:
                raise FileNotFoundError(f"predict_path not found: {path}")
            self.predict_names = [str(f.relative_to(path)) if path.is_dir() else f.name for f in files]
            return IndexedDataset(ImageListDataset([(f, UNLABELED) for f in files], self.eval_transform))
        split = "test" if "test" in samples else "val"
        self.predict_names = self._names(split, samples[split])
        return IndexedDataset(ImageListDataset(samples[split], self.eval_transform))

    def _names(self, split: str, samples: list[tuple[ImageRef, int]]) -> list[str]:
        if self.source == "sklearn_digits" and split == "test":  # names: indices into load_digits()
            return [f"digits[{int(i)}]" for i in self._digit_ids["test"]]
        names = []
        for i, (ref, _) in enumerate(samples):
            if isinstance(ref, Image.Image):
                names.append(f"{split}[{i}]")
            elif self.source == "folder" and self.root is not None and ref.is_relative_to(self.root):
                names.append(str(ref.relative_to(self.root)))
            else:
                names.append(str(ref))
        return names

    # ------------------------------------------------------------------------ dataloaders
    def _loader(self, split: str, train: bool = False) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test", "predict": "predict"}[split])
        if split not in self.datasets:
            raise ValueError(f"{type(self).__name__}: no {split!r} split")
        return DataLoader(self.datasets[split], batch_size=self.batch_size if train else self.eval_batch_size,
                          shuffle=train, drop_last=train and self.drop_last_train, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")
