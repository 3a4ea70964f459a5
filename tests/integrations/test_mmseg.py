"""The mmseg plug-in: MODELS.build of our backbones / heads gives the same outputs as ours and the official fixture.

mmsegmentation 1.2.2 must be importable (it is not in the shared venv: install it with mmcv-lite 2.1.0
into a separate target and put it on PYTHONPATH); outside CI the test skips without it.
"""
from __future__ import annotations

import os

import pytest
import torch

from ssm_apps.vision.segman import SegMAN, convert_segman_checkpoint
from tests.helpers import REPO, load_fixture

if not os.environ.get("CI"):
    pytest.importorskip("mmseg", reason="mmsegmentation 1.x not installed")

from mmengine.config import Config

from ssm_apps.integrations.mmseg import register


@pytest.fixture(scope="module")
def models():
    register()
    from mmseg.registry import MODELS

    return MODELS


def test_segman_backbone_and_decoder_built_by_mmseg_match_official(models):
    fx = load_fixture("segman_public.pt")
    backbone = models.build(dict(type="SegMANEncoder", **fx["kwargs"]))
    head = models.build(dict(type="SegMANDecoder", **fx["decoder_kwargs"]))
    backbone.load_official(fx["state_dict"])
    ours = SegMAN.from_official(fx["kwargs"], fx["decoder_kwargs"], fx["state_dict"]).eval()
    converted = convert_segman_checkpoint(fx["state_dict"], ours)
    head.decoder.load_state_dict({k[len("decoder."):]: v for k, v in converted.items() if k.startswith("decoder.")},
                                 strict=True)
    backbone.eval(), head.eval()
    x = fx["input"]["x"]
    with torch.no_grad():
        feats = backbone(x)
        assert isinstance(feats, tuple) and len(feats) == 4
        for a, ref in zip(feats, fx["outputs"]["features"]):
            torch.testing.assert_close(a, ref, atol=1e-4, rtol=1e-4)
        logits = head(feats)
        torch.testing.assert_close(logits, fx["outputs"]["logits"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(logits, ours(x), atol=0, rtol=0)


def test_configs_build_and_match_ours(models):
    from ssm_apps.vision.segmentation import SegmentationModel

    cfg = Config.fromfile(str(REPO / "configs/mmseg/upernet_vmamba_tiny_ade20k.py"))
    small = {"dims": 16, "depths": (1, 1, 1, 1)}
    backbone = models.build(dict(cfg.model.backbone, **small))
    head_cfg = dict(cfg.model.decode_head, in_channels=[16, 32, 64, 128], channels=32)
    head = models.build(head_cfg)
    ours = SegmentationModel("vmamba_tiny_s1l8", 150, "upernet", {"channels": 32}, backbone_kwargs=small)
    ours.backbone.load_state_dict(backbone.model.state_dict(), strict=True)
    ours.decode_head.load_state_dict(head.head.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    for m in (backbone, head, ours):
        m.eval()
    with torch.no_grad():
        torch.testing.assert_close(head(backbone(x)), ours(x), atol=0, rtol=0)
    segman_cfg = Config.fromfile(str(REPO / "configs/mmseg/segman_tiny_ade20k.py"))
    with torch.device("meta"):
        n = sum(p.numel() for m in (models.build(segman_cfg.model.backbone), models.build(segman_cfg.model.decode_head))
                for p in m.parameters())
    assert n == 6_397_260
    for name in ("EfficientVMambaBackbone", "UperNetHead", "VMambaBackbone"):
        assert name in models.module_dict
    eff = models.build({"type": "EfficientVMambaBackbone", "arch": "efficientvmamba_tiny", "dims": 16, "depths": (1, 1, 1, 1)})
    with torch.no_grad():
        assert [f.shape[1] for f in eff.eval()(x)] == [16, 32, 64, 128]


def _stub_mmcv_ext():
    """mmcv-lite has no compiled ops; mmseg.models imports mmcv.ops at import time only to bind them.
    A throwaway module whose ops raise when called lets mmseg's pure-PyTorch heads load."""
    import importlib.util
    import sys
    import types

    if "mmcv._ext" in sys.modules or importlib.util.find_spec("mmcv._ext") is not None:
        return
    ext = types.ModuleType("mmcv._ext")
    ext.__file__ = "mmcv_ext_stub"

    def getattr_(name):
        if name.startswith("__"):
            raise AttributeError(name)

        def missing(*args, **kwargs):
            raise RuntimeError(f"mmcv compiled op {name} is not available (mmcv-lite)")
        return missing

    ext.__getattr__ = getattr_
    sys.modules["mmcv._ext"] = ext


def test_upernet_and_fcn_heads_equal_mmseg_uperhead_fcnhead():
    """The oracle: mmseg 1.2.2's own UPerHead / FCNHead with the same (random) weights, strict keys."""
    _stub_mmcv_ext()
    from mmseg.models.decode_heads import FCNHead as MMFCNHead
    from mmseg.models.decode_heads import UPerHead

    from ssm_apps.vision.segmentation_heads import FCNHead, UperNetHead

    g = torch.Generator().manual_seed(0)
    inc = [16, 32, 64, 128]
    bn = {"type": "BN", "requires_grad": True}
    pairs = [
        (UPerHead(in_channels=inc, in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6), channels=32, dropout_ratio=0.1,
                  num_classes=7, norm_cfg=bn, align_corners=False), UperNetHead(inc, 32, 7)),
        (MMFCNHead(in_channels=64, in_index=2, channels=16, num_convs=1, concat_input=False, dropout_ratio=0.1,
                   num_classes=7, norm_cfg=bn, align_corners=False), FCNHead(64, 16, 7, num_convs=1, in_index=2)),
    ]
    feats = [torch.randn(2, c, 64 // 2**i, 80 // 2**i, generator=g) for i, c in enumerate(inc)]
    for ref, ours in pairs:
        sd = {}
        for k, v in ref.state_dict().items():
            if v.is_floating_point():
                v = torch.randn(v.shape, generator=g) * 0.5
                v = v.abs() + 0.5 if k.endswith("running_var") else v
            sd[k] = v
        ref.load_state_dict(sd)
        ours.load_state_dict(sd, strict=True)
        ref.eval(), ours.eval()
        with torch.no_grad():
            torch.testing.assert_close(ours(feats), ref(feats), atol=1e-5, rtol=1e-5)
