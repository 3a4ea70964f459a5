"""Channel-first LayerNorm (``ssm_apps.kernels.norm``) against a float64 ``F.layer_norm`` oracle.

The Triton kernels run on CPU tensors through the Triton interpreter (tests/conftest.py sets
TRITON_INTERPRET=1 before triton is imported), whose tile is 16 elements: with C = 5 or 7
(8 rows of the tile, 3 masked) a program covers 2 pixels, so H*W = 15 leaves a half-masked last
block, and a backward program walks 3 such tiles, across batch rows (B = 2: 16 tiles, the last
program 1).
Maps are fed contiguous, channels_last, as a channel slice (strided, read in place) and
transposed in (H, W) (copied once), with outputs checked for their requested memory layout.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssm_apps.kernels.norm import layer_norm_2d, layer_norm_2d_torch
from ssm_apps.kernels.norm import triton as norm_triton

# (rtol, atol as a fraction of the reference's largest magnitude). bf16 outputs: the interpreter's
# float32 -> bfloat16 cast truncates (up to 2^-7 relative), the compiled one rounds to nearest.
TOL_MAP = {torch.float32: (2e-5, 2e-6), torch.bfloat16: (1.6e-2, 8e-3)}
# dweight / dbias are float32 sums of exactly represented products in both cases
TOL_PARAM = (2e-5, 2e-6)


@pytest.fixture(autouse=True)
def interpreter():
    assert norm_triton._interpreting(), "TRITON_INTERPRET=1 must be set before triton is imported"


def make_map(b: int, c: int, h: int, w: int, layout: str, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """A (b, c, h, w) map with per-pixel offsets and scales, in the given memory layout."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(b, c, h, w, generator=g) * (0.5 + torch.rand(b, 1, h, w, generator=g)) \
        + torch.randn(b, 1, h, w, generator=g)
    if layout == "contiguous":
        x = base
    elif layout == "channels_last":
        x = base.contiguous(memory_format=torch.channels_last)
    elif layout == "channel_slice":  # every other channel of a 2c-channel map: strided, not dense
        x = torch.cat([base, torch.randn_like(base)], dim=1)[:, 0::2]
        x[:] = base
    elif layout == "transposed":  # (H, W) strides that do not collapse: copied once
        x = base.transpose(2, 3).contiguous().transpose(2, 3)
    elif layout == "w1":  # a width-1 map with permuted strides
        x = base.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3)
    else:
        raise ValueError(layout)
    assert torch.equal(x, base)
    return x.to(dtype)


def oracle(x, weight, bias, eps):
    """float64 ``F.layer_norm`` over the channels of the permuted map."""
    xd = x.detach().double().permute(0, 2, 3, 1)
    wd = None if weight is None else weight.detach().double()
    bd = None if bias is None else bias.detach().double()
    return F.layer_norm(xd, (x.shape[1],), wd, bd, eps).permute(0, 3, 1, 2)


def close(actual, expected, tol, name):
    rtol, atol = tol
    torch.testing.assert_close(actual.double(), expected, rtol=rtol, atol=atol * expected.abs().max().item(),
                               msg=lambda m: f"{name}: {m}")


def run_and_check(x, weight, bias, eps=1e-5, seed=1):
    """Forward and every gradient of the Triton path against the float64 oracle."""
    dtype = x.dtype
    x = x.detach().requires_grad_()
    leaves = [t for t in (x, weight, bias) if t is not None]
    y = layer_norm_2d(x, weight, bias, eps, backend="triton")
    assert y.dtype == dtype and y.shape == x.shape
    assert y.is_contiguous(memory_format=torch.channels_last)

    xd = x.detach().double().requires_grad_()
    wd = None if weight is None else weight.detach().double().requires_grad_()
    bd = None if bias is None else bias.detach().double().requires_grad_()
    ref = F.layer_norm(xd.permute(0, 2, 3, 1), (x.shape[1],), wd, bd, eps).permute(0, 3, 1, 2)
    close(y, ref.detach(), TOL_MAP[dtype], "y")

    g = torch.Generator().manual_seed(seed)
    dy = torch.randn(y.shape, generator=g).to(dtype)  # representable in y's dtype
    grads = torch.autograd.grad(y, leaves, dy)
    ref_grads = torch.autograd.grad(ref, [t for t in (xd, wd, bd) if t is not None], dy.double())
    for name, leaf, got, want in zip(("dx", "dweight", "dbias"), leaves, grads, ref_grads):
        assert got.dtype == leaf.dtype and got.shape == leaf.shape, name
        close(got, want, TOL_MAP[dtype] if name == "dx" else TOL_PARAM, name)


