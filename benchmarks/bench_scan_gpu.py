"""GPU benchmark of the Triton selective scan against the torch backend and mamba_ssm's CUDA times.

    PYTHONPATH=. python benchmarks/bench_scan_gpu.py [--quick] [--rows NAME ...] [--no-small]

1. Small-shape sweep (compiled kernels, first tile configuration): every feature against the
   float64 oracle of tests/helpers/oracle.py -- B/C shared/grouped/constant, z, D, delta_bias, softplus,
   fp32/bf16, odd L, L = 1, several checkpoint chunks, n from 1 to 256, out_dtype, last-state grad.
2. For each row: correctness at full size against the torch backend in fp32 compute (inputs
   upcast), then the timed bf16 (or fp32) case also checked against the torch backend; any
   mismatch beyond mamba_ssm's tolerances raises. Then forward and backward are timed with
   ``triton.testing.do_bench`` (median), the torch backend likewise, and achieved bandwidth
   (bytes the kernels must read + write, over time) is compared with a device-to-device copy.
Prints a table and writes benchmarks/results/scan_<gpu-name-slug>.json (after every row).

Rows: bf16 inputs (one fp32 row), fp32 A = -[1..n], delta_softplus with Mamba's dt init
(softplus(delta_bias) log-uniform in [1e-3, 1e-1], delta ~ 0.1 N(0, 1)), D and delta_bias given;
B/C shared (b, n, L) for g1, grouped (b, g, n, L) otherwise.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS_DIR = REPO / "benchmarks" / "results"
DEV = "cuda"

# (name, b, d, L, n, g, z, dtype, mamba_ssm 2.3.2 fwd ms, bwd ms on H100)
ROWS = [
    ("lm-1.4b", 8, 4096, 2048, 16, 1, True, torch.bfloat16, 1.17, 4.80),
    ("lm-small", 8, 1536, 2048, 16, 1, True, torch.bfloat16, 0.45, 1.85),
    ("vmamba-t-s1-n1", 64, 384, 3136, 1, 4, False, torch.bfloat16, 0.54, 1.44),
    ("vmamba-t-s1-n16", 64, 384, 3136, 16, 4, False, torch.bfloat16, 2.69, 10.2),
    ("vmamba-t-s3-n1", 64, 1536, 196, 1, 4, False, torch.bfloat16, 0.15, 0.45),
    ("long-65k", 1, 1024, 65536, 16, 1, True, torch.bfloat16, 1.47, 5.66),
    ("lm-small-fp32", 8, 1536, 2048, 16, 1, True, torch.float32, 0.88, 2.05),
]
QUICK_ROWS = ("lm-small", "vmamba-t-s3-n1", "lm-small-fp32")

TOL = {torch.float32: (6e-4, 2e-3), torch.bfloat16: (3e-2, 5e-2)}
GRAD_SCALE = {"u": (2, 2), "delta": (5, 10)}
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


class Mismatch(AssertionError):
    pass


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def make_row_inputs(b, d, L, n, g, use_z, dtype, seed=0, device=None):
    device = device or DEV
    gen = torch.Generator(device=device).manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=gen, device=device)  # noqa: E731
    dt0 = torch.exp(torch.rand(d, generator=gen, device=device) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    bc_shape = (b, n, L) if g == 1 else (b, g, n, L)
    return dict(
        u=rn(b, d, L).to(dtype),
        delta=(0.1 * rn(b, d, L)).to(dtype),
        A=-torch.arange(1, n + 1, dtype=torch.float32, device=device).repeat(d, 1).contiguous(),
        B=rn(*bc_shape).to(dtype),
        C=rn(*bc_shape).to(dtype),
        D=torch.ones(d, device=device),
        z=rn(b, d, L).to(dtype) if use_z else None,
        delta_bias=(dt0 + torch.log(-torch.expm1(-dt0))).float(),
    )


def run_scan(inp, backend, grad_out=None, grad_last=None, out_dtype=None, triton_options=None):
    from ssm_apps.kernels import selective_scan

    leaves = {k: v.detach().clone().requires_grad_() for k, v in inp.items() if v is not None}
    args = {k: leaves.get(k) for k in NAMES}
    out, last = selective_scan(**args, delta_softplus=True, return_last_state=True, backend=backend,
                               out_dtype=out_dtype, triton_options=triton_options)
    grads = {}
    if grad_out is not None:
        loss = (out.float() * grad_out.float()).sum()
        if grad_last is not None:
            loss = loss + (last * grad_last).sum()
        names = list(leaves)
        gs = torch.autograd.grad(loss, [leaves[k] for k in names])
        grads = dict(zip(names, gs))
    return out.detach(), last.detach(), grads


def compare(name, got, ref, dtype, scale=(1, 1), report=None):
    rtol, atol = TOL[dtype]
    rtol, atol = rtol * scale[0], atol * scale[1]
    got, ref = got.double(), ref.to(got.device).double()
    if not torch.isfinite(got).all():
        raise Mismatch(f"{name}: non-finite values")
    err = (got - ref).abs()
    bound = atol + rtol * ref.abs()
    worst = (err / bound).max().item()
    rel = (err.norm() / ref.norm().clamp_min(1e-30)).item()
    if report is not None:
        report[name] = {"max_err_over_tol": worst, "rel_l2": rel}
    if worst > 1.0:
        i = int((err / bound).argmax())
        raise Mismatch(f"{name}: |diff| {err.flatten()[i].item():.3e} > atol {atol:.1e} + rtol {rtol:.1e} * "
                       f"|ref| {ref.abs().flatten()[i].item():.3e} (max ratio {worst:.2f}, rel L2 {rel:.2e})")


def check_pair(inp, dtype, ref_backend="torch", out_dtype=None, last_grad=False, ref_fn=None, seed=1,
               triton_options=None):
    """Triton (run as ``triton_options`` says) vs a reference (torch backend, or ``ref_fn``) on the same
    inputs: out, last state, grads."""
    dev = inp["u"].device
    b, d, L = inp["u"].shape
    gen = torch.Generator(device=dev).manual_seed(seed)
    out_t = out_dtype or inp["u"].dtype
    grad_out = torch.randn(b, d, L, generator=gen, device=dev).to(out_t)
    grad_last = torch.randn(b, d, inp["A"].shape[1], generator=gen, device=dev) if last_grad else None
    out, last, grads = run_scan(inp, "triton", grad_out, grad_last, out_dtype, triton_options)
    if ref_fn is None:
        r_out, r_last, r_grads = run_scan(inp, ref_backend, grad_out, grad_last, out_dtype)
    else:
        r_out, r_last, r_grads = ref_fn(inp, grad_out, grad_last)
    report = {}
    compare("out", out, r_out, dtype, report=report)
    compare("last_state", last, r_last, dtype, report=report)
    for k in grads:
        compare(f"d{k}", grads[k], r_grads[k], dtype, GRAD_SCALE.get(k, (1, 1)), report)
    return report


def _load_oracle():
    """tests/helpers/oracle.py loaded by path (it needs only torch; the tests package would need pytest)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_scan_oracle", REPO / "tests" / "helpers" / "oracle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.selective_scan_oracle


