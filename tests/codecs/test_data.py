"""ImageCompressionDataModule: crops, flips, evaluation padding and the errors for bad images."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ssm_apps.codecs.data import (
    EvalImageDataset,
    ImageCompressionDataModule,
    RandomCropDataset,
    image_files,
)
from tests.helpers import shared_path


def _save(path, h, w, mode="RGB"):
    array = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path)


def test_random_crops_are_crops_of_the_image(tmp_path):
    _save(tmp_path / "a.png", 40, 50)
    image = torch.tensor(np.asarray(Image.open(tmp_path / "a.png"))).permute(2, 0, 1).float() / 255
    views = [image, image.flip(-1), image.flip(-2), image.flip(-1).flip(-2)]
    dataset = RandomCropDataset(image_files([tmp_path]), crop_size=16, epoch_size=10)
    assert len(dataset) == 10
    for i in range(10):
        crop = dataset[i]
        assert crop.shape == (3, 16, 16) and 0 <= crop.min() and crop.max() <= 1
        found = any((v.unfold(1, 16, 1).unfold(2, 16, 1) == crop[:, None, None]).flatten(3).all(-1).all(0).any() for v in views)
        assert found


def test_gray_images_are_converted(tmp_path):
    _save(tmp_path / "g.png", 32, 32, "L")
    assert RandomCropDataset(image_files([tmp_path]), 32)[0].shape == (3, 32, 32)


def test_bad_images_give_clear_errors(tmp_path):
    _save(tmp_path / "small.png", 20, 300)
    with pytest.raises(ValueError, match=r"small.png is 300x20, smaller than the 256x256 crop"):
        RandomCropDataset(image_files([tmp_path]), 256)
    with pytest.warns(UserWarning, match="small.png"), pytest.raises(ValueError, match="no training image"):
        RandomCropDataset(image_files([tmp_path]), 256, skip_small=True)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        RandomCropDataset(image_files([tmp_path]), 16)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_files([tmp_path / "missing"])


def test_eval_images_padded_to_64():
    files = image_files([shared_path("data", "images", "kodak")])
    assert len(files) == 24
    image, size = EvalImageDataset(files[:1])[0]
    assert image.shape[-2] % 64 == 0 and image.shape[-1] % 64 == 0 and tuple(size.tolist()) == (512, 768)
    image, size = EvalImageDataset(files[:1], crop=100)[0]
    assert image.shape == (3, 128, 128) and tuple(size.tolist()) == (100, 100)


def test_datamodule_on_shared_folders():
    dm = ImageCompressionDataModule(
        train_dirs=[str(shared_path("data", "images", "train")), str(shared_path("data", "images", "extra"))],
        val_dir=str(shared_path("data", "images", "kodak")), batch_size=2, val_limit=2, skip_small=True,
    )
    with pytest.warns(UserWarning, match="smaller than the 256 crop"):
        dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (2, 3, 256, 256)
    images, sizes = next(iter(dm.val_dataloader()))
    assert images.shape[0] == 1 and sizes.shape == (1, 2)
    with pytest.raises(ValueError, match="val_batch_size 1"):
        ImageCompressionDataModule(val_batch_size=4)
