"""selective_scan backends against the float64 oracle: forward, last state and every gradient."""
from __future__ import annotations

import pytest
import torch

from ssm_apps.kernels import default_backend, selective_scan
from tests.helpers.oracle import scan_inputs as make_inputs
from tests.helpers.oracle import selective_scan_oracle

# mamba_ssm's test tolerances; du gets 2x, ddelta 5x rtol / 10x atol.
TOL = {torch.float32: (6e-4, 2e-3), torch.bfloat16: (3e-2, 5e-2)}
GRAD_SCALE = {"u": (2, 2), "delta": (5, 10)}


CASES = [
    # (b, d, L, n, (B layout, C layout))
    (2, 4, 37, 8, ("shared", "shared")),
    (1, 6, 1, 4, ("shared", "shared")),
    (2, 4, 65, 16, ("grouped", "grouped")),
    (2, 4, 19, 3, ("constant", "constant")),
    (1, 8, 50, 5, ("constant", "grouped")),
    (2, 4, 131, 2, ("grouped", "shared")),
    # wider than the numba kernels' 64-channel blocks: full and partial blocks, groups of 75 channels
    # that start inside a block, per-channel B (constant) next to grouped C, several saved chunks
    (2, 150, 70, 4, ("grouped", "shared")),
    (1, 130, 66, 2, ("constant", "grouped")),
]


@pytest.mark.parametrize("backend", ["ref", "torch", "numba"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"b{c[0]}d{c[1]}L{c[2]}n{c[3]}-{c[4][0]}-{c[4][1]}")
@pytest.mark.parametrize("options", [(True, True, True, True), (False, False, False, False), (True, False, True, False)],
                         ids=["z-D-bias-softplus", "plain", "z-bias"])
def test_against_oracle(backend, dtype, case, options):
    b, d, L, n, layout = case
    use_z, use_D, use_bias, softplus = options
    inp = make_inputs(b, d, L, n, layout, dtype, seed=hash((case, options)) % 1000)
    if not use_z:
        inp["z"] = None
    if not use_D:
        inp["D"] = None
    if not use_bias:
        inp["delta_bias"] = None
    leaves = {k: v.clone().requires_grad_() for k, v in inp.items() if v is not None}
    args = {k: leaves.get(k) for k in inp}
    out, last = selective_scan(**args, delta_softplus=softplus, return_last_state=True, backend=backend)
    assert out.dtype == dtype and out.shape == (b, d, L) and last.dtype == torch.float32 and last.shape == (b, d, n)

    ref_leaves = {k: v.detach().double().requires_grad_() for k, v in leaves.items()}
    ref_out, ref_last = selective_scan_oracle(**{k: ref_leaves.get(k) for k in inp}, delta_softplus=softplus)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out.double(), ref_out.detach(), rtol=rtol, atol=atol)
    torch.testing.assert_close(last.double(), ref_last.detach(), rtol=rtol, atol=atol)

    # grad_out representable in the input dtype, so the cast of out back to it rounds nothing
    grad_out = torch.randn(b, d, L, generator=torch.Generator().manual_seed(1)).to(dtype)
    (out * grad_out).float().sum().backward()
    (ref_out * grad_out.double()).sum().backward()
    for name, leaf in leaves.items():
        r_scale, a_scale = GRAD_SCALE.get(name, (1, 1))
        torch.testing.assert_close(
            leaf.grad.double(), ref_leaves[name].grad, rtol=rtol * r_scale, atol=atol * a_scale,
            msg=lambda m: f"gradient of {name}: {m}",
        )


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("n", [1, 64, 256])
def test_long_sequence_stiff_decay(n, backend):
    """Large |A| and long L force small chunks; results stay finite and match the oracle."""
    g = torch.Generator().manual_seed(n)
    b, d, L = 1, 3, 300
    u = torch.randn(b, d, L, generator=g)
    delta = torch.rand(b, d, L, generator=g)
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)
    B, C = torch.randn(b, n, L, generator=g), torch.randn(b, n, L, generator=g)
    out, last = selective_scan(u, delta, A, B, C, delta_softplus=True, return_last_state=True, backend=backend)
    ref, ref_last = selective_scan_oracle(u, delta, A, B, C, delta_softplus=True)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), ref, rtol=6e-4, atol=2e-3)
    torch.testing.assert_close(last.double(), ref_last, rtol=6e-4, atol=2e-3)