def oracle_ref(inp, grad_out, grad_last):
    selective_scan_oracle = _load_oracle()

    leaves = {k: v.detach().cpu().double().requires_grad_() for k, v in inp.items() if v is not None}
    out, last = selective_scan_oracle(**{k: leaves.get(k) for k in NAMES}, delta_softplus=True)
    loss = (out * grad_out.cpu().double()).sum()
    if grad_last is not None:
        loss = loss + (last * grad_last.cpu().double()).sum()
    names = list(leaves)
    gs = torch.autograd.grad(loss, [leaves[k] for k in names])
    return out.detach(), last.detach(), dict(zip(names, gs))


# The small-shape sweep: b, d, L, n, (B, C) layouts (s shared, g grouped, c constant), dtype, z, D, bias, extra
SMALL_SWEEP_CASES = [
    (2, 8, 37, 8, ("s", "s"), torch.float32, True, True, True, {}),
    (1, 5, 1, 4, ("s", "s"), torch.float32, False, False, False, {}),
    (2, 8, 601, 16, ("g", "g"), torch.bfloat16, True, True, True, {}),
    (2, 8, 300, 16, ("s", "s"), torch.float32, True, True, True, {"last_grad": True}),
    (2, 6, 19, 3, ("c", "c"), torch.float32, True, False, True, {}),
    (1, 8, 50, 5, ("c", "g"), torch.float32, False, True, False, {}),
    (2, 8, 129, 2, ("g", "s"), torch.bfloat16, False, False, False, {}),
    (2, 12, 263, 1, ("g", "g"), torch.float32, False, True, True, {"groups": 4}),
    (1, 4, 40, 64, ("s", "s"), torch.float32, True, True, True, {}),
    (1, 2, 33, 256, ("s", "c"), torch.float32, False, True, True, {}),
    (2, 8, 77, 16, ("s", "s"), torch.bfloat16, True, True, True, {"out_dtype": torch.float32}),
    (2, 8, 601, 16, ("s", "s"), torch.float32, True, True, True, {"segments": 1, "last_grad": True}),
    (1, 4, 1100, 4, ("g", "c"), torch.float32, True, True, True, {"segments": 3, "last_grad": True}),
    (2, 32, 700, 1, ("g", "g"), torch.bfloat16, False, True, True, {"groups": 4}),
]


