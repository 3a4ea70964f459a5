"""Every timm model that ssm_apps registers, the same checks (timm's tests/test_models.py idea): forward,
backward, features_only and forward_intermediates. A new registered backbone is covered without a new
test; give it small constructor arguments in SMALL_KWARGS to keep the run fast."""
from __future__ import annotations

import pytest
import timm
import torch

import ssm_apps.vision  # noqa: F401  (registers the timm models)

SMALL_KWARGS = {  # per defining module: a reduced width / depth
    "ssm_apps.vision.vmamba": dict(dims=8, depths=(1, 1, 1, 1)),
    "ssm_apps.vision.efficientvmamba": dict(dims=8, depths=(1, 1, 1, 1)),
    "ssm_apps.vision.segman": dict(embed_dims=(8, 16, 24, 32), depths=(1, 1, 1, 1), num_heads=(1, 2, 3, 4),
                                   kernel_sizes=(3, 3, 3, 3), img_size=96, projection=32),
}
# per defining module: the input side (SegMAN's attention windows need maps at least as large as them)
SIDE = {"ssm_apps.vision.segman": 96}


def ssm_apps_models() -> list[str]:
    return [n for n in timm.list_models() if timm.models.model_entrypoint(n).__module__.startswith("ssm_apps.")]


MODELS = ssm_apps_models()


def small(name: str) -> dict:
    return SMALL_KWARGS.get(timm.models.model_entrypoint(name).__module__, {})


def side(name: str, default: int) -> int:
    return SIDE.get(timm.models.model_entrypoint(name).__module__, default)


def test_every_family_is_registered():
    assert {n.split("_")[0] for n in MODELS} >= {"vmamba", "efficientvmamba"} and len(MODELS) >= 9


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=4, **small(name)).train()
    s = side(name, 32)
    out = model(torch.randn(2, 3, s, s))
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", MODELS)
def test_features_only_and_forward_intermediates(name):
    torch.manual_seed(0)
    kwargs = small(name)
    feats = timm.create_model(name, features_only=True, **kwargs).eval()
    model = timm.create_model(name, **kwargs).eval()
    s = side(name, 64)
    x = torch.randn(1, 3, s, s)
    with torch.no_grad():
        maps = feats(x)
        assert [m.shape[1] for m in maps] == feats.feature_info.channels()
        assert [s // m.shape[-1] for m in maps] == feats.feature_info.reduction()
        final, inter = model.forward_intermediates(x)
        assert [t.shape[1] for t in inter] == [i["num_chs"] for i in model.feature_info]
        torch.testing.assert_close(final, model.forward_features(x))
        only = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert len(only) == 2
        for a, b in zip(only, inter[-2:]):
            torch.testing.assert_close(a, b)
