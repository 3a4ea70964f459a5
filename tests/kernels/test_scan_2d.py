"""Fused 2-D / 3-D selective scan (``selective_scan_2d`` / ``selective_scan_3d``).

* Triton kernels (GATHER mode of ``scan.triton``, ``fused.triton``) under the Triton interpreter on CPU: forward and
  the gradients of x, delta, A, B, C, D, delta_bias against the unfused chain (torch backend:
  cross_scan -> selective_scan -> cross_merge) and against an independent float64 oracle, fp32
  and bf16, every fused pattern, both merge schemes (float32 atomics, per-route buffer),
  with and without sequence-parallel segments.
* The torch / ref backends (the unfused chain) against the float64 oracle.
* Bad inputs: errors name the argument, the expected and the given shapes.

The oracle builds each route with plain Python loops from the patterns' definitions (no
ssm_apps code), scans it with tests/oracle.py and adds its output back at the visited pixels.
The Triton interpreter is switched on by tests/conftest.py, before anything imports triton.
"""
from __future__ import annotations

import pytest
import torch

from ssm_apps.kernels import TritonScanOptions, selective_scan_2d, selective_scan_3d
from tests.helpers.oracle import selective_scan_oracle

TOL = {torch.float32: (6e-4, 2e-3), torch.bfloat16: (3e-2, 5e-2)}
GRAD_SCALE = {"x": (2, 2), "delta": (5, 10)}
NAMES = ("x", "delta", "A", "B", "C", "D", "delta_bias")
K_OF = {"cross4": 4, "bidi": 2, "omni8": 8, "tri6": 6}


# ----------------------------------------------------------------------------- oracle

def routes_oracle(pattern: str, sizes: tuple[int, ...]) -> list[list[int]]:
    """Each route's visiting order of flat pixels, from the patterns' definitions, by loops."""
    if pattern == "tri6":
        d_, h_, w_ = sizes
        p = lambda d, h, w: (d * h_ + h) * w_ + w  # noqa: E731
        dhw = [p(d, h, w) for d in range(d_) for h in range(h_) for w in range(w_)]
        hwd = [p(d, h, w) for h in range(h_) for w in range(w_) for d in range(d_)]
        wdh = [p(d, h, w) for w in range(w_) for d in range(d_) for h in range(h_)]
        fwd = [dhw, hwd, wdh]
        return fwd + [r[::-1] for r in fwd]
    H, W = sizes
    row = [h * W + w for h in range(H) for w in range(W)]
    col = [h * W + w for w in range(W) for h in range(H)]
    if pattern == "bidi":
        return [row, row[::-1]]
    routes = [row, col, row[::-1], col[::-1]]
    if pattern == "omni8":
        cells = [(h, w) for h in range(H) for w in range(W)]
        diag = [h * W + w for h, w in sorted(cells, key=lambda hw: (hw[1] - hw[0], hw[0]))]
        anti = [h * W + w for h, w in sorted(cells, key=lambda hw: (hw[0] + hw[1], hw[0]))]
        routes += [diag, anti, diag[::-1], anti[::-1]]
    return routes


def scan_2d_oracle(x, delta, A, B, C, D, delta_bias, delta_softplus, pattern):
    """float64: scan each route read through its visiting order, add its output back at the pixels."""
    b, c, *sizes = x.shape
    L = x[0, 0].numel()
    k = K_OF[pattern]
    n = A.shape[1]
    xf, df = x.double().reshape(b, c, L), delta.double().reshape(b, k, c, L)
    Bf, Cf = B.double().reshape(b, k, n, L), C.double().reshape(b, k, n, L)
    out = torch.zeros(b, c, L, dtype=torch.float64)
    for r, order in enumerate(routes_oracle(pattern, tuple(sizes))):
        idx = torch.tensor(order)
        rows = slice(r * c, (r + 1) * c)
        y, _ = selective_scan_oracle(
            xf[..., idx], df[:, r][..., idx], A.double()[rows], Bf[:, r][..., idx], Cf[:, r][..., idx],
            D=None if D is None else D.double()[rows],
            delta_bias=None if delta_bias is None else delta_bias.double()[rows],
            delta_softplus=delta_softplus)
        out[..., idx] += y
    return out.view(b, c, *sizes)