def small_sweep(keep_going=False, failures=None) -> list[dict]:
    """Compiled kernels vs the float64 oracle on small shapes covering every feature."""
    from ssm_apps.kernels import TritonScanOptions

    results = []
    for b, d, L, n, lay, dtype, use_z, use_D, use_bias, extra in SMALL_SWEEP_CASES:
        gen = torch.Generator(device=DEV).manual_seed(L * 7 + n)
        rn = lambda *s: torch.randn(*s, generator=gen, device=DEV)  # noqa: E731
        groups = extra.get("groups", 2)
        shapes = {"c": (d, n), "s": (b, n, L), "g": (b, groups, n, L)}
        inp = dict(
            u=rn(b, d, L).to(dtype), delta=(0.5 * torch.rand(b, d, L, generator=gen, device=DEV)).to(dtype),
            A=-0.5 * torch.rand(d, n, generator=gen, device=DEV),
            B=rn(*shapes[lay[0]]).to(dtype), C=rn(*shapes[lay[1]]).to(dtype),
            D=rn(d) if use_D else None, z=rn(b, d, L).to(dtype) if use_z else None,
            delta_bias=0.5 * torch.rand(d, generator=gen, device=DEV) if use_bias else None,
        )
        tag = f"b{b} d{d} L{L} n{n} {lay[0]}{lay[1]} {str(dtype)[6:]} z{int(use_z)}D{int(use_D)}bias{int(use_bias)} {extra}"
        t0 = time.time()
        # first tile configuration only: quick compiled checks
        options = TritonScanOptions(first_config_only=True, segments=extra.get("segments"))
        try:
            report = check_pair(inp, dtype, ref_fn=oracle_ref, out_dtype=extra.get("out_dtype"),
                                last_grad=extra.get("last_grad", False), triton_options=options)
        except Mismatch as e:
            if not keep_going:
                raise Mismatch(f"small case {tag}: {e}") from e
            print(f"  small FAILED {tag}: {e}", flush=True)
            failures.append(f"small {tag}: {e}")
            results.append({"case": tag, "error": str(e)})
            continue
        worst = max(v["max_err_over_tol"] for v in report.values())
        print(f"  small ok  {tag:60s} worst err/tol {worst:.3f}  ({time.time() - t0:.1f}s)", flush=True)
        results.append({"case": tag, "worst_err_over_tol": worst})
    return results


def copy_bandwidth(do_bench) -> float:
    x = torch.empty(2**28, dtype=torch.float32, device="cuda").normal_()  # 1 GiB
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x), warmup=50, rep=300, return_mode="median")
    return 2 * x.numel() * 4 / (ms * 1e-3)


def row_bytes(inp, out_dtype):
    """Bytes the forward / backward kernels must move (each input read once, each output written once)."""
    es = inp["u"].element_size()
    bdl = inp["u"].numel()
    bc = (inp["B"].numel() + inp["C"].numel()) * inp["B"].element_size()
    small = sum(inp[k].numel() * 4 for k in ("A", "D", "delta_bias") if inp[k] is not None)
    n_big = 3 if inp["z"] is not None else 2  # u, delta, (z)
    out_es = torch.empty((), dtype=out_dtype).element_size()
    fwd = n_big * bdl * es + bc + small + bdl * out_es
    bwd = n_big * bdl * es + bc + small + bdl * out_es + n_big * bdl * es + bc + small  # reads + grads
    return fwd, bwd


def time_backend(inp, backend, do_bench, warmup, rep):
    from ssm_apps.kernels import selective_scan
    from ssm_apps.kernels.scan.triton import selective_scan_triton

    leaves = {k: v.detach().clone().requires_grad_() for k, v in inp.items() if v is not None}
    args = {k: leaves.get(k) for k in NAMES}

    def fwd():
        if backend == "triton":  # the Triton autograd op itself, like mamba_ssm's selective_scan_fn
            return selective_scan_triton(**args, delta_softplus=True)
        return selective_scan(**args, delta_softplus=True, backend=backend)

    out = fwd()
    grad_out = torch.randn_like(out)
    params = list(leaves.values())

    def bwd():
        torch.autograd.grad(out, params, grad_out, retain_graph=True)

    bwd()
    if DEV == "cuda":
        torch.cuda.synchronize()
    f = do_bench(fwd, warmup=warmup, rep=rep, return_mode="median")
    b = do_bench(bwd, warmup=warmup, rep=rep, return_mode="median")
    return f, b


def tuning_snapshot():
    """The tile configuration chosen per (kernel, key), and the autotuner's last timings per kernel."""
    from ssm_apps.kernels.scan.triton import autotune

    snap = {}
    for key, launcher in autotune.tuned_launchers().items():
        if key.first_config_only:  # launchers of the small sweeps
            continue
        entry = {"chosen": {str(k[:4]): str(c) for k, c in launcher.best.items()}}
        timings = getattr(launcher.tuner, "configs_timings", None)
        if timings:
            entry["last_timings_ms"] = {str(c): (t[0] if isinstance(t, (list, tuple)) else t) for c, t in timings.items()}
        snap[f"{key.kind}-nb{key.nb}-cap{key.cap}"] = entry
    return snap


