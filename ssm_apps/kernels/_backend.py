"""Backend selection shared by every kernel family: one Triton check, one interpreter check.

``pick_backend`` is the only place that turns a user's ``backend=`` argument into the backend that
runs; ``device_guard`` is the context every Triton host launch runs under; ``tensor_cache`` is the
one cache for the tensors the kernel families build per shape (index maps, masks).
"""
from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch


_F = TypeVar("_F", bound=Callable)


def tensor_cache(maxsize: int = 256) -> Callable[[_F], _F]:
    """``functools.lru_cache`` for functions that build tensors (index maps, masks), building them with
    inference mode off: a tensor first made under ``torch.inference_mode`` is an inference tensor, and
    autograd refuses to save it when a later training call gets it from the cache."""
    def wrap(fn: _F) -> _F:
        @functools.lru_cache(maxsize=maxsize)
        @functools.wraps(fn)
        def cached(*args):
            with torch.inference_mode(False):
                return fn(*args)
        return cached  # type: ignore[return-value]
    return wrap


BACKEND_ENV = "SSM_APPS_SCAN_BACKEND"  # the default backend where a call passes backend=None


def interpreting() -> bool:
    """True when Triton runs its interpreter (``TRITON_INTERPRET=1``, the CPU tests)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_available(device: torch.device) -> bool:
    """True when the Triton backend can run on ``device`` (a CUDA device with triton installed)."""
    if device.type != "cuda":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def numba_available() -> bool:
    """True when numba can be imported (the compiled CPU backends' only requirement)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def needs_autograd(*tensors: object) -> bool:
    """True when autograd is recording and one of ``tensors`` (non-tensors ignored) requires a gradient."""
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def pick_backend(fn: str, backend: object, device: torch.device, allowed: Sequence[str]) -> str:
    """The backend a call runs on.

    Args:
        fn: the public function's name, for error messages.
        backend: the caller's choice: one of ``allowed``, or None for the environment variable
            ``SSM_APPS_SCAN_BACKEND`` where it names one of ``allowed``, else "triton" where
            ``triton_available(device)`` holds, "numba" on a CPU device where numba is installed and
            the function has that backend, and "torch" otherwise.
        device: the device of the call's tensors.
        allowed: the backends the function implements.

    Returns:
        The backend name.

    Raises:
        ValueError: ``backend`` is not one of ``allowed``.
        RuntimeError: "triton" was asked for where it cannot run.
    """
    if backend is None and os.environ.get(BACKEND_ENV) in allowed:
        backend = os.environ[BACKEND_ENV]
    if backend is None:
        if triton_available(device):
            return "triton"
        return "numba" if device.type == "cpu" and "numba" in allowed and numba_available() else "torch"
    if backend not in allowed:
        raise ValueError(f"{fn}: argument 'backend' must be one of {tuple(allowed)} or None; got {backend!r}")
    if backend == "triton" and not triton_available(device):
        raise RuntimeError(f"{fn}: backend 'triton' needs a CUDA tensor and triton installed; got device {device}")
    if backend == "numba" and (device.type != "cpu" or not numba_available()):
        raise RuntimeError(f"{fn}: backend 'numba' needs a CPU tensor and numba installed; got device {device}")
    return backend  # type: ignore[return-value]


def device_guard(device: torch.device) -> contextlib.AbstractContextManager:
    """The context a Triton launch on ``device``'s tensors runs under.

    ``torch.cuda.device(device)`` for a CUDA device, so that kernels are launched on (and their
    autotuning benchmarked on) the tensors' GPU whatever the current device is; a no-op for the
    CPU tensors of the Triton interpreter.
    """
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()