def make_inputs(b, c, sizes, n, pattern, dtype, use_d=True, use_bias=True, seed=0):
    """mamba_ssm's test distributions: x, B, C, D ~ N(0,1); delta, delta_bias ~ 0.5 U(0,1); A ~ -0.5 U(0,1)."""
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    k = K_OF[pattern]
    return dict(
        x=rn(b, c, *sizes).to(dtype),
        delta=(0.5 * torch.rand(b, k, c, *sizes, generator=g)).to(dtype),
        A=-0.5 * torch.rand(k * c, n, generator=g),
        B=rn(b, k, n, *sizes).to(dtype),
        C=rn(b, k, n, *sizes).to(dtype),
        D=rn(k * c) if use_d else None,
        delta_bias=0.5 * torch.rand(k * c, generator=g) if use_bias else None,
    )


def run(fn, inp, softplus, pattern, backend, grad_out, out_dtype=None, double=False, triton_options=None):
    """Output and gradients of every given input."""
    leaves = {k: (v.detach().double() if double else v.detach().clone()).requires_grad_()
              for k, v in inp.items() if v is not None}
    args = {k: leaves.get(k) for k in NAMES}
    if fn is None:
        out = scan_2d_oracle(**args, delta_softplus=softplus, pattern=pattern)
    else:
        out = fn(**args, delta_softplus=softplus, pattern=pattern, backend=backend, out_dtype=out_dtype,
                 triton_options=triton_options)
    gs = torch.autograd.grad((out * grad_out.to(out.dtype)).sum(), list(leaves.values()))
    return out.detach(), dict(zip(leaves, gs))


def assert_all_close(out, grads, ref_out, ref_grads, dtype, scale=1.0, what=""):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out.double(), ref_out.double(), rtol=rtol * scale, atol=atol * scale,
                               msg=lambda m: f"{what} out: {m}")
    for name, g in grads.items():
        r_s, a_s = GRAD_SCALE.get(name, (1, 1))
        torch.testing.assert_close(g.double(), ref_grads[name].double(), rtol=rtol * r_s * scale,
                                   atol=atol * a_s * scale, msg=lambda m, name=name: f"{what} grad of {name}: {m}")


def fn_of(pattern):
    return selective_scan_3d if pattern == "tri6" else selective_scan_2d


# ----------------------------------------------------------------------------- torch backends (CPU)

TORCH_CASES = [
    # (b, c, sizes, n, pattern, options)
    (2, 3, (4, 5), 4, "cross4", dict(softplus=True)),
    (1, 2, (3, 4), 1, "bidi", dict(softplus=False, use_d=False, use_bias=False)),
    (2, 2, (3, 5), 3, "omni8", dict(softplus=True)),
    (1, 2, (2, 3, 3), 2, "tri6", dict(softplus=True, use_bias=False)),
]


@pytest.mark.parametrize("backend", ["ref", "torch", "numba"])
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: f"{c[4]}-n{c[3]}")
def test_unfused_backends_against_oracle(case, backend):
    b, c, sizes, n, pattern, opt = case
    inp = make_inputs(b, c, sizes, n, pattern, torch.float32, opt.get("use_d", True), opt.get("use_bias", True),
                      seed=n + len(sizes))
    grad_out = torch.randn(b, c, *sizes, generator=torch.Generator().manual_seed(3))
    out, grads = run(fn_of(pattern), inp, opt["softplus"], pattern, backend, grad_out)
    ref_out, ref_grads = run(None, inp, opt["softplus"], pattern, None, grad_out.double(), double=True)
    assert out.shape == (b, c, *sizes) and out.dtype == torch.float32
    assert_all_close(out, grads, ref_out, ref_grads, torch.float32, what=backend)


