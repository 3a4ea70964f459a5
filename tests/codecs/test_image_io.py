"""read_image / write_image: 8-bit PNG, JPEG and TIFF in RGB, grayscale and RGBA; other depths refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ssm_apps.codecs.codec import read_image, write_image


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_formats_and_modes(tmp_path, suffix):
    rgb = np.random.default_rng(0).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    for mode, expected in (("RGB", "rgb"), ("L", "gray"), ("RGBA", "rgba")):
        if suffix == ".jpg" and mode == "RGBA":
            continue  # JPEG has no alpha
        path = tmp_path / f"{mode}{suffix}"
        Image.fromarray(rgb).convert(mode).save(path)
        image, colour = read_image(path)
        assert image.shape == (33, 47, 3) and image.dtype == np.uint8 and colour == expected
        if suffix != ".jpg":
            np.testing.assert_array_equal(image, np.asarray(Image.open(path).convert("RGB")))


def test_gray_written_back_as_one_channel(tmp_path):
    image = np.repeat(np.arange(20, dtype=np.uint8).reshape(4, 5, 1), 3, axis=2)
    write_image(tmp_path / "g.png", image, "gray")
    assert Image.open(tmp_path / "g.png").mode == "L"


def test_16_bit_and_unreadable_refused(tmp_path):
    Image.fromarray(np.zeros((8, 8), dtype=np.uint16) + 1000).save(tmp_path / "deep.png")
    with pytest.raises(ValueError, match="8 bits per channel"):
        read_image(tmp_path / "deep.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="cannot read the image"):
        read_image(tmp_path / "bad.png")
