"""Mamba / BiMamba: official parity, initialisation rules, bidirectional composition."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssm_apps.layers import BiMamba, Mamba
from tests.helpers import load_fixture


@pytest.mark.parametrize("backend", ["ref", "torch"])
def test_mamba_matches_official_fixture(backend):
    fx = load_fixture("mamba_block_public.pt")
    model = Mamba.from_official(fx["kwargs"], fx["state_dict"]).eval()
    model.scan_backend = backend
    assert list(model.state_dict()) == list(fx["state_dict"])  # same names, same order
    with torch.no_grad():
        out = model(fx["input"]["hidden_states"])
    torch.testing.assert_close(out, fx["outputs"]["out"], rtol=0, atol=1e-5)


def test_mamba_initialisation_rules():
    torch.manual_seed(0)
    m = Mamba(d_model=64, d_state=16, expand=2, dt_min=1e-3, dt_max=1e-1)
    assert m.dt_proj.in_features == math.ceil(64 / 16)
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 1e-1 * (1 + 1e-4)
    # log-uniform: log(dt) spread over the whole range, roughly uniformly
    logs = torch.log(dt)
    assert logs.min() < math.log(2e-3) and logs.max() > math.log(5e-2)
    torch.testing.assert_close(-torch.exp(m.A_log), -torch.arange(1, 17.0).repeat(128, 1))
    torch.testing.assert_close(m.D, torch.ones(128))
    bound = m.dt_proj.in_features**-0.5
    assert m.dt_proj.weight.abs().max() <= bound
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "A_log": (128, 16), "D": (128,), "in_proj.weight": (256, 64), "conv1d.weight": (128, 1, 4),
        "conv1d.bias": (128,), "x_proj.weight": (4 + 32, 128), "dt_proj.weight": (128, 4),
        "dt_proj.bias": (128,), "out_proj.weight": (64, 128),
    }


def _mamba_from(bi: BiMamba, suffix: str) -> Mamba:
    """A Mamba holding BiMamba-v2's shared projections and one direction's SSM parameters."""
    m = Mamba(bi.d_model, d_state=bi.A_log.shape[1], d_conv=bi.conv1d.kernel_size[0], expand=bi.d_inner / bi.d_model)
    names = {"conv1d": f"conv1d{suffix}", "x_proj": f"x_proj{suffix}", "dt_proj": f"dt_proj{suffix}",
             "A_log": "A_b_log" if suffix else "A_log", "D": f"D{suffix}"}
    sd = {}
    for key in m.state_dict():
        head, _, tail = key.partition(".")
        src = names.get(head, head)
        sd[key] = bi.state_dict()[f"{src}.{tail}" if tail else src]
    m.load_state_dict(sd)
    return m


def test_bimamba_v2_is_average_of_two_directions():
    torch.manual_seed(1)
    bi = BiMamba(d_model=12, d_state=4, mode="v2").eval()
    x = torch.randn(2, 15, 12)
    fwd, bwd = _mamba_from(bi, ""), _mamba_from(bi, "_b")
    expected = (fwd(x) + bwd(x.flip(1)).flip(1)) / 2  # out_proj has no bias, so it commutes with the mean
    torch.testing.assert_close(bi(x), expected, rtol=1e-5, atol=1e-6)
    assert {"conv1d_b.weight", "x_proj_b.weight", "dt_proj_b.weight", "A_b_log", "D_b"} <= set(bi.state_dict())


def test_bimamba_sum_is_forward_plus_reversed():
    torch.manual_seed(2)
    bi = BiMamba(d_model=8, d_state=2, d_conv=2, expand=1, mode="sum").eval()
    x = torch.randn(3, 11, 8)
    torch.testing.assert_close(bi(x), bi.fwd(x) + bi.bwd(x.flip(1)).flip(1))
    # the two directions really differ: reversing the input does not give the reversed output
    assert not torch.allclose(bi.fwd(x.flip(1)).flip(1), bi.fwd(x), atol=1e-3)


def test_layers_reject_bad_input():
    with pytest.raises(ValueError, match=r"'hidden_states' must be \(b, L, d_model=8\); got \(2, 5, 7\)"):
        Mamba(8)(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match="'mode' must be 'v2' or 'sum'"):
        BiMamba(8, mode="v1")


def test_layer_norm_2d_fp32_and_under_bf16_autocast_against_float64():
    """Channel LayerNorm of a (B, C, H, W) map: exact F.layer_norm in fp32; under bf16 autocast it runs in
    bf16 (float32 statistics) and stays within bf16 tolerance, gradients included."""
    from ssm_apps.layers.ss2d import LayerNorm2d

    torch.manual_seed(0)
    ln = LayerNorm2d(12)
    torch.nn.init.normal_(ln.weight)
    torch.nn.init.normal_(ln.bias)
    x = torch.randn(2, 12, 5, 7, requires_grad=True)
    x64 = x.detach().double().requires_grad_()
    w64, b64 = ln.weight.detach().double().requires_grad_(), ln.bias.detach().double().requires_grad_()
    ref = F.layer_norm(x64.permute(0, 2, 3, 1), (12,), w64, b64, ln.eps).permute(0, 3, 1, 2)
    grad = torch.randn_like(ref)
    (ref * grad).sum().backward()

    torch.testing.assert_close(ln(x).double(), ref.detach(), rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ln(x)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    torch.testing.assert_close(y.double(), ref.detach(), rtol=3e-2, atol=5e-2)
    (y.double() * grad).sum().backward()
    assert x.grad.dtype == torch.float32 and ln.weight.grad.dtype == torch.float32
    # weight/bias gradients are sums over B*H*W bf16 products: compare as relative L2 errors
    for name, got, want in (("x", x.grad, x64.grad), ("weight", ln.weight.grad, w64.grad), ("bias", ln.bias.grad, b64.grad)):
        rel = ((got.double() - want).norm() / want.norm()).item()
        assert rel < 2e-2, f"gradient of {name}: relative L2 error {rel:.3g}"