# the fused numba kernel works on blocks of 64 channels: 150 channels = two full blocks and a partial one
NUMBA_FUSED_CASES = [*TORCH_CASES, (2, 150, (5, 6), 2, "cross4", dict(softplus=True)),
                     (1, 70, (2, 3, 4), 1, "tri6", dict(softplus=True))]


@pytest.mark.parametrize("case", NUMBA_FUSED_CASES, ids=lambda c: f"{c[4]}-c{c[1]}-n{c[3]}")
def test_numba_fused_inference_against_oracle(case):
    """Without autograd the numba backend runs its fused kernel (routes read through the index map)."""
    b, c, sizes, n, pattern, opt = case
    inp = make_inputs(b, c, sizes, n, pattern, torch.float32, opt.get("use_d", True), opt.get("use_bias", True),
                      seed=10 + n)
    with torch.inference_mode():
        out = fn_of(pattern)(**inp, delta_softplus=opt["softplus"], pattern=pattern, backend="numba")
    ref = scan_2d_oracle(**inp, delta_softplus=opt["softplus"], pattern=pattern)
    assert out.shape == (b, c, *sizes) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=TOL[torch.float32][0], atol=TOL[torch.float32][1])



def _low_rank(b, c, sizes, pattern, rank, seed):
    """Low-rank step sizes: factors (b, K, R, *sizes) and a weight (K, c, R) whose product has the scale of
    make_inputs' delta."""
    g = torch.Generator().manual_seed(seed)
    k = K_OF[pattern]
    return (torch.rand(b, k, rank, *sizes, generator=g),
            torch.rand(k, c, rank, generator=g) / rank)


def _expand_oracle(factors, weight):
    """float64 step sizes delta[b, k, c, p] = sum_r weight[k, c, r] * factors[b, k, r, p], by einsum."""
    b, k, r, *sizes = factors.shape
    return torch.einsum("kcr,bkrp->bkcp", weight.double(), factors.double().reshape(b, k, r, -1)).reshape(
        b, k, weight.shape[1], *sizes)


# R 5 and 16 are expanded inside the numba kernel (NUMBA_IN_KERNEL_MAX_RANK = 16), R 20 by a GEMM first
LOW_RANK_CASES = [(2, 150, (5, 6), 2, "cross4", 5), (1, 70, (2, 3, 4), 1, "tri6", 16), (1, 3, (4, 5), 3, "bidi", 20)]


@pytest.mark.parametrize("case", LOW_RANK_CASES, ids=lambda c: f"{c[4]}-c{c[1]}-R{c[5]}")
def test_low_rank_delta_numba_inference_against_oracle(case):
    """delta_proj_weight: the numba inference kernel expands low-rank step sizes itself (R <= 16) or after one
    GEMM; both against the float64 oracle scanning the einsum-expanded step sizes."""
    b, c, sizes, n, pattern, rank = case
    inp = make_inputs(b, c, sizes, n, pattern, torch.float32, seed=20 + rank)
    factors, weight = _low_rank(b, c, sizes, pattern, rank, seed=rank)
    with torch.inference_mode():
        out = fn_of(pattern)(**dict(inp, delta=factors), delta_proj_weight=weight, delta_softplus=True,
                             pattern=pattern, backend="numba")
    ref = scan_2d_oracle(**dict(inp, delta=_expand_oracle(factors, weight)), delta_softplus=True, pattern=pattern)
    assert out.shape == (b, c, *sizes) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=TOL[torch.float32][0], atol=TOL[torch.float32][1])


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_low_rank_delta_gradients_against_oracle(backend):
    """With autograd the factors and the weight get their gradients through the expanding GEMM (float64 oracle:
    einsum, then the route-by-route scan)."""
    b, c, sizes, n, pattern, rank = 2, 3, (4, 5), 2, "cross4", 4
    inp = make_inputs(b, c, sizes, n, pattern, torch.float32, seed=31)
    factors, weight = _low_rank(b, c, sizes, pattern, rank, seed=32)
    grad_out = torch.randn(b, c, *sizes, generator=torch.Generator().manual_seed(33))
    f, w = factors.clone().requires_grad_(), weight.clone().requires_grad_()
    out = selective_scan_2d(**dict(inp, delta=f), delta_proj_weight=w, delta_softplus=True, backend=backend)
    gf, gw = torch.autograd.grad((out * grad_out).sum(), [f, w])
    f64, w64 = factors.double().requires_grad_(), weight.double().requires_grad_()
    ref = scan_2d_oracle(**dict(inp, delta=_expand_oracle(f64, w64)), delta_softplus=True, pattern=pattern)
    rf, rw = torch.autograd.grad((ref * grad_out.double()).sum(), [f64, w64])
    rtol, atol = TOL[torch.float32]
    torch.testing.assert_close(out.detach().double(), ref.detach(), rtol=rtol, atol=atol)
    torch.testing.assert_close(gf.double(), rf, rtol=rtol * 5, atol=atol * 10)
    torch.testing.assert_close(gw.double(), rw, rtol=rtol * 5, atol=atol * 10)

