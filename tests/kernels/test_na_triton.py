"""Fused Triton neighbourhood attention (``kernels.na``, ``backend="triton"``), forward and backward, against a
float64 oracle.

The kernels run on CPU tensors through the Triton interpreter (tests/conftest.py sets
TRITON_INTERPRET=1 before triton is imported), with 4 x 4 query / key tiles and blocks of 16
pixels: the odd, non-square maps below leave partial tiles on both axes, border tiles whose
key / query region is clamped, and several blocks per tile (some with no visible pair for some
rows); maps with a side equal to k (every query sees the whole axis) and much larger than k
(interior and border windows). D = 8 / 12 / 16 are padded to the 16-wide D tile (12: not a power
of two). The oracle is full attention over all H*W keys with a mask for each query's clamped
window, written from the definition (no window gathers), in float64; gradients are its autograd's.
"""
from __future__ import annotations

import pytest
import torch

from ssm_apps.kernels._backend import interpreting
from ssm_apps.kernels.na import na2d_triton, na2d_triton_backward
from ssm_apps.layers.neighborhood_attention import neighborhood_attention_2d

TOL = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (2e-2, 2e-2)}  # (rtol, atol x max|ref|)
GRAD_TOL = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (3e-2, 3e-2)}


@pytest.fixture(autouse=True)
def interpreter():
    assert interpreting(), "TRITON_INTERPRET=1 must be set before triton is imported"


