"""ssm_apps.kernels.conv1d.causal_conv1d against its definition, written as a float64 loop over time:
y[:, c, t] = act(bias[c] + sum_k w[c, k] x[:, c, t - (K - 1) + k]), x zero before the start; gradients
of the oracle by autograd through that loop. Tolerance for the float32 kernels: 2e-5 relative + absolute
(errors seen ~1e-6 at values ~10)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssm_apps.kernels.conv1d import causal_conv1d

TOL = dict(rtol=2e-5, atol=2e-5)


def oracle(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, activation: str | None) -> torch.Tensor:
    batch, dim, length = x.shape
    taps = w.shape[1]
    cols = []
    for t in range(length):
        acc = torch.zeros(batch, dim, dtype=torch.float64) if b is None else b.expand(batch, dim)
        for k in range(taps):
            s = t - (taps - 1) + k
            if s >= 0:
                acc = acc + w[:, k] * x[:, :, s]
        cols.append(acc)
    y = torch.stack(cols, dim=-1)
    return y * torch.sigmoid(y) if activation == "silu" else y


def _inputs(batch: int, dim: int, length: int, taps: int, bias: bool, strided: bool):
    if strided:  # Mamba's layout: the first half of in_proj's (b, L, 2d) output, seen as (b, d, L)
        x = torch.randn(batch, length, 2 * dim)[..., :dim].transpose(1, 2)
    else:
        x = torch.randn(batch, dim, length)
    w = torch.randn(dim, taps) * 0.7
    b = torch.randn(dim) if bias else None
    return [t.requires_grad_() if t is not None else None for t in (x, w, b)]


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("batch,dim,length,taps,bias,activation,strided", [
    (3, 70, 13, 4, True, "silu", True),     # a partial channel block, Mamba's strided input
    (2, 130, 5, 2, False, None, False),     # no bias, no activation, contiguous (b, d, L)
    (1, 64, 1, 3, True, "silu", False),     # one step: only the last tap sees data
    (4, 200, 9, 1, True, "silu", True),     # K = 1: a per-channel affine map
    (2, 96, 3, 4, True, None, True),        # L < K - 1: the start padding reaches every output
])
def test_causal_conv1d_matches_the_definition_forward_and_backward(backend, batch, dim, length, taps, bias,
                                                                   activation, strided):
    torch.manual_seed(batch * 1000 + dim + taps)
    x, w, b = _inputs(batch, dim, length, taps, bias, strided)
    y = causal_conv1d(x, w, b, activation, backend=backend)
    assert y.shape == (batch, dim, length) and y.dtype == torch.float32
    leaves = [t for t in (x, w, b) if t is not None]
    grad_y = torch.randn(batch, dim, length)
    grads = torch.autograd.grad(y, leaves, grad_y)

    leaves64 = [t.detach().double().requires_grad_() for t in leaves]
    x64, w64 = leaves64[:2]
    y64 = oracle(x64, w64, leaves64[2] if bias else None, activation)
    grads64 = torch.autograd.grad(y64, leaves64, grad_y.double())
    torch.testing.assert_close(y.double(), y64, **TOL)
    for name, g, g64 in zip(("x", "weight", "bias"), grads, grads64):
        assert g.shape == g64.shape, name
        torch.testing.assert_close(g.double(), g64, **TOL, msg=lambda m, name=name: f"d{name}: {m}")


def test_numba_output_is_token_major_memory_and_equals_the_torch_backend():
    torch.manual_seed(3)
    x, w, b = _inputs(2, 150, 7, 4, True, True)
    y = causal_conv1d(x, w, b, "silu", backend="numba")
    assert y.transpose(1, 2).is_contiguous()  # (b, L, d) memory: what the numba scan reads without a copy
    torch.testing.assert_close(y, causal_conv1d(x, w, b, "silu", backend="torch"), **TOL)


def test_default_backend_follows_device_dtype_and_the_environment(monkeypatch):
    torch.manual_seed(4)
    x, w, b = (t.detach() for t in _inputs(2, 80, 6, 4, True, False))
    assert causal_conv1d(x, w, b).transpose(1, 2).is_contiguous()  # float32 CPU: numba
    y64 = causal_conv1d(x.double(), w.double(), b.double(), "silu")  # float64: torch, dtype kept
    assert y64.dtype == torch.float64 and not y64.transpose(1, 2).is_contiguous()
    monkeypatch.setenv("SSM_APPS_SCAN_BACKEND", "torch")
    y = causal_conv1d(x, w, b)
    assert not y.transpose(1, 2).is_contiguous()  # the torch backend: a slice of conv1d's (b, d, L + K - 1)
    expected = F.conv1d(x, w.unsqueeze(1), b, padding=3, groups=80)[..., :6]
    torch.testing.assert_close(y, expected)


def test_causal_conv1d_errors_name_the_argument():
    x, w, b = torch.randn(2, 8, 5), torch.randn(8, 4), torch.randn(8)
    with pytest.raises(ValueError, match=r"'x' must be \(b, d, L\); got shape \(8, 5\)"):
        causal_conv1d(x[0], w, b)
    with pytest.raises(ValueError, match=r"'weight' must be \(d=8, K\); got shape \(8, 1, 4\)"):
        causal_conv1d(x, w.unsqueeze(1), b)
    with pytest.raises(ValueError, match=r"'bias' must be \(d=8,\); got shape \(4,\)"):
        causal_conv1d(x, w, b[:4])
    with pytest.raises(ValueError, match="'activation' must be one of"):
        causal_conv1d(x, w, b, "relu")
    with pytest.raises(ValueError, match="'backend' must be one of"):
        causal_conv1d(x, w, b, backend="triton")
    with pytest.raises(RuntimeError, match="needs a float32 tensor; got torch.float64"):
        causal_conv1d(x.double(), w.double(), b.double(), backend="numba")