def test_bf16_out_dtype_on_torch_backend():
    inp = make_inputs(1, 2, (3, 4), 2, "cross4", torch.bfloat16, seed=4)
    out = selective_scan_2d(**inp, delta_softplus=True, backend="torch", out_dtype=torch.float32)
    assert out.dtype == torch.float32
    ref = scan_2d_oracle(**inp, delta_softplus=True, pattern="cross4")
    torch.testing.assert_close(out.double(), ref, rtol=6e-4, atol=2e-3)
    assert selective_scan_2d(**inp, delta_softplus=True, backend="torch").dtype == torch.bfloat16


def test_python_floats_for_D_and_delta_bias():
    inp = make_inputs(1, 2, (3, 4), 2, "cross4", torch.float32, seed=6)
    full = dict(inp, D=torch.full((8,), 0.5), delta_bias=torch.full((8,), 0.1))
    ref = selective_scan_2d(**full, delta_softplus=True, backend="torch")
    assert torch.equal(selective_scan_2d(**dict(inp, D=0.5, delta_bias=0.1), delta_softplus=True, backend="torch"), ref)
    with pytest.raises(TypeError, match=r"selective_scan_2d: argument 'D' must be a float32 tensor of shape "
                                        r"\(K\*c,\) = \(8,\), a Python float or None; got str"):
        selective_scan_2d(**dict(inp, D="0.5"), backend="torch")


# ----------------------------------------------------------------------------- bad inputs

def _good(pattern="cross4", sizes=(3, 4)):
    return make_inputs(2, 3, sizes, 2, pattern, torch.float32, seed=1)


@pytest.mark.parametrize("name,bad,expect", [
    ("delta", lambda i: i["delta"][:, :3], r"argument 'delta' must be \(b, K, c, H, W\) = \(2, 4, 3, 3, 4\).*got shape \(2, 3, 3, 3, 4\)"),
    ("B", lambda i: i["B"][..., :3], r"argument 'B' must be \(b, K, n, H, W\) = \(2, 4, 2, 3, 4\).*got shape \(2, 4, 2, 3, 3\)"),
    ("C", lambda i: i["C"].to(torch.bfloat16), r"argument 'C' must be .*dtype torch.float32 like x; got shape \(2, 4, 2, 3, 4\) dtype torch.bfloat16"),
    ("A", lambda i: i["A"][:6], r"argument 'A' must be float32 \(K\*c, n\) = \(12, n\).*got shape \(6, 2\)"),
    ("D", lambda i: i["D"][:3], r"argument 'D' must be float32 \(K\*c,\) = \(12,\); got shape \(3,\)"),
    ("delta_bias", lambda i: i["delta_bias"].double(), r"argument 'delta_bias' must be float32 \(K\*c,\) = \(12,\); got shape \(12,\) dtype torch.float64"),
    ("x", lambda i: i["x"][0], r"argument 'x' must be a float32/float16/bfloat16 tensor \(b, c, H, W\); got shape \(3, 3, 4\)"),
])
def test_bad_inputs_name_argument_and_shapes(name, bad, expect):
    inp = _good()
    inp[name] = bad(inp)
    with pytest.raises(ValueError, match=expect):
        selective_scan_2d(**inp, backend="torch")