def measure_row(spec, do_bench, warmup, rep, copy_bw, keep_going=False, no_torch_time=False, failures=None):
    """Check one row at full size (fp32 compute, then its own dtype) against the torch backend; time it."""
    name, b, d, L, n, g, use_z, dtype, m_fwd, m_bwd = spec
    t0 = time.time()
    inp = make_row_inputs(b, d, L, n, g, use_z, dtype)
    try:
        # 1) full-size correctness in fp32 compute (inputs upcast), against the torch backend
        inp32 = {k: (v.float() if v is not None else None) for k, v in inp.items()}
        check32 = check_pair(inp32, torch.float32)
        del inp32
        if DEV == "cuda":
            torch.cuda.empty_cache()
        # 2) the timed dtype, same inputs, against the torch backend
        check_dt = check_pair(inp, dtype) if dtype != torch.float32 else check32
    except Mismatch as e:
        if not keep_going:
            raise Mismatch(f"row {name}: {e}") from e
        print(f"  {name}: CHECK FAILED: {e}", flush=True)
        failures.append(f"{name}: {e}")
        check32 = check_dt = {"error": str(e)}
    t_check = time.time() - t0
    # 3) timing
    f_ms, b_ms = time_backend(inp, "triton", do_bench, warmup, rep)
    snap = tuning_snapshot()
    if no_torch_time:
        tf_ms = tb_ms = float("nan")
    else:
        tf_ms, tb_ms = time_backend(inp, "torch", do_bench, max(5, warmup // 5), max(20, rep // 5))
    fwd_bytes, bwd_bytes = row_bytes(inp, dtype)
    return {
        "name": name, "b": b, "d": d, "L": L, "n": n, "g": g, "z": use_z, "dtype": str(dtype)[6:],
        "fwd_ms": f_ms, "bwd_ms": b_ms, "torch_fwd_ms": tf_ms, "torch_bwd_ms": tb_ms,
        "mamba_fwd_ms": m_fwd, "mamba_bwd_ms": m_bwd,
        "fwd_speedup_vs_mamba": m_fwd / f_ms, "bwd_speedup_vs_mamba": m_bwd / b_ms,
        "fwd_target_met": m_fwd / f_ms >= 1.25, "bwd_target_met": m_bwd / b_ms >= 1.0,
        "fwd_bytes": fwd_bytes, "bwd_bytes": bwd_bytes,
        "fwd_GBps": fwd_bytes / (f_ms * 1e-3) / 1e9, "bwd_GBps": bwd_bytes / (b_ms * 1e-3) / 1e9,
        "fwd_frac_copy_bw": fwd_bytes / (f_ms * 1e-3) / copy_bw,
        "bwd_frac_copy_bw": bwd_bytes / (b_ms * 1e-3) / copy_bw,
        "check_fp32_vs_torch": check32, "check_timed_dtype_vs_torch": check_dt,
        "check_s": t_check, "tuning": snap,
    }


# Fused 2-D scan (selective_scan_2d, "cross4") at VMamba-T stage 1: (name, b, c, H, W, n, official VMamba
# chain fwd ms, fwd+bwd ms on H100 (given by the issue)).
FUSED_2D_ROWS = [
    ("vmamba-t-s1-c96", 64, 96, 56, 56, 1, 1.08, 2.85),
    ("vmamba-t-s1-c192", 64, 192, 56, 56, 1, 2.13, 5.61),
]


# Small fused-scan checks on compiled kernels: b, c, sizes, n, pattern, segments
FUSED_SMALL_CASES = [
    (2, 8, (9, 7), 1, "cross4", None), (1, 4, (30, 30), 1, "cross4", None), (2, 6, (7, 9), 4, "omni8", None),
    (2, 5, (5, 6), 4, "bidi", None), (1, 4, (5, 6, 7), 4, "tri6", None), (1, 4, (20, 30), 4, "cross4", 1),
]


def fused_2d_section(do_bench, warmup: int, rep: int, failures: list) -> dict:
    """Fused cross4 scan vs our own unfused chain (cross_scan -> Triton selective_scan -> cross_merge).

    1. Small shapes on compiled kernels (first tile configuration; atomics and masks are what the
       interpreter cannot check): the fused Triton path vs the torch-backend chain in fp32, out and
       every gradient, for cross4 / bidi / omni8 / tri6, n 1 and 4, with and without segments.
    2. Per row (bf16, delta_softplus, D and delta_bias; B/C per pixel (b, 4, n, H, W)):
       fused vs the chain with the plain Triton scan (delta/B/C gathered into scan order inside the
       graph, so the gradients compare directly), fp32 and bf16; then forward (grad-enabled) and
       forward+backward medians (do_bench) of the fused call -- both merge schemes, float32 atomics
       and a per-route buffer; delta in (b, H, W, K, c) memory as SS2D writes it, and once
       channel-first (the wrapper then copies it) -- and of the chain with delta/B/C in scan order.
    Any mismatch beyond mamba_ssm's tolerances is recorded in ``failures`` (main raises at the end).
    """
    from ssm_apps.kernels import (
        cross_merge,
        cross_merge_3d,
        cross_scan,
        cross_scan_3d,
        selective_scan_2d,
        selective_scan_3d,
    )
    from ssm_apps.kernels.fused.api import _index_i32, _to_scan_order
    from ssm_apps.kernels import TritonScanOptions
    from ssm_apps.kernels.scan.triton import selective_scan_triton

    out = {"rows": [], "small": []}
    names = ("x", "delta", "A", "B", "C", "D", "delta_bias")

    def inputs(b, c, sizes, n, k, dtype, seed):
        gen = torch.Generator(device=DEV).manual_seed(seed)
        rn = lambda *s: torch.randn(*s, generator=gen, device=DEV)  # noqa: E731
        dt0 = torch.exp(torch.rand(k * c, generator=gen, device=DEV) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        return dict(x=rn(b, c, *sizes).to(dtype), delta=(0.1 * rn(b, k, c, *sizes)).to(dtype),
                    A=-torch.arange(1, n + 1, dtype=torch.float32, device=DEV).repeat(k * c, 1) * 0.5,
                    B=rn(b, k, n, *sizes).to(dtype), C=rn(b, k, n, *sizes).to(dtype), D=rn(k * c),
                    delta_bias=(dt0 + torch.log(-torch.expm1(-dt0))).float())

    def chain(pattern, x, delta, A, B, C, D, delta_bias):
        """Unfused chain with the plain Triton scan; delta/B/C per pixel, gathered inside the graph."""
        b, c, *sizes = x.shape
        k, n, L = delta.shape[1], A.shape[1], x[0, 0].numel()
        idx = _index_i32(pattern, tuple(sizes), x.device).long()
        xs = (cross_scan_3d(x, pattern) if len(sizes) == 3 else cross_scan(x, pattern)).reshape(b, k * c, L)
        ys = selective_scan_triton(xs, _to_scan_order(delta.reshape(b, k, c, L), idx).reshape(b, k * c, L), A,
                                   _to_scan_order(B.reshape(b, k, n, L), idx), _to_scan_order(C.reshape(b, k, n, L), idx),
                                   D, None, delta_bias, True).view(b, k, c, L)
        return cross_merge_3d(ys, pattern, tuple(sizes)) if len(sizes) == 3 else cross_merge(ys, pattern, tuple(sizes))

    def fused(pattern, options=None, **kw):
        fn = selective_scan_3d if pattern == "tri6" else selective_scan_2d
        return fn(**kw, delta_softplus=True, pattern=pattern, backend="triton", triton_options=options)

    def outputs_and_grads(fn, inp, grad_out):
        leaves = {k: v.detach().clone().requires_grad_() for k, v in inp.items()}
        o = fn(**leaves)
        gs = torch.autograd.grad((o.float() * grad_out.float()).sum(), list(leaves.values()))
        return o.detach(), dict(zip(leaves, gs))

    def check(tag, inp, pattern, ref_fn, dtype, options=None):
        gen = torch.Generator(device=DEV).manual_seed(11)
        grad_out = torch.randn(inp["x"].shape, generator=gen, device=DEV).to(inp["x"].dtype)
        o, g = outputs_and_grads(lambda **kw: fused(pattern, options, **kw), inp, grad_out)
        ro, rg = outputs_and_grads(ref_fn, inp, grad_out)
        report = {}
        try:
            compare("out", o, ro, dtype, report=report)
            for k in names:
                compare(f"d{k}", g[k], rg[k], dtype, GRAD_SCALE.get({"x": "u"}.get(k, k), (1, 1)), report)
        except Mismatch as e:
            print(f"  fused 2d CHECK FAILED {tag}: {e}", flush=True)
            failures.append(f"fused 2d {tag}: {e}")
            return {"error": str(e)}
        worst = max(v["max_err_over_tol"] for v in report.values())
        print(f"  fused 2d ok  {tag:58s} worst err/tol {worst:.3f}", flush=True)
        return report

    # 1) small shapes, compiled, both merge schemes, vs the torch-backend chain in fp32
    for b, c, sizes, n, pattern, seg in FUSED_SMALL_CASES:
        k = {"cross4": 4, "bidi": 2, "omni8": 8, "tri6": 6}[pattern]
        inp = inputs(b, c, sizes, n, k, torch.float32, seed=b * 100 + c + n)
        torch_chain = (selective_scan_3d if pattern == "tri6" else selective_scan_2d)
        ref = lambda **kw: torch_chain(**kw, delta_softplus=True, pattern=pattern, backend="torch")  # noqa: E731
        for atomic in (True, False):
            options = TritonScanOptions(first_config_only=True, segments=seg, fused_atomic=atomic)
            tag = f"{pattern} b{b} c{c} {sizes} n{n} seg {seg} {'atomic' if atomic else 'route-buffer'}"
            out["small"].append({"case": tag, "check": check(tag, inp, pattern, ref, torch.float32, options)})

    # 2) VMamba-T stage 1
    for name, b, c, H, W, n, off_f, off_fb in FUSED_2D_ROWS:
        k, L, t0 = 4, H * W, time.time()
        row = {"name": name, "b": b, "c": c, "H": H, "W": W, "n": n, "K": k, "dtype": "bfloat16",
               "official_fwd_ms": off_f, "official_fwdbwd_ms": off_fb}
        inp = inputs(b, c, (H, W), n, k, torch.bfloat16, seed=c)
        delta_cf = inp["delta"]  # channel-first (b, K, c, H, W) memory
        # delta in (b, H, W, K, c) memory, as SS2D's projection writes it (read without a copy)
        inp["delta"] = delta_cf.permute(0, 3, 4, 1, 2).contiguous().permute(0, 3, 4, 1, 2)
        inp32 = {kk: v.float() for kk, v in inp.items()}
        ref = lambda **kw: chain("cross4", **kw)  # noqa: E731
        row["check_fp32_vs_chain"] = check(f"{name} fp32", inp32, "cross4", ref, torch.float32)
        del inp32
        row["check_bf16_vs_chain"] = check(f"{name} bf16", inp, "cross4", ref, torch.bfloat16)
        torch.cuda.empty_cache()

        def timed(fwd, leaves):
            o = fwd()
            g = torch.randn_like(o)
            fb = lambda: torch.autograd.grad(fwd(), leaves, g)  # noqa: E731
            fb()
            torch.cuda.synchronize()
            return (do_bench(fwd, warmup=warmup, rep=rep, return_mode="median"),
                    do_bench(fb, warmup=warmup, rep=rep, return_mode="median"))

        leaves = {kk: v.detach().clone().requires_grad_() for kk, v in inp.items()}
        for atomic in (True, False):
            options = TritonScanOptions(fused_atomic=atomic)
            f_ms, fb_ms = timed(lambda: fused("cross4", options, **leaves), list(leaves.values()))
            key = "fused_atomic" if atomic else "fused_route_buffer"
            row[f"{key}_fwd_ms"], row[f"{key}_fwdbwd_ms"] = f_ms, fb_ms
        cf = dict(leaves, delta=delta_cf.detach().clone().requires_grad_())  # + the wrapper's layout copy
        row["fused_atomic_channel_first_delta_fwd_ms"], row["fused_atomic_channel_first_delta_fwdbwd_ms"] = timed(
            lambda: fused("cross4", **cf), list(cf.values()))
        del cf
        # the chain with delta/B/C given in scan order (gathers outside the timed region)
        idx = _index_i32("cross4", (H, W), DEV).long()
        so = {"delta": _to_scan_order(inp["delta"].reshape(b, k, c, L), idx).reshape(b, k * c, L),
              "B": _to_scan_order(inp["B"].reshape(b, k, n, L), idx), "C": _to_scan_order(inp["C"].reshape(b, k, n, L), idx)}
        cl = {kk: (so.get(kk, v)).detach().clone().requires_grad_() for kk, v in inp.items()}

        def chain_fwd():
            xs = cross_scan(cl["x"], "cross4").reshape(b, k * c, L)
            ys = selective_scan_triton(xs, cl["delta"], cl["A"], cl["B"], cl["C"], cl["D"], None, cl["delta_bias"], True)
            return cross_merge(ys.view(b, k, c, L), "cross4", (H, W))

        row["chain_fwd_ms"], row["chain_fwdbwd_ms"] = timed(chain_fwd, list(cl.values()))
        best = min(("fused_atomic", "fused_route_buffer"), key=lambda kk: row[f"{kk}_fwdbwd_ms"])
        row["best_scheme"] = best
        row["fwd_ms"], row["fwdbwd_ms"] = row[f"{best}_fwd_ms"], row[f"{best}_fwdbwd_ms"]
        row["speedup_vs_chain_fwd"] = row["chain_fwd_ms"] / row["fwd_ms"]
        row["speedup_vs_chain_fwdbwd"] = row["chain_fwdbwd_ms"] / row["fwdbwd_ms"]
        row["speedup_vs_official_fwd"] = off_f / row["fwd_ms"]
        row["speedup_vs_official_fwdbwd"] = off_fb / row["fwdbwd_ms"]
        row["target_fwd_ms"], row["target_fwdbwd_ms"] = off_f / 2, off_fb / 2
        row["targets_met"] = {"fwd_le_half_official": row["fwd_ms"] <= off_f / 2 + 1e-9,
                              "fwdbwd_le_half_official": row["fwdbwd_ms"] <= off_fb / 2 + 1e-9,
                              "x1.5_vs_chain": min(row["speedup_vs_chain_fwd"], row["speedup_vs_chain_fwdbwd"]) >= 1.5}
        row["time_s"] = time.time() - t0
        out["rows"].append(row)
        print(f"  fused 2d {name}: fused fwd {row['fwd_ms']:.3f} / fwd+bwd {row['fwdbwd_ms']:.3f} ms ({best}; "
              f"atomic {row['fused_atomic_fwd_ms']:.3f}/{row['fused_atomic_fwdbwd_ms']:.3f}, route buffer "
              f"{row['fused_route_buffer_fwd_ms']:.3f}/{row['fused_route_buffer_fwdbwd_ms']:.3f}); chain "
              f"{row['chain_fwd_ms']:.3f}/{row['chain_fwdbwd_ms']:.3f} (x{row['speedup_vs_chain_fwd']:.2f}/"
              f"x{row['speedup_vs_chain_fwdbwd']:.2f}); official {off_f}/{off_fb} -> targets {row['targets_met']}",
              flush=True)
        del leaves, cl, inp, so
        torch.cuda.empty_cache()
    return out


def patterns_section(do_bench, warmup: int, rep: int, failures: list) -> dict:
    """Triton vs PyTorch cross_scan / cross_merge ("cross4") at VMamba-T stage 1: b 64, c 96, 56 x 56, bf16.

    First checks, on this GPU, that the Triton kernels are bit-identical (torch.equal) to the PyTorch
    backend: scan, merge, and both backwards (scan's is the merge, merge's is the scan); a mismatch is
    recorded in ``failures`` (main raises at the end). Then times each op forward (median of
    ``do_bench``) on both backends, with the bandwidth the minimal traffic implies (read the input
    once, write the output once). A few seconds.
    """
    from ssm_apps.kernels import cross_merge, cross_scan

    b, c, H, W, pattern, dtype = 64, 96, 56, 56, "cross4", torch.bfloat16
    gen = torch.Generator(device=DEV).manual_seed(0)
    x = torch.randn(b, c, H, W, generator=gen, device=DEV).to(dtype)
    ys = torch.randn(b, 4, c, H * W, generator=gen, device=DEV).to(dtype)
    ops = {
        "cross_scan": (lambda t, be: cross_scan(t, pattern, backend=be), x),
        "cross_merge": (lambda t, be: cross_merge(t, pattern, (H, W), backend=be), ys),
    }
    out = {"pattern": pattern, "b": b, "c": c, "H": H, "W": W, "dtype": str(dtype)[6:]}
    for name, (fn, inp) in ops.items():
        res = {}
        for be in ("triton", "torch"):
            leaf = inp.detach().clone().requires_grad_()
            y = fn(leaf, be)
            g = torch.randn(y.shape, generator=torch.Generator(device=DEV).manual_seed(1), device=DEV).to(dtype)
            (grad,) = torch.autograd.grad(y, leaf, g)
            res[be] = (y.detach(), grad)
        identical = all(torch.equal(a, r) for a, r in zip(res["triton"], res["torch"]))
        out[f"{name}_bit_identical"] = identical
        if not identical:
            diff = max((a.float() - r.float()).abs().max().item() for a, r in zip(res["triton"], res["torch"]))
            print(f"  patterns {name}: Triton != PyTorch (max |diff| {diff:.3e})", flush=True)
            failures.append(f"patterns {name}: Triton output or gradient differs from PyTorch (max |diff| {diff:.3e})")
        nbytes = (inp.numel() + res["torch"][0].numel()) * inp.element_size()
        for be in ("triton", "torch"):
            with torch.no_grad():
                ms = do_bench(lambda: fn(inp, be), warmup=warmup, rep=rep, return_mode="median")
            out[f"{name}_{be}_ms"] = ms
            out[f"{name}_{be}_GBps"] = nbytes / (ms * 1e-3) / 1e9
        del res
        print(f"  patterns {name} ({pattern}, b{b} c{c} {H}x{W} bf16): triton {out[f'{name}_triton_ms']:.3f} ms "
              f"({out[f'{name}_triton_GBps']:.0f} GB/s), torch {out[f'{name}_torch_ms']:.3f} ms "
              f"({out[f'{name}_torch_GBps']:.0f} GB/s), x{out[f'{name}_torch_ms'] / out[f'{name}_triton_ms']:.2f}, "
              f"bit-identical {identical}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="three rows, short timing runs")
    p.add_argument("--rows", nargs="+", help="only these rows (by name)")
    p.add_argument("--no-small", action="store_true", help="skip the small-shape oracle sweep")
    p.add_argument("--no-torch-time", action="store_true", help="skip timing the torch backend")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/scan_<gpu>.json)")
    p.add_argument("--keep-going", action="store_true", help="record a failed check and go on; raise at the end")
    p.add_argument("--no-patterns", action="store_true",
                   help="skip the Triton vs PyTorch cross_scan / cross_merge section (cross4, VMamba-T stage 1)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_scan_gpu.py needs a CUDA GPU")
    import triton
    from triton.testing import do_bench

    torch.backends.cuda.matmul.allow_tf32 = False
    gpu = torch.cuda.get_device_name()
    out_path = args.out or RESULTS_DIR / f"scan_{slug(gpu)}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    warmup, rep = (10, 40) if args.quick else (25, 200)
    rows = [r for r in ROWS if (args.rows and r[0] in args.rows) or (not args.rows and (not args.quick or r[0] in QUICK_ROWS))]
    t_start = time.time()
    result = {"gpu": gpu, "torch": torch.__version__, "triton": triton.__version__, "quick": args.quick,
              "mamba_ssm_reference": "mamba_ssm 2.3.2 CUDA kernels on H100 (given)", "rows": []}
    print(f"{gpu}, torch {torch.__version__}, triton {triton.__version__}", flush=True)
    failures = []
    if not args.no_small:
        result["small_sweep"] = small_sweep(args.keep_going, failures)
    copy_bw = copy_bandwidth(do_bench)
    result["copy_bandwidth_GBps"] = copy_bw / 1e9
    print(f"device-to-device copy: {copy_bw / 1e9:.0f} GB/s (read + write)", flush=True)
    if not args.no_patterns:
        result["patterns"] = patterns_section(do_bench, warmup, rep, failures)
        out_path.write_text(json.dumps(result, indent=1))

    for spec in rows:
        t0 = time.time()
        row = measure_row(spec, do_bench, warmup, rep, copy_bw, args.keep_going, args.no_torch_time, failures)
        result["rows"].append(row)
        out_path.write_text(json.dumps(result, indent=1))
        print(f"  {row['name']:16s} fwd {row['fwd_ms']:7.3f} ms (mamba {row['mamba_fwd_ms']:5.2f}, "
              f"x{row['fwd_speedup_vs_mamba']:4.2f})  bwd {row['bwd_ms']:7.3f} ms (mamba {row['mamba_bwd_ms']:5.2f}, "
              f"x{row['bwd_speedup_vs_mamba']:4.2f})  torch {row['torch_fwd_ms']:7.2f}/{row['torch_bwd_ms']:7.2f} ms  "
              f"bw {row['fwd_frac_copy_bw']:.2f}/{row['bwd_frac_copy_bw']:.2f} of copy  [{time.time() - t0:.0f}s]",
              flush=True)

    result["fused_2d"] = fused_2d_section(do_bench, warmup, rep, failures)
    out_path.write_text(json.dumps(result, indent=1))
    result["total_s"] = time.time() - t_start
    result["failures"] = failures
    out_path.write_text(json.dumps(result, indent=1))
    hdr = (f"{'row':16s} {'shape':28s} | {'fwd ms':>7s} {'mamba':>6s} {'x':>5s} | {'bwd ms':>7s} {'mamba':>6s} {'x':>5s} | "
           f"{'torch f':>8s} {'torch b':>8s} | {'bw f':>5s} {'bw b':>5s} | target")
    print("\n" + hdr)
    print("-" * len(hdr))
    for r in result["rows"]:
        shape = f"b{r['b']} d{r['d']} L{r['L']} n{r['n']} g{r['g']}{' z' if r['z'] else ''} {r['dtype']}"
        ok = ("fwd ok" if r["fwd_target_met"] else "FWD MISS") + " / " + ("bwd ok" if r["bwd_target_met"] else "BWD MISS")
        print(f"{r['name']:16s} {shape:28s} | {r['fwd_ms']:7.3f} {r['mamba_fwd_ms']:6.2f} {r['fwd_speedup_vs_mamba']:5.2f} | "
              f"{r['bwd_ms']:7.3f} {r['mamba_bwd_ms']:6.2f} {r['bwd_speedup_vs_mamba']:5.2f} | "
              f"{r['torch_fwd_ms']:8.2f} {r['torch_bwd_ms']:8.2f} | {r['fwd_frac_copy_bw']:5.2f} {r['bwd_frac_copy_bw']:5.2f} | {ok}")
    print(f"\ncopy bandwidth {copy_bw / 1e9:.0f} GB/s; 'x' = mamba_ssm time / ours (targets: fwd >= 1.25, bwd >= 1.0); "
          f"bw = achieved (minimal bytes / time) over copy bandwidth\nwrote {out_path}  ({result['total_s']:.0f}s)")
    if failures:
        raise Mismatch("correctness checks failed:\n" + "\n".join(failures))


if __name__ == "__main__":
    main()
