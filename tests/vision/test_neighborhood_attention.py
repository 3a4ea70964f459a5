"""Neighbourhood attention (NATTEN 0.17 semantics) against a brute-force masked full-attention oracle."""
from __future__ import annotations

import pytest
import torch

from ssm_apps.layers.neighborhood_attention import (
    na2d_av,
    na2d_qk,
    neighborhood_attention_2d,
)


def dense_na_reference(q, k, v, kernel_size, rpb=None):
    """Full attention over all H*W keys with a -inf mask outside each query's clamped window and the
    bias looked up per (query, key) pair; written from the definition, float64."""
    b, heads, height, width, d = q.shape
    ks = kernel_size
    rows = torch.arange(height)
    cols = torch.arange(width)
    si = (rows - ks // 2).clamp(0, height - ks)  # window start per query row
    sj = (cols - ks // 2).clamp(0, width - ks)
    in_rows = (rows[None, :] >= si[:, None]) & (rows[None, :] < si[:, None] + ks)  # (i, a)
    in_cols = (cols[None, :] >= sj[:, None]) & (cols[None, :] < sj[:, None] + ks)  # (j, b)
    mask = (in_rows[:, None, :, None] & in_cols[None, :, None, :]).reshape(height * width, height * width)
    logits = torch.einsum("bhqd,bhkd->bhqk", q.reshape(b, heads, -1, d), k.reshape(b, heads, -1, d))
    if rpb is not None:
        da = rows[None, :] - rows[:, None] + ks - 1  # (i, a): a - i + k - 1
        db = cols[None, :] - cols[:, None] + ks - 1
        da = da.clamp(0, 2 * ks - 2)
        db = db.clamp(0, 2 * ks - 2)
        bias = rpb[:, da[:, None, :, None], db[None, :, None, :]]  # (heads, i, j, a, b)
        logits = logits + bias.reshape(heads, height * width, height * width)
    logits = logits.masked_fill(~mask, float("-inf"))
    out = logits.softmax(-1) @ v.reshape(b, heads, -1, d)
    return out.view(b, heads, height, width, d)


def _inputs(shape, kernel_size, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(*shape, generator=g, dtype=dtype) for _ in range(3))
    rpb = torch.randn(shape[1], 2 * kernel_size - 1, 2 * kernel_size - 1, generator=g, dtype=dtype)
    return q, k, v, rpb


@pytest.mark.parametrize("shape,ks", [((2, 3, 9, 13, 8), 5), ((1, 2, 7, 11, 4), 7), ((1, 1, 5, 3 + 2, 6), 3)])
def test_torch_backend_matches_dense_reference_forward_backward(shape, ks):
    q, k, v, rpb = _inputs(shape, ks)
    leaves = [t.clone().requires_grad_() for t in (q, k, v, rpb)]
    ref_leaves = [t.clone().requires_grad_() for t in (q, k, v, rpb)]
    out = neighborhood_attention_2d(*leaves[:3], ks, rpb=leaves[3], backend="torch")
    ref = dense_na_reference(*ref_leaves[:3], ks, rpb=ref_leaves[3])
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    grad = torch.randn_like(ref)
    torch.autograd.backward(out, grad)
    torch.autograd.backward(ref, grad)
    for name, a, b in zip("qkvr", leaves, ref_leaves):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-10, rtol=1e-10, msg=f"grad of {name}")


def test_qk_and_av_follow_natten_layout_and_gradcheck():
    """The logits of query (i, j) are in neighbour order kh * k + kw over the clamped window."""
    q, k, v, rpb = _inputs((1, 2, 6, 7, 3), 3, seed=1)
    attn = na2d_qk(q, k, 3, rpb)
    i, j = 5, 0  # bottom-left corner: window rows 3..5, cols 0..2
    for kh in range(3):
        for kw in range(3):
            a, b = 3 + kh, 0 + kw
            expect = (q[0, 1, i, j] * k[0, 1, a, b]).sum() + rpb[1, a - i + 2, b - j + 2]
            torch.testing.assert_close(attn[0, 1, i, j, kh * 3 + kw], expect)
    small = [t[:, :, :5, :4].clone().requires_grad_() for t in (q, k)]
    torch.autograd.gradcheck(lambda a, b: na2d_qk(a, b, 3), small)
    w = torch.randn(1, 2, 5, 4, 9, dtype=torch.float64, requires_grad=True)
    vv = v[:, :, :5, :4].clone().requires_grad_()
    torch.autograd.gradcheck(lambda a, b: na2d_av(a, b, 3), (w, vv))


def test_flex_backend_matches_dense_reference_forward():
    """Forward on CPU (flex_attention has no CPU backward; the GPU benchmark checks its gradients)."""
    shape, ks = (1, 2, 9, 11, 16), 5
    q, k, v, rpb = _inputs(shape, ks, dtype=torch.float32, seed=2)
    out = neighborhood_attention_2d(q, k, v, ks, rpb=rpb, backend="flex")
    ref = dense_na_reference(q.double(), k.double(), v.double(), ks, rpb=rpb.double())
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=2e-5)


def test_bad_arguments_raise_clear_errors():
    q = torch.randn(1, 1, 4, 6, 8)
    with pytest.raises(ValueError, match="at least kernel_size"):
        na2d_qk(q, q, 5)
    with pytest.raises(ValueError, match="odd int"):
        na2d_qk(q, q, 4)
    with pytest.raises(ValueError, match="rpb"):
        na2d_qk(q, q, 3, torch.zeros(2, 5, 5))
    with pytest.raises(ValueError, match="backend"):
        neighborhood_attention_2d(q, q, q, 3, backend="natten")


def test_auto_backend_on_cpu_is_the_torch_path():
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 2, 9, 7, 8, generator=g) for _ in range(3))
    rpb = torch.randn(2, 5, 5, generator=g)
    assert torch.equal(neighborhood_attention_2d(q, k, v, 3, rpb, backend="auto"),
                       neighborhood_attention_2d(q, k, v, 3, rpb, backend="torch"))
