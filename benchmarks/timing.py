"""Timing helpers shared by the benchmark scripts (CUDA-aware; CPU falls back to wall time)."""
from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch


def sync(device: str | torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def cpu_description() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` where there is one) and the vector ISA PyTorch uses, e.g.
    ``"AMD EPYC, AVX2"``: CPU ratios differ between machines (AVX2 vs AVX-512 GEMMs), so results name both."""
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}"


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