def params(c: int, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    weight = (1 + 0.5 * torch.randn(c, generator=g)).requires_grad_()
    bias = (0.5 * torch.randn(c, generator=g)).requires_grad_()
    return weight, bias


@pytest.mark.parametrize("dtype,layout,shape", [
    (torch.float32, "contiguous", (3, 5, 3, 5)),
    (torch.float32, "channels_last", (3, 7, 5, 3)),
    (torch.float32, "channel_slice", (3, 5, 3, 5)),
    (torch.float32, "transposed", (2, 7, 3, 5)),
    (torch.float32, "w1", (2, 5, 7, 1)),
    (torch.bfloat16, "contiguous", (3, 7, 3, 5)),
    (torch.bfloat16, "channels_last", (3, 5, 5, 3)),
])
def test_triton_matches_float64_oracle(dtype, layout, shape):
    weight, bias = params(shape[1])
    run_and_check(make_map(*shape, layout, dtype, seed=0), weight, bias)


def test_triton_without_affine():
    run_and_check(make_map(3, 5, 3, 5, "contiguous", torch.float32, seed=3), None, None, eps=1e-3)


def test_triton_autocast_output_dtype_and_grads():
    """Under autocast: float32 map in, autocast-dtype map out, float32 gradients for x and the parameters."""
    x = make_map(3, 5, 3, 5, "contiguous", torch.float32, seed=4).requires_grad_()
    weight, bias = params(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer_norm_2d(x, weight, bias, backend="triton")
    assert y.dtype == torch.bfloat16
    close(y, oracle(x, weight, bias, 1e-5), TOL_MAP[torch.bfloat16], "y")
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
    grads = torch.autograd.grad(y, (x, weight, bias), dy)
    assert [t.dtype for t in grads] == [torch.float32] * 3
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, weight, bias))
    ref = F.layer_norm(xd.permute(0, 2, 3, 1), (5,), wd, bd, 1e-5).permute(0, 3, 1, 2)
    ref_grads = torch.autograd.grad(ref, (xd, wd, bd), dy.double())
    for name, got, want in zip(("dx", "dweight", "dbias"), grads, ref_grads):
        close(got, want, TOL_MAP[torch.bfloat16] if name == "dx" else TOL_PARAM, name)


@pytest.mark.parametrize("layout,memory_format", [
    ("channels_last", torch.contiguous_format),
    ("contiguous", torch.preserve_format),
    ("channels_last", torch.preserve_format),
])
def test_triton_output_memory_format(layout, memory_format):
    x = make_map(2, 5, 3, 5, layout, torch.float32, seed=6)
    weight, bias = params(5)
    y = layer_norm_2d(x, weight, bias, memory_format=memory_format, backend="triton")
    want_stride = x.stride() if memory_format == torch.preserve_format else x.contiguous().stride()
    assert y.stride() == want_stride
    close(y, oracle(x, weight, bias, 1e-5), TOL_MAP[torch.float32], "y")


def test_torch_backend_is_the_layernorm2d_path():
    """backend "torch" (the CPU default): F.layer_norm of the permuted map, exactly; under autocast in
    the autocast dtype with weight and bias rounded to it."""
    x = make_map(2, 5, 3, 4, "contiguous", torch.float32, seed=7)
    weight, bias = params(5)
    y = layer_norm_2d(x, weight, bias, 1e-5)
    want = F.layer_norm(x.permute(0, 2, 3, 1), (5,), weight, bias, 1e-5).permute(0, 3, 1, 2)
    assert torch.equal(y, want) and y.stride() == want.stride()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y16 = layer_norm_2d_torch(x, weight, bias, 1e-5)
    want16 = F.layer_norm(x.permute(0, 2, 3, 1).bfloat16(), (5,), weight.bfloat16(), bias.bfloat16(), 1e-5)
    assert y16.dtype == torch.bfloat16 and torch.equal(y16, want16.permute(0, 3, 1, 2))


