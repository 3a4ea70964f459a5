"""Triton selective-scan kernels, run on CPU by the Triton interpreter, against the float64 oracle.

The interpreter is switched on by tests/conftest.py, before anything imports triton.

Shapes are tiny (the interpreter is slow); the checkpoint interval is cut to 16 steps and the
interpreter's tile is T = 8 steps x 2 channels, so L = 37 spans three checkpoint chunks and
five sub-chunks with a partial last one, and odd channel counts leave a half-masked block.
With so few (batch x channel) rows the sequence is split into parallel segments as soon as it
spans two checkpoint chunks; the tests also force a single segment to cover the plain path.
"""
from __future__ import annotations

import pytest
import torch

from ssm_apps.kernels._backend import interpreting
from ssm_apps.kernels.scan.triton import TritonScanOptions, selective_scan_triton
from ssm_apps.kernels.scan.triton.segments import _segments
from tests.helpers.oracle import scan_inputs as make_inputs
from tests.helpers.oracle import selective_scan_oracle

# mamba_ssm's test tolerances; du gets 2x, ddelta 5x rtol / 10x atol.
TOL = {torch.float32: (6e-4, 2e-3), torch.bfloat16: (3e-2, 5e-2)}
GRAD_SCALE = {"u": (2, 2), "delta": (5, 10)}


#: 16-step checkpoint chunks; ``segments`` None = automatic
SHORT = TritonScanOptions(checkpoint_steps=16)


@pytest.fixture(autouse=True)
def interpreter_on():
    assert interpreting(), "TRITON_INTERPRET=1 must be set before triton is imported"


def check(inp, softplus, out_dtype=None, last_grad=False, seed=1, segments=None):
    """Forward, last state and every gradient of the Triton path against the oracle."""
    dtype = inp["u"].dtype
    leaves = {k: v.clone().requires_grad_() for k, v in inp.items() if v is not None}
    args = {k: leaves.get(k) for k in inp}
    options = TritonScanOptions(checkpoint_steps=16, segments=segments)
    out, last = selective_scan_triton(**args, delta_softplus=softplus, return_last_state=True, out_dtype=out_dtype,
                                      options=options)
    b, d, L = inp["u"].shape
    assert out.dtype == (out_dtype or dtype) and out.shape == (b, d, L)
    assert last.dtype == torch.float32 and last.shape == (b, d, inp["A"].shape[1])

    ref_leaves = {k: v.detach().double().requires_grad_() for k, v in leaves.items()}
    ref_out, ref_last = selective_scan_oracle(**{k: ref_leaves.get(k) for k in inp}, delta_softplus=softplus)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out.double(), ref_out.detach(), rtol=rtol, atol=atol)
    torch.testing.assert_close(last.double(), ref_last.detach(), rtol=rtol, atol=atol)

    g = torch.Generator().manual_seed(seed)
    # grad_out representable in out's dtype, so the cast of out rounds nothing
    grad_out = torch.randn(b, d, L, generator=g).to(out.dtype)
    loss, ref_loss = (out * grad_out).float().sum(), (ref_out * grad_out.double()).sum()
    if last_grad:
        grad_last = torch.randn(last.shape, generator=g)
        loss, ref_loss = loss + (last * grad_last).sum(), ref_loss + (ref_last * grad_last.double()).sum()
    loss.backward()
    ref_loss.backward()
    for name, leaf in leaves.items():
        r_scale, a_scale = GRAD_SCALE.get(name, (1, 1))
        assert leaf.grad.dtype == leaf.dtype and leaf.grad.shape == leaf.shape, name
        torch.testing.assert_close(
            leaf.grad.double(), ref_leaves[name].grad, rtol=rtol * r_scale, atol=atol * a_scale,
            msg=lambda m: f"gradient of {name}: {m}",
        )


ALL = dict(z=True, D=True, bias=True, softplus=True)
NONE = dict(z=False, D=False, bias=False, softplus=False)
CASES = [
    # (b, d, L, n, (B layout, C layout), dtype, options)
    (2, 4, 37, 8, ("shared", "shared"), torch.float32, ALL),
    (1, 5, 1, 4, ("shared", "shared"), torch.float32, NONE),
    (2, 4, 41, 16, ("grouped", "grouped"), torch.bfloat16, ALL),
    (2, 4, 19, 3, ("constant", "constant"), torch.float32, dict(z=True, D=False, bias=True, softplus=False)),
    (1, 8, 50, 5, ("constant", "grouped"), torch.float32, dict(z=False, D=True, bias=False, softplus=True)),
    (2, 4, 29, 2, ("grouped", "shared"), torch.bfloat16, NONE),
    (2, 3, 17, 1, ("shared", "constant"), torch.bfloat16, ALL),
]