def test_bad_low_rank_delta():
    inp = _good()
    factors = torch.rand(2, 4, 5, 3, 4)
    with pytest.raises(ValueError, match=r"argument 'delta_proj_weight' must be \(K, c, R\) = \(4, 3, R\) with R >= 1, "
                                         r"dtype torch.float32 like x; got shape \(4, 2, 5\)"):
        selective_scan_2d(**dict(inp, delta=factors), delta_proj_weight=torch.rand(4, 2, 5), backend="torch")
    with pytest.raises(ValueError, match=r"argument 'delta' must be \(b, K, R, H, W\) = \(2, 4, 6, 3, 4\) low-rank "
                                         r"factors per pixel \(with delta_proj_weight\).*got shape \(2, 4, 5, 3, 4\)"):
        selective_scan_2d(**dict(inp, delta=factors), delta_proj_weight=torch.rand(4, 3, 6), backend="torch")


def test_bad_pattern_and_backend():
    inp = _good()
    with pytest.raises(ValueError, match=r"argument 'pattern' must be one of \['cross4', 'bidi', 'omni8'\]; "
                                         r"got 'atrous' \('atrous' is a permutation.*cross_merge\)"):
        selective_scan_2d(**inp, pattern="atrous", backend="torch")
    with pytest.raises(ValueError, match=r"argument 'pattern' must be one of \['tri6'\]; got 'cross4'"):
        selective_scan_3d(**_good("tri6", (2, 2, 3)), pattern="cross4")
    with pytest.raises(ValueError, match=r"argument 'backend' must be one of"):
        selective_scan_2d(**inp, backend="cuda")
    with pytest.raises(RuntimeError, match=r"backend 'triton' needs a CUDA tensor"):
        selective_scan_2d(**inp, backend="triton")
    with pytest.raises(ValueError, match=r"argument 'delta' must be \(b, K, c, D, H, W\) = \(2, 6, 3, 2, 2, 3\)"):
        bad = _good("tri6", (2, 2, 3))
        bad["delta"] = bad["delta"][:, :, :, :1]
        selective_scan_3d(**bad)


# ----------------------------------------------------------------------------- Triton (interpreter)

@pytest.fixture
def kernels(request, monkeypatch):
    """The interpreter on, and the dispatcher's CUDA check passed: it runs the kernels on CPU tensors."""
    from ssm_apps.kernels import _backend

    assert _backend.interpreting(), "TRITON_INTERPRET=1 must be set before triton is imported"
    monkeypatch.setattr(_backend, "triton_available", lambda device: True)


TRITON_CASES = [
    # (b, c, sizes, n, pattern, dtype, options); L = prod(sizes), 16-step checkpoint chunks
    pytest.param(2, 3, (4, 5), 4, "cross4", torch.float32, dict(), id="cross4-n4-fp32-L20-auto-segments"),
    pytest.param(2, 3, (4, 5), 4, "cross4", torch.float32, dict(segments=1, atomic=False),
                 id="cross4-n4-fp32-L20-one-segment-route-buffer"),
    pytest.param(1, 2, (5, 6), 1, "cross4", torch.bfloat16, dict(), id="cross4-n1-bf16-L30"),
    pytest.param(2, 2, (3, 4), 1, "bidi", torch.float32, dict(softplus=False, use_d=False, use_bias=False),
                 id="bidi-n1-fp32-plain"),
    pytest.param(1, 2, (3, 5), 4, "omni8", torch.float32, dict(atomic=False), id="omni8-n4-fp32-route-buffer"),
    pytest.param(1, 3, (3, 4), 2, "cross4", torch.float32, dict(pixels_last=True),
                 id="cross4-n2-fp32-pixels-last-inputs"),
    pytest.param(1, 3, (4, 4), 1, "omni8", torch.bfloat16, dict(), id="omni8-n1-bf16"),
    pytest.param(1, 2, (2, 3, 3), 4, "tri6", torch.float32, dict(), id="tri6-n4-fp32-L18"),
    pytest.param(1, 2, (2, 2, 3), 1, "tri6", torch.bfloat16, dict(out_dtype=torch.float32, segments=1),
                 id="tri6-n1-bf16-out-fp32"),
]


