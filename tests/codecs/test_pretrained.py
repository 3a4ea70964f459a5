"""Exported (float16) weights: reload exactly, keep their hash, and decode what they encoded; the
shipped default weights reproduce the Kodak figures that ship beside them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssm_apps.codecs import codec
from ssm_apps.codecs.cli import main
from ssm_apps.codecs.cmamba import CONFIGS, create_cmamba
from ssm_apps.codecs.container import weights_hash
from ssm_apps.codecs.metrics import psnr
from ssm_apps.codecs.pretrained import (
    DEFAULT_MODEL_ID,
    export_weights,
    load_pretrained,
    load_weights_file,
    reference_results,
    shipped_models,
)
from tests.helpers import shared_path


def test_export_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_cmamba("tiny").eval()
    path = tmp_path / "w.pt"
    export_weights(model, path, "cmamba-tiny-test", {**CONFIGS["tiny"].__dict__, "depths": [1, 0, 0]})
    payload = torch.load(path, weights_only=False)
    assert payload["state_dict"]["g_a.0.weight"].dtype == torch.float16
    assert payload["state_dict"]["entropy_bottleneck.quantiles"].dtype == torch.float32
    a, b = load_weights_file(path), load_weights_file(path)
    assert a.codec_id == "cmamba-tiny-test" and weights_hash(a) == weights_hash(b) == weights_hash(model)
    image = np.asarray(Image.open(shared_path("data", "images", "kodak", "kodim03.png")).convert("RGB"))[:64, :96]
    result = codec.encode(a, image, 2)
    np.testing.assert_array_equal(codec.decompress(result.data, b), result.reconstruction)
    with pytest.raises(ValueError, match="no shipped codec weights named 'nope'"):
        load_pretrained("nope")


@pytest.mark.skipif(
    DEFAULT_MODEL_ID not in shipped_models(),
    reason=f"{DEFAULT_MODEL_ID} weights are not shipped in ssm_apps/codecs/weights yet",
)
def test_shipped_default_weights_match_the_published_figures(tmp_path):
    reference = reference_results(DEFAULT_MODEL_ID)
    # the figures may have been measured on the lossless WebP pack of Kodak (same pixels): match by stem
    rows = {r["quality"]: r for r in reference["per_image"] if Path(r["image"]).stem == "kodim01" and "bpp" in r}
    model = load_pretrained(DEFAULT_MODEL_ID)
    src = shared_path("data", "images", "kodak", "kodim01.png")
    image, _ = codec.read_image(src)
    if reference.get("eval_crop"):  # the figures were measured on a centre crop
        side, (h, w) = reference["eval_crop"], image.shape[:2]
        image = np.ascontiguousarray(
            image[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
        )
    target = torch.tensor(image).permute(2, 0, 1)[None].float() / 255
    for quality in (min(rows), max(rows)):
        result = codec.encode(model, image, quality)
        decoded = codec.decompress(result.data, model)
        np.testing.assert_array_equal(decoded, result.reconstruction)
        measured = float(psnr(torch.tensor(decoded).permute(2, 0, 1)[None].float() / 255, target))
        assert result.bpp == pytest.approx(rows[quality]["bpp"], rel=0.02)
        assert measured == pytest.approx(rows[quality]["psnr"], abs=0.05)
    # the CLI with no flag beyond the quality; the model is chosen from the header on decode
    src = tmp_path / "kodim01.png"
    Image.fromarray(image).save(src)
    out, png = tmp_path / "k.ssmc", tmp_path / "k.png"
    assert main(["compress", str(src), str(out), "--quality", str(min(rows))]) == 0
    assert main(["decompress", str(out), str(png)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(png)), codec.encode(model, image, min(rows)).reconstruction)
