"""verify / skip_bad_files: every image file read once before training, all bad ones reported at once."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from ssm_apps.training.data_checks import BadFilesError, check_image_files, find_unreadable_images


def _image(path, size=8, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def _tree(root):
    """ImageFolder tree with a truncated PNG, a text file named .png and an empty .jpg among good images."""
    good = [_image(root / split / c / f"{i}.png", seed=i) for split in ("train", "val") for c in ("a", "b")
            for i in range(3)]
    truncated = root / "train" / "a" / "truncated.png"
    data = _image(truncated, size=64).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    (root / "train" / "b" / "text.png").write_text("not an image")
    (root / "val" / "a" / "empty.jpg").write_bytes(b"")
    return good, {truncated, root / "train" / "b" / "text.png", root / "val" / "a" / "empty.jpg"}


def test_find_unreadable_images_names_each_with_a_reason(tmp_path):
    good, bad = _tree(tmp_path)
    found = find_unreadable_images([*good, *sorted(bad)], progress=False)
    assert {p for p, _ in found} == bad
    assert all(reason for _, reason in found)


def test_check_image_files_reports_all_bad_files_at_once(tmp_path):
    good, bad = _tree(tmp_path)
    samples = {"train": [(p, 0) for p in [*good, *bad] if "train" in p.parts],
               "val": [(p, 0) for p in [*good, *bad] if "val" in p.parts]}
    with pytest.raises(BadFilesError) as err:
        check_image_files(samples, lambda s: s[0], progress=False, owner="DM")
    assert {p for p, _ in err.value.bad} == bad
    message = str(err.value)
    assert message.startswith(f"DM: 3 of {len(good) + 3} image files cannot be read")
    assert all(str(p) in message for p in bad) and "skip_bad_files: true" in message


def test_skip_bad_files_leaves_them_out_and_says_which(tmp_path):
    good, bad = _tree(tmp_path)
    samples = {"train": [(p, 1) for p in [*good, *bad] if "train" in p.parts],
               "val": [(p, 1) for p in [*good, *bad] if "val" in p.parts], "memory": [(None, 2)]}
    with pytest.warns(UserWarning, match=r"DM: skipped 3 unreadable image file\(s\) of 15 \(train 2, val 1\)") as rec:
        kept = check_image_files(samples, lambda s: s[0], skip_bad_files=True, progress=False, owner="DM")
    assert all(str(p) in str(rec[0].message) for p in bad)
    assert {p for p, _ in kept["train"] + kept["val"]} == set(good) and kept["memory"] == [(None, 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_image_files({"train": [(p, 0) for p in good]}, lambda s: s[0], progress=False) is not None


def test_image_data_module_verify_and_skip(tmp_path):
    from ssm_apps.vision.data import ImageClassificationDataModule

    good, bad = _tree(tmp_path)
    dm = ImageClassificationDataModule(source="folder", root=str(tmp_path), img_size=8, batch_size=2, verify=True)
    with pytest.raises(BadFilesError, match="ImageClassificationDataModule: 3 of 15 image files cannot be read"):
        dm.setup("fit")
    dm = ImageClassificationDataModule(source="folder", root=str(tmp_path), img_size=8, batch_size=2,
                                       skip_bad_files=True)
    with pytest.warns(UserWarning, match="skipped 3 unreadable"):
        dm.setup("fit")
    assert dm.split_size("train") == 6 and dm.split_size("val") == 6
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 8, 8)
