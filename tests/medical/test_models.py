"""HyMamba / MambaMIM against the official fixtures, TOKI and MambaND against independent oracles."""
from __future__ import annotations

import copy
import re

import pytest
import torch

from ssm_apps.layers.mamba_nd import MambaND
from ssm_apps.medical import HyMamba, MambaMIM, create_hymamba
from ssm_apps.medical.blocks import MambaStage, sincos_position_embedding
from ssm_apps.medical.mambamim import random_mask, toki_interpolate
from tests.helpers import load_fixture
from tests.helpers.oracle import selective_scan_oracle

TOL = 1e-4


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


@pytest.fixture(scope="module")
def seg_fixture():
    return load_fixture("mambamim_seg_public.pt")


@pytest.fixture(scope="module")
def mim_fixture():
    return load_fixture("mambamim_mim_public.pt")


def test_hymamba_matches_official(seg_fixture):
    d = seg_fixture
    model = HyMamba.from_official(d["kwargs"], d["state_dict"]).eval()
    x, out = d["input"]["x"], d["outputs"]
    with torch.no_grad():
        inter = model.encoder.forward_intermediates(x)
        logits = model.decoder([*inter["skips"], inter["mamba"]])
    assert _max_err(logits, out["logits"]) <= TOL
    assert _max_err(inter["skips"][3], out["x4"]) <= TOL
    assert _max_err(inter["deep"], out["x5_embed"]) <= TOL
    assert _max_err(inter["mamba"], out["x5_mamba"]) <= TOL
    # the official backward-branch Mamba parameters (unused by bimamba "v1") are the only tensors not loaded
    ours = sum(v.numel() for v in model.state_dict().values())
    unused = sum(v.numel() for k, v in d["state_dict"].items()
                 if re.search(r"mamba\.(A_b_log|D_b|conv1d_b|x_proj_b|dt_proj_b)", k))
    assert ours + unused == sum(v.numel() for v in d["state_dict"].values())


def test_mambamim_matches_official(mim_fixture):
    d = mim_fixture
    model = MambaMIM.from_official(d["kwargs"], d["state_dict"])
    x, active, out = d["input"]["x"], d["input"]["active_b1fff"], d["outputs"]
    with torch.no_grad():
        model.eval()
        official = model(x, active, ids_shuffle=out["ids_shuffle"])
        stable = model(x, active)
        model.train()
        train = model(x, active, ids_shuffle=out["ids_shuffle"])
    assert official["reconstruction"].shape == x.shape
    assert abs(official["loss"].item() - out["loss_eval_mode"].item()) <= TOL
    assert _max_err(official["reconstruction"], out["rec_eval_mode"]) <= TOL
    assert _max_err(official["mamba"], out["x5_mamba"]) <= TOL
    assert _max_err(official["toki"], out["toki_tokens"]) <= TOL
    assert abs(stable["loss"].item() - out["stable_order_loss_eval_mode"].item()) <= TOL
    assert _max_err(stable["mamba"], out["stable_order_x5_mamba"]) <= TOL
    assert _max_err(stable["toki"], out["stable_order_toki_tokens"]) <= TOL
    assert abs(train["loss"].item() - out["loss_train_mode"].item()) <= TOL
    # the official run kept sum(mask) over the batch = 14 tokens per sample
    assert model.keep_ids(active).shape[1] == int(out["mamba_tokens_in"])


