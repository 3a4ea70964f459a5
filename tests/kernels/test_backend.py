"""Backend selection, the device guard around Triton launches, the launcher cache and TritonScanOptions.

The guard and the cache are checked on CPU: ``torch.cuda.device`` is replaced by a recorder, and the
Triton interpreter (switched on by tests/conftest.py) runs the launches on CPU tensors.
"""
from __future__ import annotations

import contextlib
from typing import ClassVar

import pytest
import torch

from ssm_apps.kernels import (
    TritonScanOptions,
    _backend,
    cross_merge,
    cross_scan,
    selective_scan,
)
from ssm_apps.kernels.patterns import triton as patterns_triton
from ssm_apps.kernels.scan.triton import autotune, bwd, fwd, segments


def test_pick_backend():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    allowed = ("ref", "torch", "triton")
    assert _backend.pick_backend("f", None, cpu, allowed) == "torch"
    assert _backend.pick_backend("f", "ref", cpu, allowed) == "ref"
    with pytest.raises(ValueError, match=r"f: argument 'backend' must be one of \('ref', 'torch', 'triton'\) "
                                         r"or None; got 'cuda'"):
        _backend.pick_backend("f", "cuda", cpu, allowed)
    with pytest.raises(RuntimeError, match="f: backend 'triton' needs a CUDA tensor and triton installed; got device cpu"):
        _backend.pick_backend("f", "triton", cpu, allowed)
    assert _backend.triton_available(cpu) is False
    assert _backend.pick_backend("f", None, cuda, allowed) == ("triton" if _backend.triton_available(cuda) else "torch")


class _RecordingDevice:
    """Stands in for ``torch.cuda.device``: records the device and how deep the guards are nested."""

    entered: ClassVar[list] = []
    depth = 0

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        _RecordingDevice.entered.append(self.device)
        _RecordingDevice.depth += 1

    def __exit__(self, *exc):
        _RecordingDevice.depth -= 1


def test_device_guard_enters_the_tensors_cuda_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device", _RecordingDevice)
    monkeypatch.setattr(_RecordingDevice, "entered", [])
    with _backend.device_guard(torch.device("cuda", 1)):
        assert _RecordingDevice.depth == 1
    assert _RecordingDevice.entered == [torch.device("cuda", 1)] and _RecordingDevice.depth == 0
    assert isinstance(_backend.device_guard(torch.device("cpu")), contextlib.nullcontext)


def test_every_triton_launch_runs_under_the_device_guard(monkeypatch):
    """Each host launch (autotuned kernels, segment chains, pattern kernels) happens inside the guard,
    entered with the tensors' device."""
    from ssm_apps.kernels import _backend as backend_module

    assert backend_module.interpreting(), "TRITON_INTERPRET=1 must be set before triton is imported"
    guarded: list[tuple[str, torch.device]] = []
    launches: list[tuple[str, int]] = []

    @contextlib.contextmanager
    def guard(device):
        guarded.append(device)
        _RecordingDevice.depth += 1
        try:
            yield
        finally:
            _RecordingDevice.depth -= 1

    for module in (fwd, bwd, patterns_triton):
        monkeypatch.setattr(module, "device_guard", guard)
    call = autotune._Launcher.__call__
    monkeypatch.setattr(autotune._Launcher, "__call__",
                        lambda self, *a, **k: launches.append((self.fn.__name__, _RecordingDevice.depth))
                        or call(self, *a, **k))

    class Watched:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            def launch(**kwargs):
                launches.append((self.kernel.__name__, _RecordingDevice.depth))
                return self.kernel[grid](**kwargs)
            return launch

    for module, name in ((segments, "_seg_fwd_combine_kernel"), (segments, "_seg_bwd_combine_kernel"),
                         (patterns_triton, "_scan_kernel"), (patterns_triton, "_merge_kernel")):
        monkeypatch.setattr(module, name, Watched(getattr(module, name)))
    monkeypatch.setattr(backend_module, "triton_available", lambda device: True)

    g = torch.Generator().manual_seed(0)
    u = torch.randn(1, 2, 40, generator=g).requires_grad_()
    delta = (0.5 * torch.rand(1, 2, 40, generator=g)).requires_grad_()
    A, B, C = -0.5 * torch.rand(2, 2, generator=g), torch.randn(1, 2, 40, generator=g), torch.randn(1, 2, 40, generator=g)
    options = TritonScanOptions(checkpoint_steps=16, segments=3)  # three segments: the segment passes run too
    out = selective_scan(u, delta, A, B, C, delta_softplus=True, backend="triton", triton_options=options)
    out.sum().backward()
    x = torch.randn(1, 2, 3, 4, generator=g)
    cross_merge(cross_scan(x, "cross4", backend="triton"), "cross4", (3, 4), backend="triton")

    names = [name for name, _ in launches]
    for kernel in ("_scan_fwd_seg_kernel", "_seg_fwd_combine_kernel", "_scan_fwd_kernel", "_scan_bwd_seg_kernel",
                   "_seg_bwd_combine_kernel", "_scan_bwd_kernel", "_scan_kernel", "_merge_kernel"):
        assert kernel in names, kernel
    assert all(depth == 1 for _, depth in launches), launches
    assert guarded and all(device == torch.device("cpu") for device in guarded)


