"""Fused Triton neighbourhood attention (``kernels.na.na2d_triton``, ``backend="triton"``) against a float64 oracle.

The kernel runs on CPU tensors through the Triton interpreter (tests/conftest.py sets
TRITON_INTERPRET=1 before triton is imported), with 4 x 4 query tiles and key blocks of 16
pixels: the odd, non-square maps below leave partial tiles on both axes, border tiles whose
key region is clamped, and several key blocks per tile (some with no visible key for some
queries). D = 8 / 12 / 16 are padded to the 16-wide D tile (12: not a power of two).
The oracle is full attention over all H*W keys with a mask for each query's clamped window,
written from the definition (no window gathers), in float64.
"""
from __future__ import annotations

import pytest
import torch

from ssm_apps.kernels._backend import interpreting
from ssm_apps.kernels.na import na2d_triton
from ssm_apps.layers.neighborhood_attention import neighborhood_attention_2d

TOL = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (2e-2, 2e-2)}  # (rtol, atol x max|ref|)


@pytest.fixture(autouse=True)
def interpreter():
    assert interpreting(), "TRITON_INTERPRET=1 must be set before triton is imported"


def oracle(q, k, v, kernel_size, rpb=None):
    """Masked full attention, float64: key (a, b) is visible to query (i, j) iff it lies in the window
    of side k starting at min(max(x - k // 2, 0), L - k) on both axes; logit q . k + rpb[h, a-i+k-1, b-j+k-1]."""
    bsz, heads, height, width, d = q.shape
    ks = kernel_size
    q, k, v = (t.double() for t in (q, k, v))
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
    logits = logits.masked_fill(~visible, float("-inf")).reshape(bsz, heads, height, width, height * width)
    weights = logits.softmax(dim=-1)
    return torch.einsum("zhijn,zhnd->zhijd", weights, v.reshape(bsz, heads, height * width, d))


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


def close(actual, expected, dtype, name):
    rtol, atol = TOL[dtype]
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
    out = na2d_triton(q, k, v, ks, rpb)
    assert out.dtype == dtype and out.shape == q.shape and out.is_contiguous()
    close(out, oracle(q, k, v, ks, rpb), dtype, "out")
    via_layer = neighborhood_attention_2d(q, k, v, ks, rpb=rpb, backend="triton")
    torch.testing.assert_close(via_layer, out, rtol=0, atol=0)


def test_backward_through_layer_matches_oracle():
    shape, ks = (1, 2, 9, 11, 12), 5
    q, k, v, rpb = inputs(shape, ks, torch.float32, seed=7, layout="qkv_view")
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v, rpb)]
    ref_leaves = [t.detach().double().requires_grad_() for t in (q, k, v, rpb)]
    out = neighborhood_attention_2d(*leaves[:3], ks, rpb=leaves[3], backend="triton")
    ref = oracle(*ref_leaves[:3], ks, rpb=ref_leaves[3])
    close(out, ref.detach(), torch.float32, "out")
    grad = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out.backward(grad.float())
    ref.backward(grad)
    for name, a, b in zip(("q", "k", "v", "rpb"), leaves, ref_leaves):
        assert a.grad.dtype == a.dtype
        close(a.grad, b.grad, torch.float32, f"grad of {name}")


def test_backward_only_requested_grads():
    shape, ks = (1, 1, 7, 8, 8), 3
    q, k, v, rpb = inputs(shape, ks, torch.float32, seed=11)
    v.requires_grad_()
    out = neighborhood_attention_2d(q, k, v, ks, rpb=rpb, backend="triton")
    (gv,) = torch.autograd.grad(out.sum(), v)
    vd = v.detach().double().requires_grad_()
    (ref,) = torch.autograd.grad(oracle(q, k, vd, ks, rpb).sum(), vd)
    close(gv, ref, torch.float32, "grad of v")


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