@pytest.mark.parametrize("b,c,sizes,n,pattern,dtype,opt", TRITON_CASES)
def test_triton_fused_against_chain_and_oracle(kernels, b, c, sizes, n, pattern, dtype, opt):
    options = TritonScanOptions(checkpoint_steps=16, segments=opt.get("segments"), fused_atomic=opt.get("atomic", True))
    softplus = opt.get("softplus", True)
    out_dtype = opt.get("out_dtype")
    inp = make_inputs(b, c, sizes, n, pattern, dtype, opt.get("use_d", True), opt.get("use_bias", True),
                      seed=n * 10 + sum(sizes))
    if opt.get("pixels_last"):  # x channels-last, delta in (b, H, W, K, c) memory: read without a copy
        inp["x"] = inp["x"].permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
        inp["delta"] = inp["delta"].permute(0, 3, 4, 1, 2).contiguous().permute(0, 3, 4, 1, 2)
    # grad_out representable in the output dtype, so the cast of out rounds nothing
    grad_out = torch.randn(b, c, *sizes, generator=torch.Generator().manual_seed(7)).to(out_dtype or dtype)
    fn = fn_of(pattern)
    out, grads = run(fn, inp, softplus, pattern, "triton", grad_out, out_dtype, triton_options=options)
    assert out.shape == (b, c, *sizes) and out.dtype == (out_dtype or dtype)
    for name, g in grads.items():
        assert g.dtype == inp[name].dtype and g.shape == inp[name].shape, name
    # the unfused chain on the same inputs (torch backend, same dtypes)
    chain_out, chain_grads = run(fn, inp, softplus, pattern, "torch", grad_out, out_dtype)
    assert_all_close(out, grads, chain_out, chain_grads, dtype, what="vs chain:")
    # the float64 oracle
    ref_out, ref_grads = run(None, inp, softplus, pattern, None, grad_out.double(), double=True)
    assert_all_close(out, grads, ref_out, ref_grads, dtype, what="vs oracle:")


def test_triton_plain_scan_unchanged_by_gather_flags(kernels):
    """The plain (non-fused) kernels still match the oracle after the GATHER generalisation."""
    from tests.helpers.oracle import selective_scan_oracle as oracle_1d

    g = torch.Generator().manual_seed(2)
    u, delta = torch.randn(1, 4, 21, generator=g), 0.5 * torch.rand(1, 4, 21, generator=g)
    A, B, C = -0.5 * torch.rand(4, 2, generator=g), torch.randn(1, 2, 2, 21, generator=g), torch.randn(1, 2, 21, generator=g)
    from ssm_apps.kernels.scan.triton import selective_scan_triton

    out = selective_scan_triton(u, delta, A, B, C, delta_softplus=True, options=TritonScanOptions(checkpoint_steps=16))
    ref, _ = oracle_1d(u, delta, A, B, C, delta_softplus=True)
    torch.testing.assert_close(out.double(), ref, rtol=6e-4, atol=2e-3)


def test_index_maps_cached_under_inference_mode_serve_a_later_training_call():
    """The pattern maps are cached: one first built under torch.inference_mode must still be usable
    by autograd afterwards (an inference tensor in the cache made the unfused chain raise)."""
    inp = make_inputs(1, 2, (7, 9), 1, "cross4", torch.float32, seed=5)
    with torch.inference_mode():
        selective_scan_2d(**inp, delta_softplus=True, pattern="cross4", backend="numba")
    leaves = {k: v.clone().requires_grad_() for k, v in inp.items() if v is not None}
    out = selective_scan_2d(**leaves, delta_softplus=True, pattern="cross4", backend="torch")
    out.sum().backward()
    assert leaves["x"].grad is not None and torch.isfinite(leaves["x"].grad).all()
