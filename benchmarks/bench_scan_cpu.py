"""CPU benchmark of the selective scan: "ref" (sequential) vs "torch" (chunked) vs "numba" (compiled loop).

    python benchmarks/bench_scan_cpu.py [--lengths 256 1024 4096 16384] [--repeats 3] [--out FILE.json]
    python benchmarks/bench_scan_cpu.py --quick      # seconds: L = 64 and 256, one repeat
    python benchmarks/bench_scan_cpu.py --lengths 256 1024 --inductor   # + torch.compile's C++ code (minutes)

``--inductor`` adds the other compiled candidate: the chunked scan with its softplus / D / gate
prologue and epilogue compiled by ``torch.compile`` (inductor's C++ code generation on the CPU; static
shapes); its first call, the compilation, is reported as ``compile_s`` and not timed.

Mamba-like inputs: b=2, d=64, n=16, B/C shared (b, n, L), D, z, delta_bias with softplus
(softplus(delta_bias) log-uniform in [1e-3, 1e-1] as Mamba initialises it), A = -[1..n].
Each (backend, L, pass) runs in a fresh process so its peak resident memory above the
inputs (ru_maxrss minus the RSS before the call) is its own; numba's kernels are compiled (or loaded from
its cache) by one untimed call first. Prints a table and writes
benchmarks/results/local/scan_cpu.json (untracked) unless --out is given. CPU times are only
meaningful as ratios within one run.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "local" / "scan_cpu.json"  # untracked


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure_one(backend: str, length: int, mode: str, repeats: int) -> dict:
    import torch

    from ssm_apps.kernels import selective_scan

    torch.manual_seed(0)
    b, d, n = 2, 64, 16
    grad = mode == "fwd+bwd"
    dt = torch.exp(torch.rand(d) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    inputs = dict(
        u=torch.randn(b, d, length, requires_grad=grad),
        delta=(0.1 * torch.randn(b, d, length)).requires_grad_(grad),
        A=(-torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)).requires_grad_(grad),
        B=torch.randn(b, n, length, requires_grad=grad),
        C=torch.randn(b, n, length, requires_grad=grad),
        D=torch.ones(d, requires_grad=grad),
        z=torch.randn(b, d, length, requires_grad=grad),
        delta_bias=dt + torch.log(-torch.expm1(-dt)),
    )

    scan = _inductor_chain() if backend == "inductor" else functools.partial(
        selective_scan, delta_softplus=True, backend=backend)

    def run() -> None:
        with torch.set_grad_enabled(grad):
            out = scan(**inputs)
            if grad:
                out.sum().backward()

    compile_s = 0.0
    if backend in ("numba", "inductor"):
        t0 = time.perf_counter()
        run()  # compile / load the kernels outside the timing
        compile_s = time.perf_counter() - t0
    base = _rss_mb()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"backend": backend, "L": length, "pass": mode, "median_ms": 1e3 * statistics.median(times),
            "peak_extra_mb": max(0.0, peak - base), "compile_s": compile_s,
            "repeats": repeats}


def _inductor_chain():
    """The chunked backend's computation (softplus(delta + bias), scan, + D u, * silu(z)) compiled by
    inductor; ``selective_scan`` itself is opaque to ``torch.compile``, so the chain calls the chunked scan."""
    import torch
    import torch.nn.functional as F

    from ssm_apps.kernels.scan.chunked import scan_chunked

    def chain(u, delta, A, B, C, D, z, delta_bias):
        y, _ = scan_chunked(u, F.softplus(delta + delta_bias[:, None]), A, B, C)
        return (y + D[:, None] * u) * F.silu(z)

    return torch.compile(chain, dynamic=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=None, help="default 256 1024 4096 16384")
    p.add_argument("--repeats", type=int, default=None, help="default 3")
    p.add_argument("--quick", action="store_true", help="a seconds-long check: L = 64 and 256, one repeat")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON path (default {RESULTS})")
    p.add_argument("--inductor", action="store_true", help="also time the torch.compile'd chunked scan (slow to compile)")
    p.add_argument("--one", nargs=3, metavar=("BACKEND", "L", "PASS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    args.lengths = args.lengths or ([64, 256] if args.quick else [256, 1024, 4096, 16384])
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.one:
        print(json.dumps(measure_one(args.one[0], int(args.one[1]), args.one[2], args.repeats)))
        return
    backends = ("ref", "torch", "numba") + (("inductor",) if args.inductor else ())
    rows = []
    for length in args.lengths:
        for mode in ("fwd", "fwd+bwd"):
            for backend in backends:
                reps = args.repeats if backend != "ref" or length <= 4096 else 1
                out = subprocess.run([sys.executable, __file__, "--one", backend, str(length), mode,
                                      "--repeats", str(reps)], check=True, capture_output=True, text=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                r = rows[-1]
                print(f"  {backend:5s} L={length:6d} {mode:8s} {r['median_ms']:10.1f} ms  peak +{r['peak_extra_mb']:.0f} MB",
                      flush=True)
    print(f"\n{'L':>6} {'pass':>8} | {'ref ms':>9} {'torch ms':>9} {'numba ms':>9} {'torch/ref':>9} "
          f"{'numba/torch':>11} | {'ref MB':>7} {'torch MB':>8} {'numba MB':>8}")
    by = {(r["backend"], r["L"], r["pass"]): r for r in rows}
    summary = []
    for length in args.lengths:
        for mode in ("fwd", "fwd+bwd"):
            ref, tor, nb = (by[(b, length, mode)] for b in ("ref", "torch", "numba"))
            ratio, nb_ratio = ref["median_ms"] / tor["median_ms"], tor["median_ms"] / nb["median_ms"]
            summary.append({"L": length, "pass": mode, "speedup": ratio, "numba_vs_torch": nb_ratio})
            print(f"{length:>6} {mode:>8} | {ref['median_ms']:9.1f} {tor['median_ms']:9.1f} {nb['median_ms']:9.1f} "
                  f"{ratio:8.1f}x {nb_ratio:10.1f}x | {ref['peak_extra_mb']:7.0f} {tor['peak_extra_mb']:8.0f} "
                  f"{nb['peak_extra_mb']:8.0f}")
            if args.inductor:
                ind = by[("inductor", length, mode)]
                summary[-1]["numba_vs_inductor"] = ind["median_ms"] / nb["median_ms"]
                print(f"{'':>6} {'':>8}   inductor {ind['median_ms']:.1f} ms (compiled in {ind['compile_s']:.0f} s): "
                      f"numba {summary[-1]['numba_vs_inductor']:.1f}x faster")
    import torch

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "device": f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__, "shape": {"b": 2, "d": 64, "n": 16}, "rows": rows, "speedup": summary,
    }, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
