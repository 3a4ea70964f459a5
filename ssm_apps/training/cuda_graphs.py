"""Inference replayed from CUDA graphs: ``GraphedInference``.

Eager VMamba inference on an H200 is host-bound (the Python and launch work of ~1,000 kernels per
forward takes longer than the kernels themselves); replaying the forward from a CUDA graph removes that
work: with this capture method (warm-up on a side stream, autocast's cache off), VMamba-T bf16 inference
ran at 6,178 img/s graphed against 3,848 eager in one H200 run (batch 128, 224^2; 8,763 with the Triton
LayerNorm; ``benchmarks/bench_vision_gpu.py --cuda-graph``, which now times inference through this class).
Use it where the input shape repeats (a fixed batch and crop)::

    from ssm_apps.training.cuda_graphs import GraphedInference
    graphed = GraphedInference(model.cuda().eval())
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = graphed(images)        # captured on the first call of this shape, replayed after

One graph per (shape, dtype, device, autocast dtype) of the input, captured on first use after a few
warm-up calls on a side stream (autotuning and cuDNN's algorithm choice happen there, not in the graph).
The graph reads the model's parameters in place: later in-place weight updates are seen, replaced
parameter tensors are not (build a new ``GraphedInference`` then). Inputs not on CUDA run the model eagerly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

__all__ = ["GraphedInference"]


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    static_input: torch.Tensor
    static_output: Any


class GraphedInference:
    """Calls ``model(x)`` under ``torch.no_grad()``, from a CUDA graph per input signature on CUDA.

    Args:
        model: the network (put it in eval mode first); called with one tensor.
        warmup: eager calls on a side stream before a capture (>= 1).
    """

    def __init__(self, model: nn.Module, warmup: int = 3) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"GraphedInference: argument 'model' must be an nn.Module; got {type(model).__name__}")
        if not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"GraphedInference: argument 'warmup' must be an int >= 1; got {warmup!r}")
        self.model, self.warmup = model, warmup
        self._graphs: dict[tuple, _Captured] = {}

    @property
    def num_graphs(self) -> int:
        """How many graphs have been captured (one per input signature seen on CUDA)."""
        return len(self._graphs)

    def __call__(self, x: torch.Tensor) -> Any:
        """x: the model's input tensor -> the model's output (tensors cloned out of the graph's memory)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"GraphedInference: the input must be a tensor; got {type(x).__name__}")
        if not x.is_cuda:
            with torch.no_grad():
                return self.model(x)
        amp = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None
        key = (tuple(x.shape), x.dtype, x.device, amp)
        captured = self._graphs.get(key) or self._capture(x, amp, key)
        captured.static_input.copy_(x)
        captured.graph.replay()
        return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, captured.static_output)

    def _capture(self, x: torch.Tensor, amp: torch.dtype | None, key: tuple) -> _Captured:
        static_input = x.clone()

        def run() -> Any:
            # autocast's weight-cast cache must be off inside a capture (its casts belong in the graph)
            with torch.no_grad(), torch.autocast("cuda", dtype=amp or torch.float32, enabled=amp is not None,
                                                 cache_enabled=False):
                return self.model(static_input)

        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                run()
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = run()
        self._graphs[key] = _Captured(graph, static_input, static_output)
        return self._graphs[key]
