"""``MedicalDataModule``: NIfTI / DICOM / PNG image-label pairs through MONAI dictionary transforms.

Sources (first given wins): explicit lists ``train`` / ``val`` / ``test`` / ``predict`` of ``{"image": path,
"label": path}`` dicts (a DICOM series is a folder), a Decathlon datalist JSON (``datalist``: its "training",
"validation" and "test" sections, read with MONAI's ``load_decathlon_datalist``), or a Decathlon-style
``folder`` (``imagesTr/*`` with ``labelsTr/<same name>``; ``val_fraction`` of the pairs held out).

Transforms (dictionary keys ``image`` / ``label``)::

    LoadImaged -> EnsureChannelFirstd -> Orientationd(RAS) -> [check: shapes, affines, integer labels in range]
      -> SelectLabelsd (original label values ``labels`` -> classes 1..K, the rest background)
      -> Spacingd(pixdim) -> ScaleIntensityRanged(intensity_range -> [0, 1], clipped)
      -> CropForegroundd -> train: RandCropByPosNegLabeld(roi_size) -> RandFlipd (each axis) -> RandRotate90d
                            [-> RandScaleIntensityd / RandShiftIntensityd with ``intensity_aug``]
                            [-> RandCoarseDropoutd keeping one axial slab with ``fov_aug``]
                            val / test: the whole (cropped) volume, for sliding-window inference

``unlabelled=True`` (pre-training) drops labels: random crops ``RandSpatialCropSamplesd`` instead of the
pos/neg sampler. ``spatial_dims=2`` (PNG / 2-D images) skips orientation and spacing. Datasets are cached in
memory (``cache="memory"``: ``CacheDataset``), on disk (``"disk"``: ``PersistentDataset`` under ``cache_dir``)
or not at all (``"none"``).
"""
from __future__ import annotations

import json
import random
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from monai.transforms import Transform

__all__ = ["CheckPaird", "MedicalDataModule", "SelectLabelsd"]

Item = dict[str, str]


def _name(meta_tensor: Any, fallback: str) -> str:
    meta = getattr(meta_tensor, "meta", {}) or {}
    return str(meta.get("filename_or_obj", fallback))


class CheckPaird(Transform):
    """Validate a loaded (channel-first) image/label pair; raise ``ValueError`` naming the file on: shape or
    affine mismatch, non-integer labels, negative labels or labels >= ``num_classes`` (when given)."""

    def __init__(self, num_classes: int | None = None, affine_atol: float = 1e-3) -> None:
        self.num_classes, self.affine_atol = num_classes, affine_atol

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        if "label" not in d:
            return d
        image, label = d["image"], d["label"]
        img_name, lab_name = _name(image, "image"), _name(label, "label")
        if tuple(image.shape[1:]) != tuple(label.shape[1:]):
            raise ValueError(f"label {lab_name} has spatial shape {tuple(label.shape[1:])}, its image {img_name} "
                             f"{tuple(image.shape[1:])}")
        if hasattr(image, "affine") and hasattr(label, "affine"):
            a, b = torch.as_tensor(image.affine).double(), torch.as_tensor(label.affine).double()
            if not torch.allclose(a, b, atol=self.affine_atol):
                raise ValueError(f"label {lab_name} affine {b.tolist()} differs from its image {img_name} "
                                 f"affine {a.tolist()}")
        values = torch.as_tensor(label)
        if not torch.equal(values, values.round()):
            raise ValueError(f"label {lab_name} has non-integer values (e.g. "
                             f"{values[values != values.round()].flatten()[0].item():g}); expected class indices")
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or (self.num_classes is not None and hi >= self.num_classes):
            top = self.num_classes - 1 if self.num_classes else "K"
            raise ValueError(f"label {lab_name} has values in [{lo}, {hi}]; expected 0..{top}")
        return d


