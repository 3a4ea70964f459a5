"""Tile configurations of the Triton scan kernels and their cached, autotuned launchers."""
from __future__ import annotations

from typing import NamedTuple

import torch
import triton

from ..._backend import interpreting
from ..options import TritonScanOptions
from ._common import _next_pow2

#: The one configuration run by the Triton interpreter (which cannot autotune).
INTERPRET_CONFIG = {"T": 8, "BD": 2, "num_warps": 1}


def _l_bucket(length: int) -> int:
    return min(_next_pow2(length), 1 << 16)



def _configs(kind: str, nb: int, cap: int, options: TritonScanOptions) -> list[triton.Config]:
    """Tile shapes (T, BD; one warp) for kernel ``kind`` ("fwd"/"bwd"), padded state nb, BD <= cap,
    T dividing ``options.checkpoint_steps``; only the first with ``options.first_config_only``.

    The lanes of the warp split into ``lanes_n`` on NB and 32 / lanes_n on BD, so T stays inside a
    thread. Candidates: the base split, one with twice the lanes on NB (twice the programs), and
    for the forward kernel one with half (a cheaper sum over n). T is sized so a thread holds
    about 32-64 tile elements in the forward kernels and 16-32 in the backward one. One warp per
    program measured fastest on an H100 (two or more put warps on NB or cost occupancy).
    """
    if interpreting():
        c = INTERPRET_CONFIG  # T = 8 divides every allowed checkpoint_steps
        return [triton.Config({"T": c["T"], "BD": c["BD"]}, num_warps=c["num_warps"], num_stages=1)]
    base = min(nb, 4 if nb <= 16 else (16 if nb <= 64 else 32))
    splits = [base] + ([2 * base] if 2 * base <= min(nb, 32) else [])
    if kind == "fwd" and base >= 2 and nb // (base // 2) <= 8:
        splits.append(base // 2)
    out = []
    for lanes_n in splits:
        bd = 32 // lanes_n
        if bd > cap:
            continue
        per_thread_nd = nb // lanes_n
        if kind == "fwd":
            t_hi = max(8, min(32, 64 // per_thread_nd))
        else:
            t_hi = max(8, min(16, 32 // per_thread_nd))
        ts = {t_hi, max(8, t_hi // 2)}
        if per_thread_nd == 1:  # every [T, BD] tile is as large as the 3D one: also try short T
            ts.add(max(8, t_hi // 4))
        for t in sorted(ts):
            out.append(triton.Config({"T": t, "BD": bd}, num_warps=1, num_stages=1))
    if not out:  # fewer channels per group than lanes: T spreads over lanes (correct, slower)
        out.append(triton.Config({"T": 8, "BD": 1}, num_warps=1, num_stages=1))
    fitting = [c for c in out if options.checkpoint_steps % c.kwargs["T"] == 0]
    if not fitting:  # a short checkpoint interval: the shortest sub-chunk, 8 steps
        fitting = [triton.Config({"T": 8, "BD": out[0].kwargs["BD"]}, num_warps=1, num_stages=1)]
    return fitting[:1] if options.first_config_only else fitting


class _Launcher:
    """An autotuned kernel whose chosen configuration is then launched directly.

    The first call for a key runs ``triton.autotune`` (which benchmarks the candidates and
    caches its pick); later calls with that key skip the autotuner's per-call bookkeeping.
    """

    def __init__(self, fn, configs, reset_to_zero=None):
        self.fn = fn
        self.tuner = triton.autotune(configs=configs, key=["key_n", "key_L", "key_P", "key_F"],
                                     reset_to_zero=reset_to_zero)(fn)
        self.best: dict = {}

    def __call__(self, grid, key: tuple, **kwargs) -> None:
        """Launch on ``grid`` with the kernel's arguments by name; ``key`` identifies the tuning case."""
        cfg = self.best.get(key)
        if cfg is None:
            self.tuner[grid](**kwargs)
            self.best[key] = self.tuner.best_config
        else:
            self.fn[grid](**kwargs, **cfg.all_kwargs())


_TUNED: dict = {}
#: the same launchers by the arguments of ``_launcher`` (one dict look-up per launch)
_BY_CALL: dict = {}
#: kind -> (kernel, configuration family "fwd" / "bwd", outputs zeroed between the autotuner's trial
#: runs: those accumulated with atomics); filled by the kernel modules through ``register``.
_KERNELS: dict = {}


def register(kind: str, fn, config_kind: str, reset_to_zero: list[str] | None = None) -> None:
    """Make kernel ``fn`` launchable as ``kind`` through ``_launcher``."""
    _KERNELS[kind] = (fn, config_kind, reset_to_zero)


def _tuning_keys(nb: int, length: int, batch: int, dim: int) -> dict[str, int]:
    """The autotuning keys the kernels take: padded state size, bucketed length, padded rows."""
    return {"key_n": nb, "key_L": _l_bucket(length), "key_P": _next_pow2(batch * dim)}


class LauncherKey(NamedTuple):
    """What a cached launcher (and so its tuning) is specific to."""

    kind: str
    nb: int
    cap: int
    interpreting: bool
    first_config_only: bool
    checkpoint_steps: int
    device: str


def _launcher(kind: str, nb: int, dg: int, device: torch.device, options: TritonScanOptions) -> _Launcher:
    """The launcher for (kernel, n bucket, channel cap, options, device); cached so its tuning persists.

    Keyed by device too: the tuning found on one GPU is not reused on another (of another kind,
    or another load)."""
    fast_key = (kind, nb, dg, device, options)
    launcher = _BY_CALL.get(fast_key)
    if launcher is None:
        cap = min(_next_pow2(dg), 128)
        key = LauncherKey(kind, nb, cap, interpreting(), options.first_config_only, options.checkpoint_steps,
                          str(device))
        if key not in _TUNED:
            fn, cfg_kind, reset = _KERNELS[kind]
            _TUNED[key] = _Launcher(fn, _configs(cfg_kind, nb, cap, options), reset)
        launcher = _BY_CALL[fast_key] = _TUNED[key]
    return launcher


def tuned_launchers() -> dict[LauncherKey, _Launcher]:
    """A copy of the launcher cache (benchmarks report the tiles the autotuner chose)."""
    return dict(_TUNED)

