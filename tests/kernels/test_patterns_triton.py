"""Triton scan-pattern kernels (``kernels.patterns.triton``), run on CPU by the Triton interpreter.

Every result must be bit-identical (``torch.equal``) to the PyTorch backend of
``kernels.patterns``: scans, merges (same summation order and accumulation dtype) and
gradients (each op's backward is the other op). The interpreter is switched on
by tests/conftest.py, before anything imports triton.

The interpreter's tile is 2 channels x 32 steps (patterns.triton.INTERPRET_BLOCK_*), so in
the forward tests c = 3 leaves a half-masked channel block and L = 35 two step blocks, the
last partial; the gradient tests (the same kernels) use one larger tile to save time.
"""
from __future__ import annotations

import pytest
import torch

from ssm_apps.kernels import _backend
from ssm_apps.kernels.patterns import (
    PATTERNS_2D,
    autograd,
    cross_merge,
    cross_merge_3d,
    cross_merge_3d_triton,
    cross_merge_triton,
    cross_scan,
    cross_scan_3d,
    cross_scan_3d_triton,
    cross_scan_triton,
    maps,
    scan_length,
)
from ssm_apps.kernels.patterns import triton as pt

DTYPES = [torch.float32, torch.bfloat16]
# (H, W) per pattern: odd sizes everywhere; atrous also on an even grid (no padding)
SIZES = {"cross4": [(5, 7)], "bidi": [(5, 7)], "omni8": [(5, 7)], "atrous": [(5, 7), (4, 6)]}
CASES_2D = [(p, hw) for p in sorted(PATTERNS_2D) for hw in SIZES[p]]
DHW = (3, 4, 5)
NO_INTERPRETER_NEEDED = {"test_route_maps_follow_the_index_map", "test_dispatch_on_cpu"}


@pytest.fixture(autouse=True)
def interpreter_on(request):
    if request.node.originalname in NO_INTERPRETER_NEEDED:
        return
    assert _backend.interpreting(), "TRITON_INTERPRET=1 must be set before triton is imported"