def toki_oracle(tokens: torch.Tensor, active: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """The TOKI formula, one position at a time, float64: (C, L) per sample."""
    c, length = tokens.shape[0], tokens[0].numel()
    X = tokens.reshape(c, length).double().T
    A = A.double()
    flags = active.flatten().tolist()
    flags[0] = flags[-1] = True
    idx = [i for i, f in enumerate(flags) if f]
    z = torch.zeros(length, c, dtype=torch.float64)
    for p, q in zip(idx[:-1], idx[1:]):
        g = q - p
        for k in range(g):
            acc = torch.zeros(c, dtype=torch.float64)
            for m in range(k + 1):
                a = m / (g - 1) if g > 1 else 0.0
                acc += torch.linalg.matrix_power(A, g - 1 - m) @ ((1 - a) * X[p] + a * X[q])
            z[p + k] = acc
    z[-1] = A @ X[-1]
    return z


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_toki_matches_formula(seed):
    g = torch.Generator().manual_seed(seed)
    b, c, grid = 3, 5, (3, 2, 4)
    tokens = torch.randn(b, c, *grid, generator=g)
    active = torch.rand(b, 1, *grid, generator=g) < 0.35
    active[0, 0, 0, 0, 0] = False  # first position masked in one sample, visible neighbours in others
    active[1, 0, 0, 0, :2] = True
    A = 0.4 * torch.randn(c, c, generator=g)
    ours = toki_interpolate(tokens, active, A)
    scrambled = toki_interpolate(tokens, active, A, official_reshape=True)
    for i in range(b):
        z = toki_oracle(tokens[i], active[i], A)  # (L, C)
        assert _max_err(ours[i].reshape(c, -1).T, z) < 1e-5
        assert _max_err(scrambled[i].flatten(), z.flatten()) < 1e-5  # official: (L, C) buffer read as (C, L)
    A_param = A.clone().requires_grad_(True)
    toki_interpolate(tokens, active, A_param).square().sum().backward()
    assert A_param.grad is not None and A_param.grad.abs().sum() > 0


def _route_orders(d: int, h: int, w: int) -> list[list[int]]:
    """tri6 from its definition: the D-H-W, H-W-D and W-D-H loop orders and their reverses (flat p = (d, h, w))."""
    flat = lambda i, j, k: (i * h + j) * w + k
    dhw = [flat(i, j, k) for i in range(d) for j in range(h) for k in range(w)]
    hwd = [flat(i, j, k) for j in range(h) for k in range(w) for i in range(d)]
    wdh = [flat(i, j, k) for k in range(w) for i in range(d) for j in range(h)]
    return [dhw, hwd, wdh, dhw[::-1], hwd[::-1], wdh[::-1]]


def test_mamba_nd_tri6_matches_route_by_route_oracle():
    torch.manual_seed(0)
    layer32 = MambaND(4, "tri6", d_state=3, expand=1.5)
    x32 = torch.randn(2, 2, 3, 2, 4, requires_grad=True)
    y = layer32(x32)
    # oracle: each route scanned separately in float64 by the sequential oracle, scattered back and summed
    layer = copy.deepcopy(layer32).double()
    x = x32.detach().double().requires_grad_(True)
    u, z = layer.in_proj(x).chunk(2, dim=-1)
    u = torch.nn.functional.silu(layer.conv(u.movedim(-1, 1))).flatten(2)  # (b, d_inner, L)
    r, n, di = layer.dt_rank, layer.d_state, layer.d_inner
    merged = torch.zeros_like(u)
    for k, order in enumerate(_route_orders(2, 3, 2)):
        us = u[:, :, order]
        dbl = torch.einsum("bcl,rc->brl", us, layer.x_proj_weight[k])
        dt, B, C = dbl[:, :r], dbl[:, r:r + n], dbl[:, r + n:]
        delta = torch.einsum("brl,cr->bcl", dt, layer.dt_projs_weight[k])
        ys, _ = selective_scan_oracle(us, delta, -torch.exp(layer.A_logs[k * di:(k + 1) * di]), B, C,
                                      D=layer.Ds[k * di:(k + 1) * di], delta_bias=layer.dt_projs_bias[k],
                                      delta_softplus=True)
        merged[:, :, order] += ys
    ref = layer.out_proj(layer.out_norm(merged.transpose(1, 2).reshape(x.shape[:-1] + (di,)))
                         * torch.nn.functional.silu(z))
    assert _max_err(y, ref) < 1e-5
    gx, = torch.autograd.grad(y.square().sum(), x32)
    gr, = torch.autograd.grad(ref.square().sum(), x)
    assert _max_err(gx, gr) < 1e-4


def test_mamba_stage_runs_only_kept_tokens():
    torch.manual_seed(0)
    stage = MambaStage(12, 1, (2, 2, 2)).eval()
    x = torch.randn(2, 12, 2, 2, 2)
    keep = torch.tensor([[1, 4, 6], [0, 3, 7]])
    fill = torch.randn(12)
    out = stage(x, keep, fill).flatten(2).transpose(1, 2)
    tokens = x.flatten(2).transpose(1, 2) + sincos_position_embedding((2, 2, 2), 12)
    for i in range(2):
        ref = stage.layers[0](tokens[i:i + 1, keep[i]])
        assert _max_err(out[i, keep[i]], ref[0]) < 1e-5
        others = [j for j in range(8) if j not in keep[i].tolist()]
        assert torch.equal(out[i, others], fill.expand(len(others), 12))


def test_mambamim_sparse_encoder_and_gradients():
    torch.manual_seed(0)
    model = MambaMIM(channels=(4, 4, 8, 8, 12), depths=(1, 1, 1, 1, 1), exp_r=(2, 2, 2, 2, 2), img_size=32,
                     depth=1, decoder_width=32)
    x = torch.rand(2, 1, 32, 32, 32)
    active = random_mask(2, (2, 2, 2), 0.75)
    assert active.flatten(1).sum(1).tolist() == [2, 2]
    out = model(x, active)
    feats = model.encoder(x * active.repeat_interleave(16, 2).repeat_interleave(16, 3).repeat_interleave(16, 4),
                          active, model.keep_ids(active), model.mamba_mask_token)
    for f in feats[:4]:  # sparse CNN skips are exactly zero at masked positions
        hidden = ~active.repeat_interleave(f.shape[2] // 2, 2).repeat_interleave(f.shape[3] // 2, 3) \
            .repeat_interleave(f.shape[4] // 2, 4)
        assert f.masked_select(hidden).abs().max() == 0
    out["loss"].backward()
    assert model.A_interpolation.grad is not None and model.mamba_mask_token.grad is not None
    assert torch.isfinite(out["loss"]) and out["reconstruction"].shape == x.shape
    with pytest.raises(ValueError, match="active"):
        model(x, active[:, :, :1])


@pytest.mark.parametrize("scan", ["raster", "tri6"])
def test_hymamba_3d_shapes_and_backward(scan):
    model = create_hymamba("hymamba_tiny", img_size=(16, 32, 32), out_channels=3, scan=scan)
    x = torch.randn(1, 1, 16, 32, 32, requires_grad=True)
    y = model(x)
    assert y.shape == (1, 3, 16, 32, 32)
    y.mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_hymamba_2d_and_errors():
    model = HyMamba(in_channels=1, out_channels=2, img_size=32, channels=(4, 4, 8, 8, 12), depths=(1, 1, 1, 1, 1),
                    exp_r=(2, 2, 2, 2, 2), depth=1, spatial_dims=2, scan="cross4")
    assert model(torch.randn(2, 1, 32, 48)).shape == (2, 2, 32, 48)  # another grid: sin-cos on the fly
    with pytest.raises(ValueError, match="multiple of 16"):
        model(torch.randn(1, 1, 30, 32))
    with pytest.raises(ValueError, match="pattern"):
        HyMamba(scan="zigzag")


def test_official_preset_parameter_count():
    model = create_hymamba("hymamba_official")
    n = sum(p.numel() for p in model.parameters())
    assert n == 41_441_774, n  # the official model also holds 316,416 unused backward-branch Mamba
    # parameters and the 82,944-value sin-cos table as parameters: 41,841,134 in all
