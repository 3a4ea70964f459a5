"""``GraphedInference``: argument checks and the eager path for inputs off CUDA.

The capture itself needs a CUDA device: ``benchmarks/bench_vision_gpu.py --cuda-graph`` times
inference through this class on the GPU (and records a capture failure in its row).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ssm_apps.training.cuda_graphs import GraphedInference


def test_cpu_inputs_run_the_model_eagerly_without_grad():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    graphed = GraphedInference(model)
    x = torch.randn(2, 3, 8, 8)
    out = graphed(x)
    with torch.no_grad():
        expected = model(x)
    assert torch.equal(out, expected)
    assert not out.requires_grad
    assert graphed.num_graphs == 0


@pytest.mark.parametrize("kwargs, error, match", [
    ({"model": lambda x: x}, TypeError, "argument 'model' must be an nn.Module"),
    ({"model": nn.Identity(), "warmup": 0}, ValueError, "argument 'warmup' must be an int >= 1"),
])
def test_bad_arguments_name_themselves(kwargs, error, match):
    with pytest.raises(error, match=match):
        GraphedInference(**kwargs)


def test_non_tensor_input_is_refused():
    with pytest.raises(TypeError, match="the input must be a tensor; got list"):
        GraphedInference(nn.Identity())([1, 2])
