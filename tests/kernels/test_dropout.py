"""ssm_apps.kernels.dropout against the definition of dropout: each element zeroed independently with
probability p, the rest scaled by 1 / (1 - p); the gradient is the same mask and scale."""
from __future__ import annotations

import math

import pytest
import torch

from ssm_apps.kernels.dropout import dropout
from ssm_apps.layers import Dropout


def _binomial_bound(n: int, p: float, sigmas: float = 6.0) -> float:
    return sigmas * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_dropout_values_rate_and_independence(p, dtype):
    torch.manual_seed(0)
    x = torch.rand(64, 33, 257, dtype=dtype) + 0.5  # no zeros: a zero in the output is a dropped element
    out = dropout(x, p, backend="numba")
    assert out.shape == x.shape and out.dtype == dtype
    kept = out != 0
    scale = torch.tensor(1.0 / (1.0 - p), dtype=dtype)
    torch.testing.assert_close(out[kept], x[kept] * scale, rtol=0, atol=0)
    n = kept.numel()
    assert abs(1 - kept.double().mean().item() - p) < _binomial_bound(n, p)
    # neighbours (along every axis) and the next call's mask are uncorrelated
    k = kept.double() - kept.double().mean()
    bound = 6.0 / math.sqrt(n)
    for a, b in [(k[..., 1:], k[..., :-1]), (k[:, 1:], k[:, :-1]), (k[1:], k[:-1]),
                 (k, (dropout(x, p, backend="numba") != 0).double() - (1 - p))]:
        corr = (a * b).mean() / (a.std() * b.std())
        assert abs(corr.item()) < bound


def test_numba_dropout_gradient_is_the_forward_mask():
    torch.manual_seed(1)
    x = (torch.rand(8, 11, 96) + 0.5).requires_grad_()
    w = torch.randn(8, 11, 96)
    out = dropout(x, 0.3, backend="numba")
    (out * w).sum().backward()
    expected = w * (out.detach() != 0) / (1 - 0.3)
    torch.testing.assert_close(x.grad, expected, rtol=1e-6, atol=1e-6)


def test_numba_dropout_is_repeatable_under_manual_seed_and_keeps_non_contiguous_inputs():
    x = torch.randn(16, 40).t()  # non-contiguous
    torch.manual_seed(7)
    a = dropout(x, 0.5, backend="numba")
    torch.manual_seed(7)
    b = dropout(x, 0.5, backend="numba")
    assert torch.equal(a, b)
    kept = a != 0
    torch.testing.assert_close(a[kept], x[kept] * 2.0, rtol=0, atol=0)


def test_dropout_edge_cases_and_errors():
    x = torch.randn(5, 7)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0, backend="numba"), torch.zeros_like(x))
    with pytest.raises(ValueError, match="'p' must be in \\[0, 1\\]; got 1.5"):
        dropout(x, 1.5)
    with pytest.raises(RuntimeError, match="float32 or float64 tensor; got torch.bfloat16"):
        dropout(x.bfloat16(), 0.5, backend="numba")
    with pytest.raises(ValueError, match="'backend' must be one of"):
        dropout(x, 0.5, backend="cuda")
    half = dropout(x.bfloat16(), 0.5)  # backend None: torch's kernel for other dtypes
    assert half.dtype == torch.bfloat16


def test_dropout_module_is_nn_dropout_with_the_numba_path():
    layer = Dropout(0.25)
    assert isinstance(layer, torch.nn.Dropout) and layer.state_dict() == {}
    x = torch.rand(4, 300) + 0.5
    out = layer(x)
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] / 0.75, rtol=1e-6, atol=0)
    assert 0 < (~kept).sum() < x.numel()
    assert layer.eval()(x) is x
