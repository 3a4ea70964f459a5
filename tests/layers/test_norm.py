"""``LayerNorm2d`` backends against a float64 ``F.layer_norm`` oracle, forward and backward.

The Triton backend runs on CPU tensors through the Triton interpreter (tests/conftest.py sets
TRITON_INTERPRET=1), so "triton" is exercised here on 4-D and 5-D maps in both memory layouts;
"auto" on a CPU tensor is the PyTorch path.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssm_apps.layers import NORM_BACKENDS, LayerNorm2d, set_norm_backend
from ssm_apps.medical.blocks import ChannelLayerNorm

LAYOUTS = {4: torch.channels_last, 5: torch.channels_last_3d}


def make_input(shape: tuple[int, ...], channels_last: bool, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 2 + torch.randn(shape[0], 1, *shape[2:], generator=g)
    if channels_last:
        x = x.contiguous(memory_format=LAYOUTS[x.dim()])
    return x.requires_grad_()


def oracle(x: torch.Tensor, norm: LayerNorm2d) -> torch.Tensor:
    return F.layer_norm(x.double().movedim(1, -1), norm.normalized_shape, norm.weight.double(), norm.bias.double(),
                        norm.eps).movedim(-1, 1)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("output_format", ["channels_last", "preserve"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (2, 5, 3, 4, 6)])
def test_backends_match_float64_oracle(backend, output_format, channels_last, shape):
    norm = LayerNorm2d(shape[1], eps=1e-6, backend=backend, output_format=output_format)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = make_input(shape, channels_last, seed=sum(shape))
    xd = x.detach().double().requires_grad_()
    y, ref = norm(x), oracle(xd, norm)
    torch.testing.assert_close(y.double(), ref, rtol=2e-5, atol=2e-6)
    gy = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (y.double() * gy).sum().backward()
    dx_ref, dw_ref, db_ref = torch.autograd.grad((ref * gy).sum(), (xd, norm.weight, norm.bias))
    torch.testing.assert_close(x.grad.double(), dx_ref, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(norm.weight.grad.double(), dw_ref.double(), rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(norm.bias.grad.double(), db_ref.double(), rtol=2e-5, atol=2e-5)
    if backend == "triton":  # the output layout asked for
        expected = LAYOUTS[len(shape)] if output_format == "channels_last" or channels_last else torch.contiguous_format
        assert y.is_contiguous(memory_format=expected)


def test_auto_on_cpu_is_the_torch_path():
    x = make_input((2, 6, 5, 4, 3), False, seed=3)
    auto, torch_path = LayerNorm2d(6, backend="auto"), LayerNorm2d(6, backend="torch")
    assert torch.equal(auto(x), torch_path(x))


def test_channel_layer_norm_defaults():
    norm = ChannelLayerNorm(8)
    assert (norm.eps, norm.backend, norm.output_format) == (1e-6, "auto", "preserve")


def test_set_norm_backend_counts_and_sets():
    model = torch.nn.Sequential(LayerNorm2d(4), torch.nn.Conv2d(4, 4, 1), ChannelLayerNorm(4))
    assert set_norm_backend(model, "triton") == 2
    assert [m.backend for m in model if isinstance(m, LayerNorm2d)] == ["triton", "triton"]


@pytest.mark.parametrize("kwargs, match", [
    ({"backend": "cuda"}, "argument 'backend' must be one of"),
    ({"output_format": "nhwc"}, "argument 'output_format' must be one of"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LayerNorm2d(4, **kwargs)
    if "backend" in kwargs:
        with pytest.raises(ValueError, match=match):
            set_norm_backend(LayerNorm2d(4), kwargs["backend"])
    assert set(NORM_BACKENDS) == {"torch", "triton", "auto"}
