"""The parts of benchmarks/bench_codec_rd.py that run anywhere: Pillow sweeps, curves, BD-rates."""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image

from tests.helpers import REPO, shared_path

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_codec_rd as bench


def test_pillow_sweeps_and_bd_rate():
    image = np.asarray(Image.open(shared_path("data", "images", "kodak", "kodim19.png")).convert("RGB"))[:192, :192]
    images = [("kodim19.png", np.ascontiguousarray(image))]
    rows = {
        "JPEG": bench.pillow_codec(images, "JPEG", [10, 30, 50, 70, 90]),
        "WebP": bench.pillow_codec(images, "WEBP", [10, 30, 50, 70, 90]),
    }
    for row in rows["JPEG"]:
        assert row["bpp"] == 8 * row["bytes"] / (192 * 192) and 15 < row["psnr"] < 50 and 0 < row["ms_ssim"] <= 1
    curves = {name: bench.curve(r) for name, r in rows.items()}
    assert curves["JPEG"]["quality"] == [10, 30, 50, 70, 90]
    assert all(np.diff(curves["JPEG"]["bpp"]) > 0)
    bd = bench.bd_rates(curves, "WebP", ["JPEG"])
    assert isinstance(bd["WebP_vs_JPEG_psnr"], float) and -80 < bd["WebP_vs_JPEG_psnr"] < 20
    assert set(bd) == {"WebP_vs_JPEG_psnr", "WebP_vs_JPEG_ms_ssim"}