class SelectLabelsd(Transform):
    """Map original label values to classes: ``labels[k]`` -> k + 1, everything else -> 0; raise when no
    foreground is left (naming the file)."""

    def __init__(self, labels: Sequence[int] | None, require_foreground: bool = True) -> None:
        self.labels = None if labels is None else [int(v) for v in labels]
        self.require_foreground = require_foreground

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        if "label" not in d:
            return d
        label = d["label"]
        if self.labels is not None:
            out = torch.zeros_like(label)
            for k, v in enumerate(self.labels):
                out[label == v] = k + 1
            label = out
            d["label"] = label
        if self.require_foreground and not bool((label > 0).any()):
            wanted = f"labels {self.labels}" if self.labels is not None else "any foreground label"
            raise ValueError(f"label {_name(label, 'label')} has no foreground voxel ({wanted})")
        return d


class MedicalDataModule(L.LightningDataModule):
    """Image/label volumes for segmentation (or unlabelled volumes for pre-training) through MONAI.

    Args:
        train, val, test, predict: explicit item lists ``[{"image": ..., "label": ...}]`` (predict: image only).
        datalist: a Decathlon datalist JSON (sections "training", "validation", "test").
        base_dir: root of the datalist's relative paths (default: the JSON's folder).
        folder: Decathlon-style folder (``imagesTr``, ``labelsTr``, optional ``imagesTs``).
        val_fraction: share of ``folder``'s pairs held out for validation.
        unlabelled: pre-training volumes (labels not read).
        spatial_dims: 3 (volumes) or 2 (images: no orientation / spacing).
        labels: original label values kept (in this order -> classes 1..K); None keeps the labels as stored.
        num_classes: when ``labels`` is None, labels must lie in 0..num_classes-1.
        pixdim: target voxel spacing (None = keep).
        intensity_range: (a_min, a_max) mapped to [0, 1] with clipping (CT: HU window).
        roi_size: training crop size.
        num_samples: crops per volume per step.
        pos, neg: RandCropByPosNegLabeld's foreground / background centre ratio.
        crop_foreground: CropForegroundd on the image before sampling (training / validation).
        intensity_aug: probability of each of ``RandScaleIntensityd(factors=0.1)`` and
            ``RandShiftIntensityd(offsets=0.1)`` on training crops (MONAI's BTCV recipe uses 0.5; 0 = off).
        fov_aug: probability that a training crop keeps only one random axial slab (last axis, whole in-plane
            extent, ``fov_min_slices`` up to all slices thick) and is set to 0 elsewhere, in image (the lower
            end of ``intensity_range``, as sliding-window inference pads) and label (background): MONAI's
            ``RandCoarseDropoutd`` with ``dropout_holes=False``. A truncated field of view, for test scans that
            cover a few slices only (0 = off; 3-D only).
        fov_min_slices: thinnest slab ``fov_aug`` keeps.
        batch_size: training batch (volumes; each gives ``num_samples`` crops).
        cache: "memory" (CacheDataset), "disk" (PersistentDataset) or "none".
        cache_dir: PersistentDataset folder.
        num_workers: DataLoader workers.
        seed: split / sampling seed.
    """

    def __init__(self, train: list[Item] | None = None, val: list[Item] | None = None, test: list[Item] | None = None,
                 predict: list[Item] | None = None, datalist: str | None = None, base_dir: str | None = None,
                 folder: str | None = None, val_fraction: float = 0.2, unlabelled: bool = False, spatial_dims: int = 3,
                 labels: list[int] | None = None, num_classes: int | None = None,
                 pixdim: Sequence[float] | None = (1.5, 1.5, 2.0), intensity_range: Sequence[float] = (-175.0, 250.0),
                 roi_size: Sequence[int] = (96, 96, 96), num_samples: int = 2, pos: float = 1.0, neg: float = 1.0,
                 crop_foreground: bool = True, intensity_aug: float = 0.0, fov_aug: float = 0.0,
                 fov_min_slices: int = 8, batch_size: int = 1, cache: str = "memory",
                 cache_dir: str | None = None, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"MedicalDataModule: argument 'spatial_dims' must be 2 or 3; got {spatial_dims}")
        if cache not in ("memory", "disk", "none"):
            raise ValueError(f"MedicalDataModule: argument 'cache' must be 'memory', 'disk' or 'none'; got {cache!r}")
        if cache == "disk" and not cache_dir:
            raise ValueError("MedicalDataModule: cache='disk' needs 'cache_dir'")
        for name, value in (("intensity_aug", intensity_aug), ("fov_aug", fov_aug)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"MedicalDataModule: argument {name!r} must be a probability in [0, 1]; got {value}")
        if fov_aug > 0 and spatial_dims != 3:
            raise ValueError(f"MedicalDataModule: argument 'fov_aug' needs spatial_dims=3; got {spatial_dims}")
        if fov_aug > 0 and not 1 <= fov_min_slices <= roi_size[-1]:
            raise ValueError(f"MedicalDataModule: argument 'fov_min_slices' must be in [1, roi_size[-1] = "
                             f"{roi_size[-1]}]; got {fov_min_slices}")
        if len(roi_size) != spatial_dims:
            raise ValueError(f"MedicalDataModule: argument 'roi_size' must have {spatial_dims} sizes; got {roi_size}")
        self.save_hyperparameters()
        self.items = self._collect(train, val, test, predict, datalist, base_dir, folder, val_fraction, seed)
        self.datasets: dict[str, Any] = {}

    # ---- sources -------------------------------------------------------------------------------------------
    @staticmethod
    def _collect(train, val, test, predict, datalist, base_dir, folder, val_fraction, seed) -> dict[str, list[Item]]:
        items = {"train": list(train or []), "val": list(val or []), "test": list(test or []),
                 "predict": list(predict or [])}
        if datalist:
            from monai.data import load_decathlon_datalist

            path = Path(datalist)
            if not path.is_file():
                raise FileNotFoundError(f"MedicalDataModule: datalist {path} does not exist")
            sections = json.loads(path.read_text())
            root = base_dir or str(path.parent)
            for split, key in (("train", "training"), ("val", "validation"), ("test", "test")):
                if key in sections and not items[split]:
                    items[split] = load_decathlon_datalist(str(path), is_segmentation=split != "test",
                                                           data_list_key=key, base_dir=root)
        elif folder:
            root = Path(folder)
            images = sorted((root / "imagesTr").glob("*"))
            if not images:
                raise FileNotFoundError(f"MedicalDataModule: no images under {root / 'imagesTr'}")
            pairs = [{"image": str(p), "label": str(root / "labelsTr" / p.name)} for p in images]
            random.Random(seed).shuffle(pairs)
            n_val = int(round(val_fraction * len(pairs))) if len(pairs) > 1 else 0
            items["val"] = items["val"] or pairs[:n_val]
            items["train"] = items["train"] or pairs[n_val:]
            items["predict"] = items["predict"] or [{"image": str(p)} for p in sorted((root / "imagesTs").glob("*"))]
        for split, entries in items.items():
            for entry in entries:
                for key in ("image", "label"):
                    if key in entry and not Path(entry[key]).exists():
                        raise FileNotFoundError(f"MedicalDataModule: {split} {key} file {entry[key]} does not exist")
        return items

    # ---- transforms ----------------------------------------------------------------------------------------
    def _reader(self, items: list[Item]) -> str | None:
        return "PydicomReader" if any(Path(i["image"]).is_dir() for i in items) else None

    def base_transforms(self, keys: Sequence[str], reader: str | None = None) -> list:
        """Loading, checks, label selection, orientation, spacing, intensity scaling (shared by all splits)."""
        from monai import transforms as T

        h = self.hparams
        label = "label" in keys
        out: list = [T.LoadImaged(keys, reader=reader, image_only=True), T.EnsureChannelFirstd(keys)]
        if h.spatial_dims == 3:
            out.append(T.Orientationd(keys, axcodes="RAS"))
        if label:  # after re-orientation: pairs stored in different voxel orders compare in RAS
            out += [CheckPaird(h.num_classes if h.labels is None else None), SelectLabelsd(h.labels)]
        if h.spatial_dims == 3:
            if h.pixdim is not None:
                out.append(T.Spacingd(keys, pixdim=tuple(h.pixdim), mode=("bilinear", "nearest")[:len(keys)]))
        a_min, a_max = h.intensity_range
        out.append(T.ScaleIntensityRanged("image", a_min=a_min, a_max=a_max, b_min=0.0, b_max=1.0, clip=True))
        return out

    def train_transforms(self):
        from monai import transforms as T

        h = self.hparams
        keys = ["image"] if h.unlabelled else ["image", "label"]
        out = self.base_transforms(keys, self._reader(self.items["train"]))
        if h.crop_foreground:
            out.append(T.CropForegroundd(keys, source_key="image", allow_smaller=True))
        out.append(T.SpatialPadd(keys, spatial_size=tuple(h.roi_size)))
        if h.unlabelled:
            out.append(T.RandSpatialCropSamplesd(keys, roi_size=tuple(h.roi_size), num_samples=h.num_samples,
                                                 random_size=False))
        else:
            out.append(T.RandCropByPosNegLabeld(keys, label_key="label", spatial_size=tuple(h.roi_size), pos=h.pos,
                                                neg=h.neg, num_samples=h.num_samples, image_key="image",
                                                image_threshold=0, allow_smaller=True))
        out += [T.RandFlipd(keys, prob=0.1, spatial_axis=i) for i in range(h.spatial_dims)]
        out.append(T.RandRotate90d(keys, prob=0.1, max_k=3))
        if h.intensity_aug > 0:
            out += [T.RandScaleIntensityd("image", factors=0.1, prob=h.intensity_aug),
                    T.RandShiftIntensityd("image", offsets=0.1, prob=h.intensity_aug)]
        if h.fov_aug > 0:
            out.append(T.RandCoarseDropoutd(keys, holes=1, spatial_size=(-1, -1, h.fov_min_slices),
                                            max_spatial_size=(-1, -1, h.roi_size[-1]), dropout_holes=False,
                                            fill_value=0, prob=h.fov_aug))
        out.append(T.EnsureTyped(keys, track_meta=False))
        return T.Compose(out)

    def eval_transforms(self, split: str):
        from monai import transforms as T

        keys = ["image"] if split == "predict" or self.hparams.unlabelled else ["image", "label"]
        out = self.base_transforms(keys, self._reader(self.items[split]))
        if self.hparams.crop_foreground and split != "predict":
            out.append(T.CropForegroundd(keys, source_key="image", allow_smaller=True))
        return T.Compose(out)

    # ---- datasets ------------------------------------------------------------------------------------------
    def _dataset(self, items: list[Item], transform):
        from monai import data

        if self.hparams.cache == "memory":
            try:
                return data.CacheDataset(items, transform, cache_rate=1.0, num_workers=0, progress=False)
            except RuntimeError as e:  # MONAI wraps a transform's error in "applying transform ..."
                root: BaseException = e
                while root.__cause__ is not None:
                    root = root.__cause__
                if isinstance(root, (ValueError, FileNotFoundError)):
                    raise root from None
                raise
        if self.hparams.cache == "disk":
            return data.PersistentDataset(items, transform, cache_dir=self.hparams.cache_dir)
        return data.Dataset(items, transform)

    def setup(self, stage: str | None = None) -> None:
        from monai.utils import set_determinism

        set_determinism(self.hparams.seed)
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["predict"]}
        for split in wanted.get(stage, ["train", "val", "test", "predict"]) if stage else ["train", "val", "test"]:
            if split in self.datasets or not self.items[split]:
                continue
            transform = self.train_transforms() if split == "train" else self.eval_transforms(split)
            self.datasets[split] = self._dataset(self.items[split], transform)
        if stage == "fit" and "train" not in self.datasets:
            raise ValueError("MedicalDataModule: no training items (give train=, datalist= or folder=)")

    def _loader(self, split: str, train: bool = False):
        from monai.data import DataLoader

        if split not in self.datasets:
            raise ValueError(f"MedicalDataModule: no {split} items were given")
        return DataLoader(self.datasets[split], batch_size=self.hparams.batch_size if train else 1, shuffle=train,
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0)

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val") if "val" in self.datasets else []  # no validation items: Lightning skips it

    def test_dataloader(self):
        return self._loader("test")

    def predict_dataloader(self):
        return self._loader("predict")