def _randn(*shape: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Normal values over several binades, so that merged sums round in fp32 and in bf16."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.logspace(-3, 3, shape[-1], dtype=torch.float64)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def _assert_equal(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert got.shape == ref.shape and got.dtype == ref.dtype and got.is_contiguous()
    assert torch.equal(got, ref), f"max |diff| {(got.double() - ref.double()).abs().max().item():.3e}"


# ----------------------------------------------------------------------------- maps and dispatch


@pytest.mark.parametrize("sizes", [(5, 7), (4, 6), (1, 1), DHW])
def test_route_maps_follow_the_index_map(sizes):
    """src / inv are the index map re-expressed for the unpadded map, and its inverse."""
    patterns = ["tri6"] if len(sizes) == 3 else sorted(PATTERNS_2D)
    for pattern in patterns:
        index = maps.index_cpu(pattern, sizes)
        src, inv = maps.route_maps(pattern, sizes, torch.device("cpu"))
        assert src.dtype == inv.dtype == torch.int32 and src.shape == index.shape
        grid = maps.grid_sizes(pattern, sizes)
        cells = torch.stack(torch.unravel_index(index, grid), -1)  # (K, L, ndim) grid coordinates
        inside = (cells < torch.tensor(sizes)).all(-1)
        flat = torch.zeros_like(index)
        for d, size in enumerate(sizes):
            flat = flat * size + cells[..., d]
        assert torch.equal(src.long(), torch.where(inside, flat, -1))
        k, length = index.shape
        assert inv.shape == (k, torch.tensor(sizes).prod().item())
        for r in range(k):
            visited = src[r][src[r] >= 0].long()
            assert torch.equal(inv[r, visited].long(), torch.arange(length)[src[r] >= 0])
            assert (inv[r] >= 0).sum().item() == visited.numel()  # nothing else


def test_dispatch_on_cpu(monkeypatch):
    """CPU tensors take the PyTorch path (patterns.triton is not touched); backend checks."""
    x = _randn(1, 2, 3, 5, seed=0, dtype=torch.float32)
    assert _backend.pick_backend("cross_scan", None, x.device, ("torch", "triton")) == "torch"
    calls = []
    for name in ("scan_torch", "merge_torch"):
        orig = getattr(autograd, name)
        monkeypatch.setattr(autograd, name, lambda *a, _o=orig, _n=name: calls.append(_n) or _o(*a))
    ys = cross_scan(x, "omni8")
    cross_merge(ys, "omni8", (3, 5))
    cross_merge_3d(cross_scan_3d(x.view(1, 2, 1, 3, 5)), "tri6", (1, 3, 5))
    assert calls == ["scan_torch", "merge_torch"] * 2
    with pytest.raises(RuntimeError, match="backend 'triton' needs a CUDA tensor"):
        cross_scan(x, "cross4", backend="triton")
    with pytest.raises(ValueError, match="argument 'backend' must be one of"):
        cross_merge(ys, "omni8", (3, 5), backend="cuda")


def test_dispatch_picks_triton_when_available(monkeypatch):
    """Where triton_available(device) holds (CUDA), the default backend runs the Triton kernels."""
    monkeypatch.setattr(_backend, "triton_available", lambda device: True)
    calls = []
    for name in ("scan_routes", "merge_routes"):
        orig = getattr(pt, name)
        monkeypatch.setattr(pt, name, lambda *a, _o=orig, _n=name: calls.append(_n) or _o(*a))
    x = _randn(1, 2, 3, 5, seed=1, dtype=torch.float32).requires_grad_()
    y = cross_merge(cross_scan(x, "cross4"), "cross4", (3, 5))
    y.backward(torch.ones_like(y))
    assert calls == ["scan_routes", "merge_routes", "scan_routes", "merge_routes"]


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pattern, hw", CASES_2D)
def test_scan_and_merge_2d_bit_identical(pattern, hw, dtype):
    x = _randn(2, 3, *hw, seed=2, dtype=dtype)
    _assert_equal(cross_scan_triton(x, pattern), cross_scan(x, pattern, backend="torch"))
    ys = _randn(2, PATTERNS_2D[pattern], 3, scan_length(pattern, hw), seed=3, dtype=dtype)
    _assert_equal(cross_merge_triton(ys, pattern, hw), cross_merge(ys, pattern, hw, backend="torch"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_scan_and_merge_3d_bit_identical(dtype):
    x = _randn(2, 3, *DHW, seed=4, dtype=dtype)
    _assert_equal(cross_scan_3d_triton(x, "tri6"), cross_scan_3d(x, "tri6", backend="torch"))
    ys = _randn(2, 6, 3, 60, seed=5, dtype=dtype)
    _assert_equal(cross_merge_3d_triton(ys, "tri6", DHW), cross_merge_3d(ys, "tri6", DHW, backend="torch"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_other_dtypes(dtype):
    x = _randn(1, 3, 5, 7, seed=6, dtype=dtype)
    _assert_equal(cross_scan_triton(x, "omni8"), cross_scan(x, "omni8"))
    ys = _randn(1, 8, 3, 35, seed=7, dtype=dtype)
    _assert_equal(cross_merge_triton(ys, "omni8", (5, 7)), cross_merge(ys, "omni8", (5, 7)))


def test_non_contiguous_inputs():
    x = _randn(2, 3, 7, 5, seed=8, dtype=torch.bfloat16).transpose(-1, -2)  # (2, 3, 5, 7) view
    for pattern in ("cross4", "atrous"):
        _assert_equal(cross_scan_triton(x, pattern), cross_scan(x.contiguous(), pattern))
        ys = cross_scan(x, pattern).transpose(0, 2).contiguous().transpose(0, 2)
        assert not ys.is_contiguous()
        _assert_equal(cross_merge_triton(ys, pattern, (5, 7)), cross_merge(ys.contiguous(), pattern, (5, 7)))
    v = _randn(1, 2, 5, 4, 3, seed=9, dtype=torch.float32).permute(0, 1, 4, 3, 2)  # (1, 2, 3, 4, 5) view
    _assert_equal(cross_scan_3d_triton(v), cross_scan_3d(v.contiguous()))


def test_argument_errors_name_the_entry_point():
    with pytest.raises(ValueError, match="cross_scan_triton: argument 'pattern'"):
        cross_scan_triton(torch.zeros(1, 2, 3, 4), "tri6")
    with pytest.raises(ValueError, match=r"cross_merge_triton: argument 'ys' must be \(b, K, c, L_k\)"):
        cross_merge_triton(torch.zeros(1, 3, 2, 12), "cross4", (3, 4))
    with pytest.raises(ValueError, match="cross_merge_3d_triton: argument 'dhw'"):
        cross_merge_3d_triton(torch.zeros(1, 6, 2, 12), "tri6", (3, 4))


# ----------------------------------------------------------------------------- gradients


@pytest.fixture
def one_tile(monkeypatch):
    """A 4 x 64 interpreter tile: a single program per (batch, route) at these sizes (faster)."""
    monkeypatch.setattr(pt, "INTERPRET_BLOCK_C", 4)
    monkeypatch.setattr(pt, "INTERPRET_BLOCK_N", 64)


def _grads(scan, merge, x, g_ys, g_x, composed=False):
    """d<scan(x), g_ys>/dx, d<merge(ys), g_x>/dys, (and d<merge(scan(x)), g_x>/dx)."""
    x = x.detach().requires_grad_()
    (gx,) = torch.autograd.grad(scan(x), x, g_ys)
    ys = g_ys.detach().requires_grad_()
    (gys,) = torch.autograd.grad(merge(ys), ys, g_x)
    if not composed:
        return gx, gys
    (gxx,) = torch.autograd.grad(merge(scan(x)), x, g_x)
    return gx, gys, gxx


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pattern, hw", [c for c in CASES_2D if c[1] != (4, 6)])
def test_gradients_2d_bit_identical(pattern, hw, dtype, one_tile):
    x = _randn(2, 3, *hw, seed=10, dtype=dtype)
    g_ys = _randn(2, PATTERNS_2D[pattern], 3, scan_length(pattern, hw), seed=11, dtype=dtype)
    g_x = _randn(2, 3, *hw, seed=12, dtype=dtype)
    got = _grads(lambda t: cross_scan_triton(t, pattern), lambda t: cross_merge_triton(t, pattern, hw),
                 x, g_ys, g_x)
    ref = _grads(lambda t: cross_scan(t, pattern, backend="torch"),
                 lambda t: cross_merge(t, pattern, hw, backend="torch"), x, g_ys, g_x)
    for a, b in zip(got, ref):
        _assert_equal(a, b)
    _assert_equal(got[0], cross_merge(g_ys, pattern, hw))  # the backward of the scan is the merge


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_3d_bit_identical(dtype, one_tile):
    x = _randn(1, 2, *DHW, seed=13, dtype=dtype)
    g_ys = _randn(1, 6, 2, 60, seed=14, dtype=dtype)
    g_x = _randn(1, 2, *DHW, seed=15, dtype=dtype)
    got = _grads(cross_scan_3d_triton, lambda t: cross_merge_3d_triton(t, "tri6", DHW), x, g_ys, g_x, True)
    ref = _grads(lambda t: cross_scan_3d(t, backend="torch"),
                 lambda t: cross_merge_3d(t, "tri6", DHW, backend="torch"), x, g_ys, g_x, True)
    for a, b in zip(got, ref):
        _assert_equal(a, b)


def test_double_backward(one_tile):
    """The backward is itself differentiable (it is the other Triton op); atrous pads (1, 3) to (2, 4)."""
    x = _randn(1, 1, 1, 3, seed=16, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda t: cross_merge_triton(cross_scan_triton(t, "atrous"),
                                                                        "atrous", (1, 3)), (x,))
