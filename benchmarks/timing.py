"""Timing helpers shared by the benchmark scripts (CUDA-aware; CPU falls back to wall time)."""
from __future__ import annotations

import time
from collections.abc import Callable

import torch


def sync(device: str | torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: str | torch.device, iters: int, warmup: int = 3) -> float:
    """Median seconds of one ``fn()`` over ``iters`` calls after ``warmup`` calls: CUDA events on a CUDA
    device (GPU time of each call), ``time.perf_counter`` on CPU."""
    for _ in range(warmup):
        fn()
    sync(device)
    cuda = torch.device(device).type == "cuda"
    times = []
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def mean_seconds(fn: Callable[[], object], device: str | torch.device, warmup: int, iters: int) -> float:
    """Mean seconds per call of ``iters`` back-to-back ``fn()`` calls after ``warmup`` calls (wall time
    between two device synchronisations, so host overhead between calls counts)."""
    for _ in range(warmup):
        fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t) / iters