def test_launcher_cache_is_keyed_by_device_and_options():
    options = TritonScanOptions(checkpoint_steps=16)
    cpu, gpu0, gpu1 = torch.device("cpu"), torch.device("cuda", 0), torch.device("cuda", 1)
    first = autotune._launcher("fwd", 4, 4, gpu0, options)
    assert autotune._launcher("fwd", 4, 4, gpu0, options) is first
    assert autotune._launcher("fwd", 4, 4, gpu1, options) is not first
    assert autotune._launcher("fwd", 4, 4, cpu, options) is not first
    assert autotune._launcher("fwd", 4, 4, gpu0, TritonScanOptions(checkpoint_steps=32)) is not first
    keys = [k for k in autotune.tuned_launchers() if k.kind == "fwd" and k.nb == 4 and k.checkpoint_steps == 16]
    assert {k.device for k in keys} >= {"cuda:0", "cuda:1", "cpu"}


def test_compiled_configs_divide_the_checkpoint_interval(monkeypatch):
    """Off the interpreter the autotuner's sub-chunk lengths T must divide checkpoint_steps."""
    monkeypatch.setattr(autotune, "interpreting", lambda: False)
    for nb in (1, 4, 16, 64, 256):
        for kind in ("fwd", "bwd"):
            full = autotune._configs(kind, nb, 128, TritonScanOptions())
            short = autotune._configs(kind, nb, 128, TritonScanOptions(checkpoint_steps=16))
            assert full and all(256 % c.kwargs["T"] == 0 for c in full)
            assert all(c.kwargs["T"] <= 16 for c in short)
            assert autotune._configs(kind, nb, 128, TritonScanOptions(first_config_only=True)) == full[:1]


def test_options_are_checked():
    with pytest.raises(ValueError, match=r"'checkpoint_steps' must be a power of two >= 8; got 24"):
        TritonScanOptions(checkpoint_steps=24)
    with pytest.raises(ValueError, match=r"'segments' must be a positive int or None; got 0"):
        TritonScanOptions(segments=0)
    with pytest.raises(AttributeError):
        TritonScanOptions().segments = 2  # frozen
    g = torch.Generator().manual_seed(1)
    u, delta = torch.randn(1, 2, 5, generator=g), torch.rand(1, 2, 5, generator=g)
    A, B, C = -torch.rand(2, 3, generator=g), torch.randn(1, 3, 5, generator=g), torch.randn(1, 3, 5, generator=g)
    with pytest.raises(TypeError, match="selective_scan: argument 'triton_options' must be a TritonScanOptions or None; "
                                        "got dict"):
        selective_scan(u, delta, A, B, C, triton_options={"segments": 2})
