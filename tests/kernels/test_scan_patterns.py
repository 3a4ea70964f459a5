"""Scan patterns: cross_scan / cross_merge (2-D) and their 3-D versions.

The oracles walk the map with plain Python loops written from the pattern
definitions; they never use the module's index maps.
"""
from __future__ import annotations

import pytest
import torch

from ssm_apps.kernels.patterns import (
    PATTERNS_2D,
    PATTERNS_3D,
    cross_merge,
    cross_merge_3d,
    cross_scan,
    cross_scan_3d,
    scan_index,
    scan_index_3d,
    scan_length,
)

SIZES_2D = [(1, 1), (1, 5), (5, 1), (2, 2), (3, 4), (5, 7), (6, 6)]
SIZES_3D = [(2, 3, 4), (3, 1, 5), (1, 1, 1)]


# ----------------------------------------------------------------------------- loop oracles


def _routes_2d(pattern: str, H: int, W: int) -> list[list[tuple[int, int]]]:
    """The (h, w) cells each route visits, in order; atrous cells are in the padded grid."""
    row = [(h, w) for h in range(H) for w in range(W)]
    col = []
    for w in range(W):
        for h in range(H):
            col.append((h, w))
    if pattern == "bidi":
        return [row, row[::-1]]
    if pattern == "cross4":
        return [row, col, row[::-1], col[::-1]]
    if pattern == "omni8":
        diag = []
        for off in range(-(H - 1), W):  # w - h, ascending
            for h in range(H):
                w = h + off
                if 0 <= w < W:
                    diag.append((h, w))
        anti = []
        for s in range(H + W - 1):  # h + w, ascending
            for h in range(H):
                w = s - h
                if 0 <= w < W:
                    anti.append((h, w))
        return [row, col, row[::-1], col[::-1], diag, anti, diag[::-1], anti[::-1]]
    if pattern == "atrous":
        Hp, Wp = H + H % 2, W + W % 2
        k0, k1, k2, k3 = [], [], [], []
        for r in range(Hp // 2):
            for s in range(Wp // 2):
                k0.append((2 * r, 2 * s))
                k2.append((2 * r, 2 * s + 1))
        for s in range(Wp // 2):
            for r in range(Hp // 2):
                k1.append((2 * r + 1, 2 * s))
                k3.append((2 * r + 1, 2 * s + 1))
        return [k0, k1, k2, k3]
    raise AssertionError(pattern)


def _routes_3d(pattern: str, D: int, H: int, W: int) -> list[list[tuple[int, int, int]]]:
    assert pattern == "tri6"
    dhw, hwd, wdh = [], [], []
    for d in range(D):
        for h in range(H):
            for w in range(W):
                dhw.append((d, h, w))
    for h in range(H):
        for w in range(W):
            for d in range(D):
                hwd.append((d, h, w))
    for w in range(W):
        for d in range(D):
            for h in range(H):
                wdh.append((d, h, w))
    return [dhw, hwd, wdh, dhw[::-1], hwd[::-1], wdh[::-1]]


def _oracle_scan_2d(x: torch.Tensor, pattern: str) -> torch.Tensor:
    b, c, H, W = x.shape
    routes = _routes_2d(pattern, H, W)
    out = torch.empty(b, len(routes), c, len(routes[0]), dtype=x.dtype)
    for k, route in enumerate(routes):
        for i, (h, w) in enumerate(route):
            out[:, k, :, i] = x[:, :, h, w] if h < H and w < W else 0.0
    return out


def _oracle_merge_2d(ys: torch.Tensor, pattern: str, H: int, W: int) -> torch.Tensor:
    b, _, c, _ = ys.shape
    out = torch.zeros(b, c, H, W, dtype=ys.dtype)
    for k, route in enumerate(_routes_2d(pattern, H, W)):
        for i, (h, w) in enumerate(route):
            if h < H and w < W:
                out[:, :, h, w] += ys[:, k, :, i]
    return out


def _oracle_scan_3d(x: torch.Tensor, pattern: str) -> torch.Tensor:
    b, c, D, H, W = x.shape
    routes = _routes_3d(pattern, D, H, W)
    out = torch.empty(b, len(routes), c, D * H * W, dtype=x.dtype)
    for k, route in enumerate(routes):
        for i, (d, h, w) in enumerate(route):
            out[:, k, :, i] = x[:, :, d, h, w]
    return out


def _oracle_merge_3d(ys: torch.Tensor, pattern: str, D: int, H: int, W: int) -> torch.Tensor:
    b, _, c, _ = ys.shape
    out = torch.zeros(b, c, D, H, W, dtype=ys.dtype)
    for k, route in enumerate(_routes_3d(pattern, D, H, W)):
        for i, (d, h, w) in enumerate(route):
            out[:, :, d, h, w] += ys[:, k, :, i]
    return out


def _int_valued(*shape: int, seed: int) -> torch.Tensor:
    """float64 with small integer values: sums of a few are exact in any order."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-50, 51, shape, generator=g).double()


def _randn(*shape: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


# ----------------------------------------------------------------------------- registry


def test_pattern_registry():
    assert PATTERNS_2D == {"cross4": 4, "bidi": 2, "omni8": 8, "atrous": 4}
    assert PATTERNS_3D == {"tri6": 6}


@pytest.mark.parametrize("pattern", sorted(PATTERNS_2D))
@pytest.mark.parametrize("hw", SIZES_2D)
def test_scan_index_matches_loops(pattern, hw):
    H, W = hw
    Wp = W + W % 2 if pattern == "atrous" else W
    expected = torch.tensor([[h * Wp + w for h, w in route] for route in _routes_2d(pattern, H, W)])
    index = scan_index(pattern, hw)
    assert index.dtype == torch.long and index.shape == (PATTERNS_2D[pattern], scan_length(pattern, hw))
    assert torch.equal(index, expected)


@pytest.mark.parametrize("dhw", SIZES_3D)
def test_scan_index_3d_matches_loops(dhw):
    D, H, W = dhw
    expected = torch.tensor([[d * H * W + h * W + w for d, h, w in r] for r in _routes_3d("tri6", D, H, W)])
    assert torch.equal(scan_index_3d("tri6", dhw), expected)


def test_scan_index_is_a_copy():
    index = scan_index("cross4", (3, 4))
    index.zero_()
    assert torch.equal(scan_index("cross4", (3, 4))[0], torch.arange(12))
    x = torch.arange(12.0).view(1, 1, 3, 4)
    assert torch.equal(cross_scan(x, "cross4")[0, 0, 0], torch.arange(12.0))


def test_scan_length():
    assert scan_length("cross4", (5, 7)) == 35
    assert scan_length("atrous", (5, 7)) == 12
    assert scan_length("atrous", (6, 6)) == 9
    assert scan_length("atrous", (1, 1)) == 1


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("pattern", sorted(PATTERNS_2D))
@pytest.mark.parametrize("hw", SIZES_2D)
def test_scan_and_merge_2d_match_loops(pattern, hw):
    H, W = hw
    x = _int_valued(2, 3, H, W, seed=H * 10 + W)
    xs = cross_scan(x, pattern)
    assert xs.shape == (2, PATTERNS_2D[pattern], 3, scan_length(pattern, hw))
    assert xs.is_contiguous()
    assert torch.equal(xs, _oracle_scan_2d(x, pattern))

    ys = _int_valued(*xs.shape, seed=H * 10 + W + 1)
    y = cross_merge(ys, pattern, hw)
    assert y.shape == (2, 3, H, W)
    assert torch.equal(y, _oracle_merge_2d(ys, pattern, H, W))


@pytest.mark.parametrize("dhw", SIZES_3D)
def test_scan_and_merge_3d_match_loops(dhw):
    D, H, W = dhw
    x = _int_valued(2, 3, D, H, W, seed=sum(dhw))
    xs = cross_scan_3d(x, "tri6")
    assert xs.shape == (2, 6, 3, D * H * W)
    assert torch.equal(xs, _oracle_scan_3d(x, "tri6"))
    ys = _int_valued(*xs.shape, seed=sum(dhw) + 1)
    assert torch.equal(cross_merge_3d(ys, "tri6", dhw), _oracle_merge_3d(ys, "tri6", D, H, W))


def test_defaults_and_merge_of_scan():
    x = _int_valued(1, 2, 3, 4, seed=0)  # so that k-fold sums are exact
    assert torch.equal(cross_scan(x), cross_scan(x, "cross4"))
    assert torch.equal(cross_merge(cross_scan(x), "cross4", (3, 4)), 4 * x)
    assert torch.equal(cross_merge(cross_scan(x, "omni8"), "omni8", (3, 4)), 8 * x)
    # atrous routes tile the padded grid: merge(scan(x)) is x itself
    for hw in [(3, 4), (5, 7), (1, 1)]:
        x = _randn(1, 2, *hw, seed=1)
        assert torch.equal(cross_merge(cross_scan(x, "atrous"), "atrous", hw), x)
    v = _int_valued(1, 2, 2, 3, 4, seed=2)
    assert torch.equal(cross_scan_3d(v), cross_scan_3d(v, "tri6"))
    assert torch.equal(cross_merge_3d(cross_scan_3d(v), "tri6", (2, 3, 4)), 6 * v)


def test_non_contiguous_input():
    x = _randn(2, 3, 6, 5, seed=3).transpose(-1, -2)  # (2, 3, 5, 6) view
    for pattern in PATTERNS_2D:
        assert torch.equal(cross_scan(x, pattern), cross_scan(x.contiguous(), pattern))
        ys = cross_scan(x, pattern).transpose(0, 2).contiguous().transpose(0, 2)
        assert torch.equal(cross_merge(ys, pattern, (5, 6)), cross_merge(ys.contiguous(), pattern, (5, 6)))


# ----------------------------------------------------------------------------- adjoint and gradients


@pytest.mark.parametrize("pattern", sorted(PATTERNS_2D))
@pytest.mark.parametrize("hw", SIZES_2D)
def test_merge_is_adjoint_of_scan_2d(pattern, hw):
    x = _randn(2, 3, *hw, seed=4)
    ys = _randn(2, PATTERNS_2D[pattern], 3, scan_length(pattern, hw), seed=5)
    lhs = (cross_scan(x, pattern) * ys).sum()
    rhs = (x * cross_merge(ys, pattern, hw)).sum()
    assert abs(lhs.item() - rhs.item()) <= 1e-10 * max(1.0, abs(lhs.item()))


@pytest.mark.parametrize("dhw", SIZES_3D)
def test_merge_is_adjoint_of_scan_3d(dhw):
    x = _randn(2, 3, *dhw, seed=6)
    ys = _randn(2, 6, 3, dhw[0] * dhw[1] * dhw[2], seed=7)
    lhs = (cross_scan_3d(x, "tri6") * ys).sum()
    rhs = (x * cross_merge_3d(ys, "tri6", dhw)).sum()
    assert abs(lhs.item() - rhs.item()) <= 1e-10 * max(1.0, abs(lhs.item()))


@pytest.mark.parametrize("pattern", sorted(PATTERNS_2D))
def test_gradients_2d(pattern):
    hw = (5, 6)
    K, L = PATTERNS_2D[pattern], scan_length(pattern, hw)
    # scan backward is the merge, merge backward is the scan
    x = _randn(2, 3, *hw, seed=8).requires_grad_()
    g = _randn(2, K, 3, L, seed=9)
    cross_scan(x, pattern).backward(g)
    assert torch.allclose(x.grad, cross_merge(g, pattern, hw), rtol=0, atol=1e-12)

    ys = _randn(2, K, 3, L, seed=10).requires_grad_()
    G = _randn(2, 3, *hw, seed=11)
    cross_merge(ys, pattern, hw).backward(G)
    assert torch.equal(ys.grad, cross_scan(G, pattern))

    # scan then merge: the backward applies the same (self-adjoint) composition to the grad
    x.grad = None
    cross_merge(cross_scan(x, pattern), pattern, hw).backward(G)
    assert torch.allclose(x.grad, cross_merge(cross_scan(G, pattern), pattern, hw), rtol=0, atol=1e-12)


def test_gradients_3d():
    dhw = (2, 3, 4)
    x = _randn(1, 2, *dhw, seed=12).requires_grad_()
    G = _randn(1, 2, *dhw, seed=13)
    cross_merge_3d(cross_scan_3d(x), "tri6", dhw).backward(G)
    assert torch.allclose(x.grad, cross_merge_3d(cross_scan_3d(G), "tri6", dhw), rtol=0, atol=1e-12)
    assert torch.allclose(x.grad, 6 * G, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("pattern", sorted(PATTERNS_2D))
def test_gradients_follow_the_merge_order_exactly(pattern, dtype):
    """The backward of the scan IS the merge (fixed route order), not a generic K-fold reduction."""
    hw = (5, 7)
    scale = torch.logspace(-4, 4, 3, dtype=torch.float64).view(1, 1, 3, 1)  # sums that round
    x = _randn(2, 3, *hw, seed=21, dtype=dtype).requires_grad_()
    g = (_randn(2, PATTERNS_2D[pattern], 3, scan_length(pattern, hw), seed=22) * scale).to(dtype)
    (gx,) = torch.autograd.grad(cross_scan(x, pattern), x, g)
    assert torch.equal(gx, cross_merge(g, pattern, hw))
    v = _randn(1, 3, 2, 3, 4, seed=23, dtype=dtype).requires_grad_()
    g3 = (_randn(1, 6, 3, 24, seed=24) * scale).to(dtype)
    (gv,) = torch.autograd.grad(cross_scan_3d(v), v, g3)
    assert torch.equal(gv, cross_merge_3d(g3, "tri6", (2, 3, 4)))


def test_backend_argument(monkeypatch):
    """backend="torch" and backend="triton" are different implementations (index_add vs the Triton kernels,
    run here by the interpreter on CPU tensors): outputs and gradients bit-identical to each other and to
    the loop oracle; None picks the torch backend on CPU and the Triton one where it is available."""
    from ssm_apps.kernels import _backend
    from ssm_apps.kernels.patterns import autograd

    assert _backend.interpreting(), "TRITON_INTERPRET=1 must be set before triton is imported"
    ran = []
    impl = autograd._impl
    monkeypatch.setattr(autograd, "_impl", lambda backend: ran.append(backend) or impl(backend))
    x = _int_valued(1, 2, 3, 4, seed=25)
    v = _int_valued(1, 2, 2, 3, 4, seed=26)
    results = {}
    for backend in ("torch", "triton", None):
        if backend == "triton":  # the dispatcher's CUDA check: the interpreter runs the kernels on CPU
            monkeypatch.setattr(_backend, "triton_available", lambda device: True)
        xl, vl = x.clone().requires_grad_(), v.clone().requires_grad_()
        ys = cross_scan(xl, "omni8", backend=backend)
        merged = cross_merge(ys, "omni8", (3, 4), backend=backend)
        vs = cross_scan_3d(vl, backend=backend)
        merged3 = cross_merge_3d(vs, "tri6", (2, 3, 4), backend=backend)
        grads = torch.autograd.grad((merged * merged).sum() + (merged3 * merged3).sum(), (xl, vl))
        results[backend] = (ys, merged, vs, merged3, *grads)
    # each op (and its backward, the other op) ran on the backend asked for; None -> triton when available
    assert ran == ["torch"] * 8 + ["triton"] * 16
    ref = results["torch"]
    assert torch.equal(ref[0], _oracle_scan_2d(x, "omni8"))
    assert torch.equal(ref[1], _oracle_merge_2d(ref[0], "omni8", 3, 4))
    assert torch.equal(ref[2], _oracle_scan_3d(v, "tri6"))
    assert torch.equal(ref[3], _oracle_merge_3d(ref[2], "tri6", 2, 3, 4))
    for backend in ("triton", None):
        for got, want in zip(results[backend], ref):
            assert got.dtype == want.dtype and torch.equal(got, want), backend


def test_backend_argument_errors():
    x = _randn(1, 2, 3, 4, seed=25)
    with pytest.raises(ValueError, match=r"cross_scan_3d: argument 'backend' must be one of \('torch', 'triton'\)"):
        cross_scan_3d(x.view(1, 2, 1, 3, 4), backend="cuda")
    with pytest.raises(RuntimeError, match="cross_merge_3d: backend 'triton' needs a CUDA tensor"):
        cross_merge_3d(cross_scan_3d(x.view(1, 2, 1, 3, 4)), "tri6", (1, 3, 4), backend="triton")


@pytest.mark.parametrize("pattern", ["omni8", "atrous"])
def test_gradcheck(pattern):
    x = _randn(1, 2, 3, 5, seed=14).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: cross_scan(t, pattern), (x,))
    ys = _randn(1, PATTERNS_2D[pattern], 2, scan_length(pattern, (3, 5)), seed=15).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: cross_merge(t, pattern, (3, 5)), (ys,))
    assert torch.autograd.gradgradcheck(lambda t: cross_merge(cross_scan(t, pattern), pattern, (3, 5)), (x,))


# ----------------------------------------------------------------------------- low precision


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("pattern", sorted(PATTERNS_2D))
def test_half_precision_is_exact(pattern, dtype):
    hw = (5, 7)
    x = _randn(2, 3, *hw, seed=16, dtype=torch.float32)
    xs = cross_scan(x.to(dtype), pattern)
    assert xs.dtype == dtype
    assert torch.equal(xs, cross_scan(x, pattern).to(dtype))  # index ops move values exactly

    ys = _randn(2, PATTERNS_2D[pattern], 3, scan_length(pattern, hw), seed=17, dtype=dtype)
    y = cross_merge(ys, pattern, hw)
    assert y.dtype == dtype
    # accumulated in float32, rounded once
    assert torch.equal(y, cross_merge(ys.float(), pattern, hw).to(dtype))
    if pattern == "atrous":  # one route per cell: nothing is summed
        assert torch.equal(y, _oracle_merge_2d(ys.double(), pattern, *hw).to(dtype))

    x_low = x.to(dtype).requires_grad_()
    g = _randn(*xs.shape, seed=18, dtype=dtype)
    cross_scan(x_low, pattern).backward(g)
    assert x_low.grad.dtype == dtype
    torch.testing.assert_close(x_low.grad.float(), cross_merge(g.float(), pattern, hw), rtol=1e-2, atol=1e-2)


def test_half_precision_3d():
    x = _randn(1, 2, 3, 1, 5, seed=19, dtype=torch.float32)
    assert torch.equal(cross_scan_3d(x.bfloat16()), cross_scan_3d(x).bfloat16())
    ys = _randn(1, 6, 2, 15, seed=20, dtype=torch.bfloat16)
    assert torch.equal(cross_merge_3d(ys, "tri6", (3, 1, 5)), cross_merge_3d(ys.float(), "tri6", (3, 1, 5)).bfloat16())


# ----------------------------------------------------------------------------- errors


def test_errors_pattern():
    x = torch.zeros(1, 2, 3, 4)
    with pytest.raises(ValueError, match=r"cross_scan: argument 'pattern' must be one of \['atrous', 'bidi', 'cross4', 'omni8'\]; got 'cross2'"):
        cross_scan(x, "cross2")
    with pytest.raises(ValueError, match=r"cross_merge: argument 'pattern' must be one of .*'omni8'\]; got 'tri6'"):
        cross_merge(torch.zeros(1, 4, 2, 12), "tri6", (3, 4))
    with pytest.raises(ValueError, match=r"cross_scan_3d: argument 'pattern' must be one of \['tri6'\]; got 'cross4'"):
        cross_scan_3d(torch.zeros(1, 1, 2, 2, 2), "cross4")
    with pytest.raises(ValueError, match=r"cross_merge_3d: argument 'pattern' must be one of \['tri6'\]; got None"):
        cross_merge_3d(torch.zeros(1, 6, 1, 8), None, (2, 2, 2))
    with pytest.raises(ValueError, match=r"scan_index: argument 'pattern' must be one of .*; got 'x'"):
        scan_index("x", (2, 2))
    with pytest.raises(ValueError, match=r"scan_index_3d: argument 'pattern' must be one of \['tri6'\]; got 'atrous'"):
        scan_index_3d("atrous", (2, 2, 2))
    with pytest.raises(ValueError, match=r"scan_length: argument 'pattern'"):
        scan_length("nope", (2, 2))


def test_errors_x():
    with pytest.raises(ValueError, match=r"cross_scan: argument 'x' must be of rank 4 \(b, c, H, W\); got shape \(2, 3, 4\)"):
        cross_scan(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"cross_scan: argument 'x' must be \(b, c, H, W\) with H, W >= 1; got shape \(1, 2, 0, 4\)"):
        cross_scan(torch.zeros(1, 2, 0, 4))
    with pytest.raises(ValueError, match=r"cross_scan: argument 'x' must be a floating-point tensor \(b, c, H, W\); got shape \(1, 1, 2, 2\) dtype torch.int64"):
        cross_scan(torch.zeros(1, 1, 2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"cross_scan: argument 'x' must be a torch.Tensor; got list"):
        cross_scan([[1.0]])
    with pytest.raises(ValueError, match=r"cross_scan_3d: argument 'x' must be of rank 5 \(b, c, D, H, W\); got shape \(1, 2, 3, 4\)"):
        cross_scan_3d(torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"cross_scan_3d: argument 'x' must be \(b, c, D, H, W\) with D, H, W >= 1; got shape \(1, 1, 2, 0, 2\)"):
        cross_scan_3d(torch.zeros(1, 1, 2, 0, 2))


def test_errors_ys():
    with pytest.raises(ValueError, match=r"cross_merge: argument 'ys' must be of rank 4 \(b, K, c, L_k\); got shape \(4, 2, 12\)"):
        cross_merge(torch.zeros(4, 2, 12), "cross4", (3, 4))
    with pytest.raises(ValueError, match=r"cross_merge: argument 'ys' must be \(b, K, c, L_k\) = \(b, 4, c, 12\) for pattern 'cross4' and hw \(3, 4\); got shape \(1, 2, 5, 12\)"):
        cross_merge(torch.zeros(1, 2, 5, 12), "cross4", (3, 4))
    with pytest.raises(ValueError, match=r"= \(b, 4, c, 4\) for pattern 'atrous' and hw \(3, 4\); got shape \(1, 4, 5, 12\)"):
        cross_merge(torch.zeros(1, 4, 5, 12), "atrous", (3, 4))
    with pytest.raises(ValueError, match=r"= \(b, 8, c, 20\) for pattern 'omni8' and hw \(4, 5\); got shape \(1, 8, 2, 12\)"):
        cross_merge(torch.zeros(1, 8, 2, 12), "omni8", (4, 5))
    with pytest.raises(ValueError, match=r"cross_merge: argument 'ys' must be a floating-point tensor"):
        cross_merge(torch.zeros(1, 4, 2, 12, dtype=torch.int32), "cross4", (3, 4))
    with pytest.raises(ValueError, match=r"cross_merge_3d: argument 'ys' must be \(b, K, c, L\) = \(b, 6, c, 24\) for pattern 'tri6' and dhw \(2, 3, 4\); got shape \(1, 6, 2, 23\)"):
        cross_merge_3d(torch.zeros(1, 6, 2, 23), "tri6", (2, 3, 4))
    with pytest.raises(ValueError, match=r"cross_merge_3d: argument 'ys' must be of rank 4 \(b, K, c, L\); got shape \(6, 24\)"):
        cross_merge_3d(torch.zeros(6, 24), "tri6", (2, 3, 4))


@pytest.mark.parametrize("hw", [(3,), (3, 4, 5), (0, 4), (3, -1), (3.0, 4), "34", 12, (True, 4)])
def test_errors_hw(hw):
    with pytest.raises(ValueError, match=r"cross_merge: argument 'hw' must be a tuple of 2 positive ints \(H, W\); got "):
        cross_merge(torch.zeros(1, 4, 2, 12), "cross4", hw)
    with pytest.raises(ValueError, match=r"scan_index: argument 'hw' must be a tuple of 2 positive ints \(H, W\)"):
        scan_index("cross4", hw)


def test_errors_dhw():
    with pytest.raises(ValueError, match=r"cross_merge_3d: argument 'dhw' must be a tuple of 3 positive ints \(D, H, W\); got \(2, 3\)"):
        cross_merge_3d(torch.zeros(1, 6, 2, 6), "tri6", (2, 3))
    with pytest.raises(ValueError, match=r"scan_index_3d: argument 'dhw' must be a tuple of 3 positive ints \(D, H, W\); got \(2, 0, 3\)"):
        scan_index_3d("tri6", (2, 0, 3))


def test_hw_accepts_list_and_size():
    ys = _randn(1, 4, 2, 12, seed=21)
    ref = cross_merge(ys, "cross4", (3, 4))
    assert torch.equal(cross_merge(ys, "cross4", [3, 4]), ref)
    assert torch.equal(cross_merge(ys, "cross4", torch.Size([3, 4])), ref)