def _case_id(c) -> str:
    return f"b{c[0]}d{c[1]}L{c[2]}n{c[3]}-{c[4][0]}-{c[4][1]}-{str(c[5])[6:]}"


# every case with automatic segments; those spanning two or more 16-step checkpoint chunks also
# forced to one segment (a single chunk is one segment anyway)
SEGMENT_CASES = [pytest.param(c, None, id=f"{_case_id(c)}-auto-segments") for c in CASES] + [
    pytest.param(c, 1, id=f"{_case_id(c)}-one-segment") for c in CASES if c[2] > 16
]


@pytest.mark.parametrize("case,segments", SEGMENT_CASES)
def test_against_oracle(case, segments):
    """Tiny batch x channel counts: with L > 16 the sequence splits into parallel segments
    (one per 16-step checkpoint chunk) unless forced to one."""
    b, d, L, n, layout, dtype, opt = case
    inp = make_inputs(b, d, L, n, layout, dtype, seed=L + n)
    for key, name in (("z", "z"), ("D", "D"), ("bias", "delta_bias")):
        if not opt[key]:
            inp[name] = None
    check(inp, opt["softplus"], segments=segments)


def test_grouped_four_groups_state_one():
    """VMamba-like: n = 1, 4 groups of 2 channels (two programs per group)."""
    inp = make_inputs(1, 8, 21, 1, ("grouped", "grouped"), torch.float32, groups=4, seed=5)
    inp["z"] = None
    check(inp, True)


@pytest.mark.parametrize("segments", [None, 1], ids=["auto-segments", "one-segment"])
def test_out_dtype_float32_from_bf16_and_last_state_gradient(segments):
    inp = make_inputs(1, 4, 26, 4, ("shared", "shared"), torch.bfloat16, seed=7)
    check(inp, True, out_dtype=torch.float32, last_grad=True, segments=segments)


def test_segments_spanning_several_checkpoint_chunks():
    """Two segments of three 16-step checkpoint chunks (the last one partial), constant B, grouped C."""
    assert _segments(1, 4, 5, forced=2) == (2, 3)
    inp = make_inputs(1, 4, 70, 3, ("constant", "grouped"), torch.float32, seed=19)
    check(inp, True, last_grad=True, segments=2)


def test_non_contiguous_inputs():
    inp = make_inputs(2, 4, 20, 4, ("grouped", "shared"), torch.float32, seed=9)
    # same values, transposed storage
    for k in ("u", "delta", "z"):
        inp[k] = inp[k].transpose(1, 2).contiguous().transpose(1, 2)
    inp["B"] = inp["B"].transpose(2, 3).contiguous().transpose(2, 3)
    inp["C"] = inp["C"].transpose(1, 2).contiguous().transpose(1, 2)
    inp["A"] = inp["A"].t().contiguous().t()
    assert not inp["u"].is_contiguous() and not inp["A"].is_contiguous()
    check(inp, True)


def test_largest_state():
    inp = make_inputs(1, 2, 9, 256, ("shared", "shared"), torch.float32, seed=11)
    inp["z"] = None
    check(inp, True)


def test_inference_without_grad_matches_training_forward():
    inp = make_inputs(1, 4, 30, 4, ("shared", "shared"), torch.float32, seed=13)
    with torch.no_grad():
        out, last = selective_scan_triton(**inp, delta_softplus=True, return_last_state=True, options=SHORT)
        out_only = selective_scan_triton(**inp, delta_softplus=True, options=SHORT)
    ref_out, ref_last = selective_scan_oracle(**inp, delta_softplus=True)
    torch.testing.assert_close(out.double(), ref_out, rtol=6e-4, atol=2e-3)
    torch.testing.assert_close(last.double(), ref_last, rtol=6e-4, atol=2e-3)
    torch.testing.assert_close(out_only, out)


@pytest.mark.parametrize("backend", ["ref", "torch"])
def test_dispatcher_out_dtype_on_cpu_backends(backend):
    from ssm_apps.kernels import selective_scan

    inp = make_inputs(1, 4, 12, 3, ("shared", "shared"), torch.bfloat16, seed=17)
    out = selective_scan(**inp, delta_softplus=True, backend=backend, out_dtype=torch.float32)
    ref, _ = selective_scan_oracle(**inp, delta_softplus=True)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=6e-4, atol=2e-3)
    assert selective_scan(**inp, backend=backend).dtype == torch.bfloat16