def oracle_logits(q, k, kernel_size, rpb=None):
    """Masked logits, float64 (B, heads, H, W, H*W): key (a, b) is visible to query (i, j) iff it lies in the
    window of side k starting at min(max(x - k // 2, 0), L - k) on both axes; logit q . k + rpb[h, a-i+k-1, b-j+k-1],
    -inf elsewhere."""
    bsz, heads, height, width, d = q.shape
    ks = kernel_size
    q, k = q.double(), k.double()
    i = torch.arange(height).view(height, 1, 1, 1)
    j = torch.arange(width).view(1, width, 1, 1)
    a = torch.arange(height).view(1, 1, height, 1)
    b = torch.arange(width).view(1, 1, 1, width)
    si = torch.clamp(i - ks // 2, min=0, max=height - ks)
    sj = torch.clamp(j - ks // 2, min=0, max=width - ks)
    visible = (a >= si) & (a < si + ks) & (b >= sj) & (b < sj + ks)  # (H, W, H, W)
    logits = torch.einsum("zhijd,zhabd->zhijab", q, k)
    if rpb is not None:
        ra = (a - i + ks - 1).clamp(0, 2 * ks - 2)
        rb = (b - j + ks - 1).clamp(0, 2 * ks - 2)
        logits = logits + rpb.double()[:, ra, rb]  # (heads, H, W, H, W)
    return logits.masked_fill(~visible, float("-inf")).reshape(bsz, heads, height, width, height * width)


def oracle(q, k, v, kernel_size, rpb=None):
    """Masked full attention, float64 (see ``oracle_logits``)."""
    bsz, heads, height, width, d = q.shape
    weights = oracle_logits(q, k, kernel_size, rpb).softmax(dim=-1)
    return torch.einsum("zhijn,zhnd->zhijd", weights, v.double().reshape(bsz, heads, height * width, d))


def inputs(shape, ks, dtype, seed, layout="contiguous"):
    """q, k, v (shape, dtype) and a float32 rpb; ``layout="qkv_view"``: q, k, v permuted views of one
    (B, H, W, 3, heads, D) tensor, as SegMAN passes them."""
    g = torch.Generator().manual_seed(seed)
    bsz, heads, height, width, d = shape
    if layout == "qkv_view":
        qkv = torch.randn(bsz, height, width, 3, heads, d, generator=g).to(dtype)
        q, k, v = qkv.permute(3, 0, 4, 1, 2, 5).unbind(0)
        assert not q.is_contiguous()
    else:
        q, k, v = (torch.randn(*shape, generator=g).to(dtype) for _ in range(3))
    rpb = torch.randn(heads, 2 * ks - 1, 2 * ks - 1, generator=g)
    return q, k, v, rpb


def close(actual, expected, dtype, name, tol=TOL):
    rtol, atol = tol[dtype]
    torch.testing.assert_close(actual.double(), expected, rtol=rtol, atol=atol * expected.abs().max().item(),
                               msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize(
    "shape,ks,dtype,with_rpb,layout",
    [
        ((2, 2, 9, 7, 8), 3, torch.float32, True, "contiguous"),
        ((1, 2, 13, 11, 12), 5, torch.float32, True, "contiguous"),
        ((1, 2, 11, 12, 16), 7, torch.float32, False, "contiguous"),
        ((2, 2, 9, 10, 12), 5, torch.bfloat16, True, "contiguous"),
        ((1, 2, 11, 9, 8), 7, torch.bfloat16, False, "qkv_view"),
        ((2, 1, 7, 9, 16), 3, torch.float32, True, "qkv_view"),
    ],
)
def test_forward_matches_oracle(shape, ks, dtype, with_rpb, layout):
    q, k, v, rpb = inputs(shape, ks, dtype, seed=sum(shape) + ks, layout=layout)
    rpb = rpb if with_rpb else None
    out, lse = na2d_triton(q, k, v, ks, rpb, return_lse=True)
    assert out.dtype == dtype and out.shape == q.shape and out.is_contiguous()
    close(out, oracle(q, k, v, ks, rpb), dtype, "out")
    assert lse.dtype == torch.float32 and lse.shape == q.shape[:4]
    close(lse, oracle_logits(q, k, ks, rpb).logsumexp(-1), torch.float32, "lse")
    via_layer = neighborhood_attention_2d(q, k, v, ks, rpb=rpb, backend="triton")
    torch.testing.assert_close(via_layer, out, rtol=0, atol=0)


def grads(shape, ks, dtype, seed, layout="contiguous", with_rpb=True, wanted="qkvr", loss="random"):
    """The gradients of (q, k, v, rpb) through ``backend="triton"`` and through the float64 oracle, for the
    leaves named in ``wanted`` (None for the others). loss="random": a random output gradient, permuted
    (non-contiguous) for layout "qkv_view"; "sum": out.sum() (an expanded, stride-0 output gradient)."""
    q, k, v, rpb = inputs(shape, ks, dtype, seed=seed, layout=layout)
    tensors = (q, k, v, rpb if with_rpb else None)
    results = []
    for cast in (lambda t: t, torch.Tensor.double):
        leaves = [None if t is None else cast(t.detach()).requires_grad_(name in wanted)
                  for name, t in zip("qkvr", tensors)]
        if cast is torch.Tensor.double:
            out = oracle(*leaves[:3], ks, rpb=leaves[3])
        else:
            out = neighborhood_attention_2d(*leaves[:3], ks, rpb=leaves[3], backend="triton")
        if loss == "sum":
            out.sum().backward()
        else:
            b, heads, h, w, d = shape
            g = torch.randn(b, h, w, heads, d, generator=torch.Generator().manual_seed(seed + 1)).to(dtype)
            g = g.permute(0, 3, 1, 2, 4) if layout == "qkv_view" else g.permute(0, 3, 1, 2, 4).contiguous()
            out.backward(cast(g))
        results.append([None if t is None else t.grad for t in leaves])
    return results


@pytest.mark.parametrize(
    "shape,ks,dtype,with_rpb,layout",
    [
        ((2, 2, 9, 7, 8), 3, torch.float32, True, "contiguous"),
        ((1, 2, 5, 13, 12), 5, torch.float32, True, "qkv_view"),  # H = k
        ((1, 1, 13, 7, 16), 7, torch.float32, True, "contiguous"),  # W = k
        ((1, 2, 13, 11, 12), 3, torch.float32, False, "qkv_view"),
        ((2, 1, 11, 9, 8), 5, torch.bfloat16, True, "qkv_view"),
        ((1, 2, 9, 7, 16), 7, torch.bfloat16, False, "contiguous"),  # W = k
    ],
)
def test_backward_matches_oracle(shape, ks, dtype, with_rpb, layout):
    actual, expected = grads(shape, ks, dtype, seed=sum(shape) * ks, layout=layout, with_rpb=with_rpb)
    for name, a, b in zip(("q", "k", "v", "rpb"), actual, expected):
        if not with_rpb and name == "rpb":
            assert a is None
            continue
        assert a.dtype == (torch.float32 if name == "rpb" else dtype) and a.shape == b.shape
        close(a, b, dtype, f"grad of {name}", tol=GRAD_TOL)


@pytest.mark.parametrize("wanted,loss", [("v", "sum"), ("qr", "random"), ("k", "random"), ("r", "sum"),
                                         ("kv", "random"), ("qkv", "random")])
def test_backward_only_requested_grads(wanted, loss):
    actual, expected = grads((1, 1, 7, 9, 8), 3, torch.float32, seed=11, wanted=wanted, loss=loss)
    for name, a, b in zip("qkvr", actual, expected):
        if name in wanted:
            close(a, b, torch.float32, f"grad of {name}", tol=GRAD_TOL)
        else:
            assert a is None


def test_backward_function_computes_only_what_is_asked():
    shape, ks = (1, 1, 7, 8, 8), 3
    q, k, v, rpb = inputs(shape, ks, torch.float32, seed=5)
    out, lse = na2d_triton(q, k, v, ks, rpb, return_lse=True)
    grad = torch.ones_like(out)
    dq, dk, dv, dlogits = na2d_triton_backward(grad, q, k, v, out, lse, ks, rpb, (False, False, True, False))
    assert dq is None and dk is None and dlogits is None and dv.shape == shape
    dq, dk, dv, dlogits = na2d_triton_backward(grad, q, k, v, out, lse, ks, None, (True, False, False, True))
    assert dk is None and dv is None and dlogits is None and dq.shape == shape  # no bias: no bias gradient
    assert na2d_triton_backward(grad, q, k, v, out, lse, ks, rpb, (False,) * 4) == (None,) * 4


def test_bad_arguments_raise_value_error_naming_the_argument():
    q = torch.randn(1, 2, 7, 8, 8)
    nat = neighborhood_attention_2d
    with pytest.raises(ValueError, match="'q'"):
        nat(q[0], q, q, 3, backend="triton")
    with pytest.raises(ValueError, match="'k'"):
        nat(q, q[:, :, :6], q, 3, backend="triton")
    with pytest.raises(ValueError, match="'v'"):
        nat(q, q, q[..., :4], 3, backend="triton")
    with pytest.raises(ValueError, match="'kernel_size'"):
        nat(q, q, q, 4, backend="triton")
    with pytest.raises(ValueError, match="at least kernel_size"):
        nat(q, q, q, 9, backend="triton")
    with pytest.raises(ValueError, match="'rpb'"):
        nat(q, q, q, 3, rpb=torch.zeros(2, 3, 3), backend="triton")
    with pytest.raises(ValueError, match="'k'"):
        na2d_triton(q, q.double(), q, 3)
    with pytest.raises(ValueError, match="'q'"):
        na2d_triton(q.double(), q.double(), q.double(), 3)