@pytest.mark.parametrize("kwargs,match", [
    ({"x": torch.zeros(2, 5, 3)}, r"argument 'x' must be a \(B, C, H, W\) map; got shape \(2, 5, 3\)"),
    ({"weight": torch.ones(4)}, r"argument 'weight' must have shape \(5,\) \(C of x\); got \(4,\)"),
    ({"bias": torch.ones(5, 1)}, r"argument 'bias' must have shape \(5,\) \(C of x\); got \(5, 1\)"),
    ({"backend": "cuda"}, r"argument 'backend' must be one of \('triton', 'torch'\) or None; got 'cuda'"),
    ({"memory_format": torch.channels_last_3d}, r"argument 'memory_format' must be one of"),
    ({"x": torch.zeros(2, 5, 3, 3, dtype=torch.int32)}, r"argument 'x' must be float16/bfloat16/float32/float64"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    args = {"x": torch.zeros(2, 5, 3, 3), "weight": torch.ones(5), "bias": torch.zeros(5), "backend": "triton"}
    with pytest.raises(ValueError, match=match):
        layer_norm_2d(**{**args, **kwargs})


def test_triton_int64_offsets(monkeypatch):
    """The WIDE variant (int64 offsets inside a batch row, for rows of 2^31+ elements) computes the same."""
    monkeypatch.setattr(norm_triton, "_wide", lambda *args: True)
    weight, bias = params(5)
    run_and_check(make_map(3, 5, 3, 5, "channels_last", torch.float32, seed=8), weight, bias)


def test_triton_backward_of_a_sum_reads_the_expanded_gradient():
    """``y.sum()`` hands the backward an expanded (all-zero strides) dy, read in place."""
    x = make_map(2, 7, 3, 5, "contiguous", torch.float32, seed=9).requires_grad_()
    weight, bias = params(7)
    layer_norm_2d(x, weight, bias, backend="triton").sum().backward()
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, weight, bias))
    F.layer_norm(xd.permute(0, 2, 3, 1), (7,), wd, bd, 1e-5).sum().backward()
    for name, got, want in (("dx", x.grad, xd.grad), ("dweight", weight.grad, wd.grad), ("dbias", bias.grad, bd.grad)):
        close(got, want, TOL_MAP[torch.float32] if name == "dx" else TOL_PARAM, name)


def test_triton_backend_refuses_cpu_tensors_outside_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x = torch.randn(2, 5, 3, 3)
    with pytest.raises(ValueError, match=r"backend 'triton' needs triton and a CUDA tensor .* got a tensor on cpu"):
        layer_norm_2d(x, backend="triton")
    torch.testing.assert_close(layer_norm_2d(x), F.layer_norm(x.permute(0, 2, 3, 1), (5,)).permute(0, 3, 1, 2),
                               rtol=0, atol=0)  # backend None on CPU: the PyTorch path


@pytest.mark.parametrize("channels,tiles", [
    (48, {(1024, 4), (2048, 4), (2048, 8), (4096, 8)}),   # BLOCK_C 64: every tile
    (768, {(1024, 4), (2048, 4), (2048, 8), (4096, 8)}),  # BLOCK_C 1024: BLOCK_P 1 .. 4
    (3000, {(4096, 8)}),                                  # BLOCK_C 4096: one pixel
    (5000, {(8192, 8)}),                                  # BLOCK_C 8192: beyond BWD_TILES
])
def test_backward_autotune_configs_hold_all_channels(channels, tiles):
    """The GPU autotuner times only tiles of all BLOCK_C channels x >= 1 pixel, each with every
    ``BWD_TILES_PER_PROGRAM`` (the interpreter runs the kernel with one fixed small tile instead)."""
    block_c = norm_triton._block_c(channels)
    configs = norm_triton._bwd_configs_for(norm_triton._BWD_CONFIGS, {}, BLOCK_C=block_c)
    got = {(cfg.kwargs["BLOCK_P"] * block_c, cfg.num_warps) for cfg in configs}
    assert got == tiles
    assert len(configs) == len(tiles) * len(norm_triton.BWD_TILES_PER_PROGRAM)
    assert all(cfg.kwargs["BLOCK_P"] >= 1 for cfg in configs)
