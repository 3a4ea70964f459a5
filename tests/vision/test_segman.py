"""SegMAN encoder / decoder / segmentor against the official fixtures, parameter counts, timm API."""
from __future__ import annotations

import pytest
import timm
import torch

import ssm_apps.vision  # noqa: F401  (registers the timm models)
from ssm_apps.convert import ConversionError
from ssm_apps.vision.segman import SEGMAN_ADE_DECODERS, SegMAN, SegMANEncoder
from tests.helpers import load_fixture

TOL = {"atol": 1e-4, "rtol": 1e-4}


@pytest.fixture(scope="module")
def seg_fixture():
    return load_fixture("segman_public.pt")


@pytest.fixture(scope="module")
def cls_fixture():
    return load_fixture("segman_encoder_cls_public.pt")


@pytest.fixture(scope="module")
def segmentor(seg_fixture):
    fx = seg_fixture
    return SegMAN.from_official(fx["kwargs"], fx["decoder_kwargs"], fx["state_dict"]).eval()


def test_segmentor_matches_official(segmentor, seg_fixture):
    x, out = seg_fixture["input"]["x"], seg_fixture["outputs"]
    with torch.no_grad():
        feats = segmentor.encoder(x)
        assert len(feats) == 4
        for ours, ref in zip(feats, out["features"]):
            torch.testing.assert_close(ours, ref, **TOL)
        torch.testing.assert_close(segmentor(x), out["logits"], **TOL)
        torch.testing.assert_close(segmentor.predict(x), out["logits_upsampled"], **TOL)


def test_encoder_classifier_matches_official(cls_fixture):
    fx = cls_fixture
    x, out = fx["input"]["x"], fx["outputs"]
    model = SegMANEncoder.from_official(fx["kwargs"], fx["state_dict"]).eval()
    feats_model = SegMANEncoder.from_official(fx["kwargs"], fx["state_dict"], features_only=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), out["logits"], **TOL)
        torch.testing.assert_close(model.forward_features(x), out["forward_features"], **TOL)
        for ours, ref in zip(feats_model(x), out["features"]):
            torch.testing.assert_close(ours, ref, **TOL)
        _, inter = model.forward_intermediates(x)
        for ours, ref in zip(inter, out["features"]):
            torch.testing.assert_close(ours, ref, **TOL)


def test_segmentation_backbone_loads_into_encoder_features(seg_fixture):
    """The segmentor's ``backbone.*`` alone gives the same stage maps through SegMANEncoder.from_official."""
    fx = seg_fixture
    enc = SegMANEncoder.from_official(fx["kwargs"], fx["state_dict"], features_only=True).eval()
    with torch.no_grad():
        for ours, ref in zip(enc(fx["input"]["x"]), fx["outputs"]["features"]):
            torch.testing.assert_close(ours, ref, **TOL)


def test_non_square_input_two_independent_attention_paths(segmentor, seg_fixture):
    """Official weights on a non-square 96x160 input: the whole segmentor with the gather-based NA
    and with flex_attention (mask_mod/score_mod, a separate implementation of the clamped window and
    bias) agree; stage-4 global bias resized from 7x7 = 49 to 3x5 = 15 tokens; shapes follow the strides.
    (The fixture itself is square; the official code was not run on this input.)"""
    fx = seg_fixture
    flex = SegMAN.from_official(fx["kwargs"], fx["decoder_kwargs"], fx["state_dict"], na_backend="flex").eval()
    x = torch.randn(1, 3, 96, 160, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        feats, flex_feats = segmentor.encoder(x), flex.encoder(x)
        assert [tuple(f.shape[-2:]) for f in feats] == [(24, 40), (12, 20), (6, 10), (3, 5)]
        for a, b in zip(feats, flex_feats):
            torch.testing.assert_close(a, b, **TOL)
        logits = segmentor.decoder(feats)
        assert logits.shape == (1, 5, 12, 20)
        torch.testing.assert_close(logits, flex.decoder(flex_feats), **TOL)


@pytest.mark.parametrize("variant,encoder,segmentor_total,decoder", [
    ("tiny", 3_506_014, 6_397_260, 4_115_926),
    ("small", 25_507_582, 29_424_636, 5_469_414),
    ("base", 45_020_682, 51_802_820, 8_383_650),
    ("large", 80_985_272, 92_335_734, 13_033_894),
])
def test_parameter_counts_equal_official(variant, encoder, segmentor_total, decoder):
    with torch.device("meta"):
        enc = timm.create_model(f"segman_encoder_{variant}")
        seg = SegMAN(f"segman_encoder_{variant}", dict(num_classes=150, **SEGMAN_ADE_DECODERS[variant]))

    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(enc) == encoder
    assert count(seg) == segmentor_total
    assert count(seg.decoder) == decoder


SMALL = {"embed_dims": (16, 32, 48, 64), "depths": (1, 1, 1, 1), "num_heads": (1, 2, 3, 4), "kernel_sizes": (3, 3, 3, 3)}


def test_timm_features_only_intermediates_and_checkpointing():
    model = timm.create_model("segman_encoder_tiny", features_only=True, out_indices=(1, 3))
    assert model.feature_info.channels() == [64, 192]
    assert model.feature_info.reduction() == [8, 32]
    small = timm.create_model("segman_encoder_tiny", num_classes=7, img_size=96, **SMALL)
    small.set_grad_checkpointing(True)
    assert all(stage.grad_checkpointing for stage in small.stages)
    x = torch.randn(2, 3, 96, 128, requires_grad=True)
    logits = small(x)
    assert logits.shape == (2, 7)
    logits.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    small.eval()
    with torch.no_grad():
        last, inter = small.forward_intermediates(x)
    assert [tuple(t.shape[1:]) for t in inter] == [(16, 24, 32), (32, 12, 16), (48, 6, 8), (64, 3, 4)]
    assert last.shape == (2, 64, 3, 4)
    picked = timm.create_model("segman_encoder_tiny", features_only=True, out_indices=(1, 3), img_size=96, **SMALL)
    with torch.no_grad():
        feats = picked(x)
    assert [tuple(f.shape[1:]) for f in feats] == [(32, 12, 16), (64, 3, 4)]


def test_bad_inputs_and_checkpoints_raise_clear_errors(seg_fixture):
    fx = seg_fixture
    model = SegMANEncoder.from_official(fx["kwargs"])
    with pytest.raises(ValueError, match="stage-3 map smaller than its attention window 5"):
        model(torch.randn(1, 3, 64, 96))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(1, 1, 96, 96))
    broken = {k: v for k, v in fx["state_dict"].items() if "linear_c2" not in k}
    with pytest.raises(ConversionError, match="linear_c2"):
        SegMAN.from_official(fx["kwargs"], fx["decoder_kwargs"], broken)
    with pytest.raises(NotImplementedError, match="fused_na"):
        SegMANEncoder.from_official(dict(fx["kwargs"], fused_na=True))