def test_chunked_matches_ref_bitwise_close_across_chunk_sizes():
    """The chunk boundary must not matter: chunks of 1, 7 and 64 agree to fp32 rounding."""
    from ssm_apps.kernels.scan.chunked import scan_chunked

    g = torch.Generator().manual_seed(3)
    u, delta = torch.randn(2, 4, 100, generator=g), 0.3 * torch.rand(2, 4, 100, generator=g)
    A, B, C = -torch.rand(4, 6, generator=g), torch.randn(2, 6, 100, generator=g), torch.randn(2, 6, 100, generator=g)
    outs = [scan_chunked(u, delta, A, B, C, chunk=c)[0] for c in (1, 7, 64)]
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=1e-5, atol=1e-5)


def test_default_backend_on_cpu_is_numba_else_torch(monkeypatch):
    import ssm_apps.kernels._backend as backend_module

    assert default_backend(torch.device("cpu")) == "numba"
    monkeypatch.setenv("SSM_APPS_SCAN_BACKEND", "ref")  # the user's default for backend=None
    assert default_backend(torch.device("cpu")) == "ref"
    monkeypatch.delenv("SSM_APPS_SCAN_BACKEND")
    monkeypatch.setattr(backend_module, "numba_available", lambda: False)
    assert default_backend(torch.device("cpu")) == "torch"
    with pytest.raises(RuntimeError, match="backend 'numba' needs a CPU tensor and numba installed"):
        selective_scan(**_valid(), backend="numba")


def _valid():
    return make_inputs(2, 4, 10, 3, ("shared", "shared"), torch.float32)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(u=torch.randn(2, 4)), r"'u' must be of rank 3 \(b, d, L\); got shape \(2, 4\)"),
        (dict(delta=torch.randn(2, 4, 11)), r"'delta' must be \(b, d, L\) = \(2, 4, 10\).*got shape \(2, 4, 11\)"),
        (dict(A=torch.randn(4, 3, dtype=torch.float64)), r"'A' must be a float32 tensor \(d, n\).*float64"),
        (dict(A=-torch.rand(4, 257)), r"'A' must be \(d, n\) with 1 <= n <= 256; got shape \(4, 257\)"),
        (dict(B=torch.randn(2, 3, 11)), r"'B' must be \(b, n, L\) = \(2, 3, 10\); got shape \(2, 3, 11\)"),
        (dict(C=torch.randn(2, 3, 3, 10)), r"'C' must be grouped with g dividing d = 4 \(g = 3 does not\)"),
        (dict(B=torch.randn(5, 3)), r"'B' must be \(d, n\) = \(4, 3\) when constant"),
        (dict(D=torch.randn(5)), r"'D' must be a float32 tensor of shape \(d,\) = \(4,\); got shape \(5,\)"),
        (dict(delta_bias=torch.randn(4).half()), r"'delta_bias' must be a float32.*float16"),
        (dict(z=torch.randn(2, 4, 9)), r"'z' must be \(b, d, L\) = \(2, 4, 10\)"),
        (dict(u=torch.randint(0, 3, (2, 4, 10))), r"'u' must be a float32/float16/bfloat16 tensor.*int64"),
    ],
)
def test_bad_input_errors_name_argument(change, match):
    inp = _valid()
    inp.update(change)
    with pytest.raises(ValueError, match=match):
        selective_scan(**inp)


def test_unknown_backend_and_triton_on_cpu():
    with pytest.raises(ValueError, match="'backend' must be one of"):
        selective_scan(**_valid(), backend="cuda")
    with pytest.raises(RuntimeError, match="backend 'triton' needs a CUDA tensor"):
        selective_scan(**_valid(), backend="triton")


@pytest.mark.parametrize("backend", ["ref", "torch", "numba"])
def test_python_floats_for_D_and_delta_bias(backend):
    """D and delta_bias may be Python numbers: the same result as the (d,) tensors filled with them."""
    inp = _valid()
    full = dict(inp, D=torch.full((4,), 1.0), delta_bias=torch.full((4,), -0.25))
    ref = selective_scan(**full, delta_softplus=True, backend=backend)
    got = selective_scan(**dict(inp, D=1.0, delta_bias=-0.25), delta_softplus=True, backend=backend)
    assert torch.equal(got, ref)
    assert torch.equal(selective_scan(**dict(inp, D=2), backend=backend),
                       selective_scan(**dict(inp, D=torch.full((4,), 2.0)), backend=backend))


def test_non_tensor_D_and_delta_bias_name_the_argument():
    for name, value in (("D", "1.0"), ("delta_bias", True), ("D", [1.0] * 4)):
        with pytest.raises(TypeError, match=rf"selective_scan: argument '{name}' must be a float32 tensor of shape "
                                            rf"\(d,\) = \(4,\), a Python float or None; got {type(value).__name__}"):
            selective_scan(**dict(_valid(), **{name: value}))
