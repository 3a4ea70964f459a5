"""SS2D / ES2D / SS3D on their own: the pattern is validated at construction, and the fused-pattern
path (per-pixel projections handed to selective_scan_2d / _3d) equals the unfused chain
cross_scan -> low-rank projections -> selective_scan -> cross_merge written out here, on the same
weights, forward and backward."""
from __future__ import annotations

import pytest
import torch

from ssm_apps.kernels import cross_merge, cross_merge_3d, cross_scan, cross_scan_3d, selective_scan
from ssm_apps.layers import ES2D, SS2D, SS3D, LayerNorm2d, Linear2d


def unfused_chain(m: SS2D, x: torch.Tensor) -> torch.Tensor:
    """The official SS2D computation: scan the K routes, project each route with its x_proj and
    the low-rank dt_proj (dt rank R), one selective scan over K*D channels, merge the routes."""
    batch, dim, *sizes = x.shape
    three_d = len(sizes) == 3
    xs = (cross_scan_3d if three_d else cross_scan)(x, m.scan_pattern)  # (B, K, D, L)
    K, L, R, N = xs.shape[1], xs.shape[-1], m.dt_rank, m.d_state
    x_dbl = torch.einsum("kcd,bkdl->bkcl", m.x_proj_weight, xs)
    dt, B, C = torch.split(x_dbl, [R, N, N], dim=2)
    dts = torch.einsum("kdr,bkrl->bkdl", m.dt_projs_weight, dt)
    ys = selective_scan(
        xs.reshape(batch, K * dim, L), dts.reshape(batch, K * dim, L), -torch.exp(m.A_logs.float()),
        B.contiguous(), C.contiguous(), D=m.Ds.float(), delta_bias=m.dt_projs_bias.float().reshape(-1),
        delta_softplus=True, backend="ref",
    )
    merge = cross_merge_3d if three_d else cross_merge
    return merge(ys.view(batch, K, dim, L), m.scan_pattern, tuple(sizes))


@pytest.mark.parametrize("pattern,sizes,k", [
    ("cross4", (5, 6), 4), ("bidi", (3, 4), 2), ("omni8", (4, 3), 8), ("tri6", (2, 3, 4), 6),
])
def test_fused_path_equals_unfused_chain_forward_and_backward(pattern, sizes, k):
    torch.manual_seed(0)
    layer = SS3D if len(sizes) == 3 else SS2D
    m = layer(6, d_state=3, ssm_ratio=1.0, dt_rank=2, scan_pattern=pattern)
    assert m.fused and m.num_routes == k and m.x_proj_weight.shape == (k, 2 + 2 * 3, 6)
    x = torch.randn(2, 6, *sizes, requires_grad=True)
    out = m.scan(x)
    want = unfused_chain(m, x)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    params = [m.x_proj_weight, m.dt_projs_weight, m.dt_projs_bias, m.A_logs, m.Ds]
    got = torch.autograd.grad(out, [x, *params], g)
    ref = torch.autograd.grad(want, [x, *params], g)
    for name, a, b in zip(["x", "x_proj_weight", "dt_projs_weight", "dt_projs_bias", "A_logs", "Ds"], got, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_atrous_runs_the_unfused_chain():
    torch.manual_seed(1)
    m = ES2D(4, d_state=2, ssm_ratio=1.0)
    assert not m.fused and m.scan_pattern == "atrous"
    x = torch.randn(1, 4, 5, 7)  # odd sizes: zero-padded to even, cropped back
    torch.testing.assert_close(m.scan(x), unfused_chain(m, x), rtol=1e-5, atol=1e-5)
    assert m(torch.randn(1, 5, 7, 4)).shape == (1, 5, 7, 4)


@pytest.mark.parametrize("kwargs,message", [
    (dict(scan_pattern="nonsense"), r"SS2D: argument 'scan_pattern' must be one of \('cross4', 'bidi', 'omni8', "
                                    r"'atrous'\) for spatial_dims=2; got 'nonsense'"),
    (dict(scan_pattern="tri6"), r"must be one of .* for spatial_dims=2; got 'tri6'"),
    (dict(scan_pattern="cross4", spatial_dims=3), r"must be one of \('tri6',\) for spatial_dims=3; got 'cross4'"),
    (dict(spatial_dims=1), r"argument 'spatial_dims' must be 2 or 3; got 1"),
    (dict(forward_type="v9"), r"argument 'forward_type' must be one of \('v05_noz', 'v0'\); got 'v9'"),
])
def test_bad_settings_raise_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SS2D(8, **kwargs)


def test_layouts_and_input_rank():
    torch.manual_seed(2)
    assert SS2D(4)(torch.randn(1, 4, 3, 5)).shape == (1, 4, 3, 5)  # v05_noz: channel-first
    assert SS2D(4, forward_type="v0")(torch.randn(1, 3, 5, 4)).shape == (1, 3, 5, 4)  # v0: channel-last
    assert SS3D(4)(torch.randn(1, 4, 2, 3, 3)).shape == (1, 4, 2, 3, 3)
    assert SS3D(4, forward_type="v0")(torch.randn(1, 2, 3, 3, 4)).shape == (1, 2, 3, 3, 4)
    assert isinstance(SS3D(4).conv2d, torch.nn.Conv3d)
    with pytest.raises(ValueError, match=r"SS3D: input must be \(B, C, \*spatial\) with 3 spatial dims; got \(1, 4, 3, 3\)"):
        SS3D(4)(torch.randn(1, 4, 3, 3))


def test_channel_first_norm_and_linear_match_their_channel_last_forms():
    torch.manual_seed(3)
    for shape in ((2, 5, 3, 4), (2, 5, 2, 3, 4)):
        x = torch.randn(*shape)
        norm, lin = LayerNorm2d(5), Linear2d(5, 7)
        with torch.no_grad():
            norm.weight.normal_()
            norm.bias.normal_()
        want_norm = torch.nn.functional.layer_norm(x.movedim(1, -1), (5,), norm.weight, norm.bias).movedim(-1, 1)
        torch.testing.assert_close(norm(x), want_norm)
        want_lin = (x.movedim(1, -1) @ lin.weight.t() + lin.bias).movedim(-1, 1)
        torch.testing.assert_close(lin(x), want_lin, rtol=1e-5, atol=1e-5)
