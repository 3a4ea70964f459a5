"""Channel-first LayerNorm: our Triton kernels vs the current path (permute -> F.layer_norm -> permute).

    PYTHONPATH=. python benchmarks/bench_norm_gpu.py [--batch 128] [--dtypes bf16 fp32]
        [--layouts contiguous channels_last] [--sweep] [--out PATH]
    PYTHONPATH=. python benchmarks/bench_norm_gpu.py --device cpu     # smoke run (Triton interpreter)

At VMamba-T's LayerNorm2d shapes (batch 128: 48x112x112 once per step, 96x56x56 7x, 192x28x28 7x,
384x14x14 25x, 768x7x7 8x -- the 48 calls of one VMamba-T forward), for bf16 (under bf16 autocast,
fp32 weight and bias, as in training) and fp32, and for input maps in NCHW-contiguous and
channels_last memory (VMamba-T's norms see both):

1. correctness first: output and dx / dweight / dbias of ours against a float64 ``F.layer_norm``
   oracle (raises beyond the tolerances below); the current path's errors are reported beside;
2. ``triton.testing.do_bench`` medians of the forward (grad mode on) and of forward + backward
   (``torch.autograd.grad`` w.r.t. x, weight, bias) for both paths, and the same calls replayed
   from a CUDA graph (``do_bench_cudagraph``: GPU time without the host's launch work, which
   dominates the eager figures of the small maps);
3. the floor: bytes the kernels must move (forward: x in, y out, 8 B/pixel of statistics;
   backward: x, dy in, dx out) over the device-to-device copy bandwidth measured in the same run.
``--sweep`` also times our forward kernel over tile sizes (elements x warps) at every shape (the
backward's tile is chosen by Triton's autotuner; the JSON lists its choice per shape). Prints a table and writes benchmarks/results/norm_<gpu>.json (``--out``).

``--device cpu`` runs the same code on tiny shapes through the Triton interpreter (set before
triton is imported); its timings mean nothing, it checks that the script runs end to end.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# (C, H, W, calls per VMamba-T forward)
SHAPES = [(48, 112, 112, 1), (96, 56, 56, 7), (192, 28, 28, 7), (384, 14, 14, 25), (768, 7, 7, 8)]
CPU_SHAPES = [(5, 3, 5, 1)]
DTYPES = {"bf16": "bfloat16", "fp32": "float32"}
# (rtol, atol as a fraction of the oracle's largest magnitude): maps and dx / parameter gradients
TOL = {"bfloat16": ((1e-2, 8e-3), (1e-3, 1e-4)), "float32": ((1e-4, 1e-5), (1e-4, 1e-5))}
SWEEP = [(1024, 4), (2048, 4), (2048, 8), (4096, 4), (4096, 8), (8192, 8)]


class Mismatch(AssertionError):
    pass


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=None, help="batch (default 128 on CUDA, 2 on CPU)")
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["bf16", "fp32"])
    p.add_argument("--layouts", nargs="+", choices=["contiguous", "channels_last"],
                   default=["contiguous", "channels_last"], help="memory layout of the input maps")
    p.add_argument("--sweep", action="store_true", help="also time our kernels over tile sizes (bf16, contiguous)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/norm_<gpu>.json)")
    return p.parse_args()


ARGS = parse_args()
if ARGS.device == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton

import torch
import torch.nn.functional as F

from ssm_apps.kernels.norm import layer_norm_2d, layer_norm_2d_torch
from ssm_apps.kernels.norm import triton as norm_triton


def bench_ms(fn, device: str, rep: int = 100) -> float:
    """Median ms per call: ``triton.testing.do_bench`` (``rep`` ms) on CUDA, one timed call on CPU."""
    if device == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=rep, return_mode="median")
    fn()
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def graph_ms(fn, device: str) -> float | None:
    """Mean ms per call replayed from a CUDA graph (``triton.testing.do_bench_cudagraph``); None off CUDA."""
    if device != "cuda":
        return None
    import triton.testing

    fn()  # autotuning and lazy allocations before the capture
    return triton.testing.do_bench_cudagraph(fn, rep=100)


def copy_tbps(device: str) -> float | None:
    """Device-to-device copy bandwidth (read + write bytes per second, TB/s)."""
    if device != "cuda":
        return None
    src = torch.empty(1 << 28, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = bench_ms(lambda: dst.copy_(src), device)
    return 2 * src.numel() / (ms * 1e-3) / 1e12


def make_case(b, c, h, w, dtype, layout, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g, device=device) + torch.randn(b, 1, h, w, generator=g, device=device)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    weight = 1 + 0.1 * torch.randn(c, generator=g, device=device)
    bias = 0.1 * torch.randn(c, generator=g, device=device)
    dy = torch.randn(b, c, h, w, generator=g, device=device)
    return x.to(dtype), weight, bias, dy.to(dtype)


def run_path(path: str, x, weight, bias, autocast: bool):
    ctx = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast)
    with ctx:
        if path == "ours":
            return layer_norm_2d(x, weight, bias, 1e-5, backend="triton")
        return layer_norm_2d_torch(x, weight, bias, 1e-5)


def errors(got: torch.Tensor, want: torch.Tensor) -> dict:
    diff = (got.double() - want).abs()
    scale = want.abs().max().item()
    return {"max_abs": diff.max().item(), "max_abs_over_max_ref": diff.max().item() / max(scale, 1e-30),
            "rel_l2": (diff.norm() / want.norm().clamp_min(1e-30)).item()}


def check(x, weight, bias, dy, dtype_name: str, autocast: bool) -> dict:
    """Errors of both paths against the float64 oracle; raises Mismatch if ours is beyond TOL."""
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, weight, bias))
    ref = F.layer_norm(xd.permute(0, 2, 3, 1), (x.shape[1],), wd, bd, 1e-5).permute(0, 3, 1, 2)
    ref_grads = torch.autograd.grad(ref, (xd, wd, bd), dy.double())
    out = {}
    tol_map, tol_par = TOL[dtype_name]
    for path in ("ours", "current"):
        leaves = [t.detach().requires_grad_() for t in (x, weight, bias)]
        y = run_path(path, *leaves, autocast)
        grads = torch.autograd.grad(y, leaves, dy)
        errs = {"y": errors(y, ref.detach())}
        for name, gt, wt in zip(("dx", "dweight", "dbias"), grads, ref_grads):
            errs[name] = errors(gt, wt)
        out[path] = errs
        if path == "ours":
            for name, tol in (("y", tol_map), ("dx", tol_map), ("dweight", tol_par), ("dbias", tol_par)):
                want = ref.detach() if name == "y" else ref_grads[("dx", "dweight", "dbias").index(name)]
                got = y if name == "y" else grads[("dx", "dweight", "dbias").index(name)]
                bad = ((got.double() - want).abs() > tol[0] * want.abs() + tol[1] * want.abs().max()).sum().item()
                if bad:
                    raise Mismatch(f"{name}: {bad} elements beyond rtol {tol[0]}, atol {tol[1]} x max; {errs[name]}")
            if y.dtype != (torch.bfloat16 if autocast else x.dtype):
                raise Mismatch(f"output dtype {y.dtype}")
    return out


def time_case(path: str, x, weight, bias, dy, autocast: bool, device: str, rep: int = 100,
              graph: bool = False) -> tuple[float, float]:
    """(forward ms, forward + backward ms): eager ``do_bench`` medians, or with ``graph`` CUDA-graph replays."""
    leaves = [t.detach().requires_grad_() for t in (x, weight, bias)]

    def fwd():
        run_path(path, *leaves, autocast)

    def fwd_bwd():
        torch.autograd.grad(run_path(path, *leaves, autocast), leaves, dy)

    if graph:
        return graph_ms(fwd, device), graph_ms(fwd_bwd, device)
    return bench_ms(fwd, device, rep), bench_ms(fwd_bwd, device, rep)


def case_bytes(b, c, h, w, in_size: int, out_size: int) -> tuple[int, int]:
    """(forward, forward + backward) bytes the kernels must move."""
    n, pixels = b * c * h * w, b * h * w
    fwd = n * (in_size + out_size) + 8 * pixels
    bwd = n * (in_size + out_size + in_size) + 8 * pixels  # x, dy in (dy in y's dtype), dx out
    return fwd, fwd + bwd


def main() -> None:
    device = ARGS.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_norm_gpu.py: no CUDA device here; run it on a GPU, or smoke-test it "
                         "with --device cpu (Triton interpreter, tiny shapes)")
    batch = ARGS.batch or (128 if device == "cuda" else 2)
    shapes = SHAPES if device == "cuda" else CPU_SHAPES
    gpu = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    bw = copy_tbps(device)
    rows, failed = [], []
    for dname in ARGS.dtypes:
        dtype = getattr(torch, DTYPES[dname])
        autocast = dtype == torch.bfloat16
        for layout in ARGS.layouts:
            for c, h, w, calls in shapes:
                row = {"shape": [batch, c, h, w], "calls_per_vmamba_t_forward": calls, "dtype": DTYPES[dname],
                       "autocast_bf16": autocast, "layout": layout}
                try:
                    x, weight, bias, dy = make_case(batch, c, h, w, dtype, layout, device)
                    row["errors_vs_float64"] = check(x, weight, bias, dy, DTYPES[dname], autocast)
                    for path in ("ours", "current"):
                        row[f"{path}_fwd_ms"], row[f"{path}_fwd_bwd_ms"] = time_case(
                            path, x, weight, bias, dy, autocast, device)
                        row[f"{path}_fwd_graph_ms"], row[f"{path}_fwd_bwd_graph_ms"] = time_case(
                            path, x, weight, bias, dy, autocast, device, graph=True)
                    fb, fbb = case_bytes(batch, c, h, w, x.element_size(), 2 if autocast else x.element_size())
                    row["bytes_fwd"], row["bytes_fwd_bwd"] = fb, fbb
                    if bw:
                        row["floor_fwd_ms"] = fb / (bw * 1e12) * 1e3
                        row["floor_fwd_bwd_ms"] = fbb / (bw * 1e12) * 1e3
                    row["speedup_fwd"] = row["current_fwd_ms"] / row["ours_fwd_ms"]
                    row["speedup_fwd_bwd"] = row["current_fwd_bwd_ms"] / row["ours_fwd_bwd_ms"]
                    if row["ours_fwd_bwd_graph_ms"]:
                        row["speedup_fwd_bwd_graph"] = row["current_fwd_bwd_graph_ms"] / row["ours_fwd_bwd_graph_ms"]
                    del x, dy
                except Exception as exc:  # an ERROR row; go on, exit non-zero at the end
                    row["error"] = f"{type(exc).__name__}: {exc}"[:400]
                    failed.append(row)
                rows.append(row)
                print({k: v for k, v in row.items() if k != "errors_vs_float64"}, flush=True)
    sweep = run_sweep(batch, shapes, device) if ARGS.sweep else []
    print(f"\n{gpu}, torch {torch.__version__}, batch {batch}, copy {bw or float('nan'):.2f} TB/s "
          f"(ms: do_bench medians; graph: CUDA-graph replays; floor = bytes moved / copy bandwidth)")
    print(f"{'dtype':9s} {'layout':14s} {'C x H x W':13s} {'ours fwd':>9s} {'cur fwd':>8s} {'x':>5s} {'floor':>6s} "
          f"{'ours f+b':>9s} {'cur f+b':>8s} {'x':>5s} {'graph ours':>10s} {'graph cur':>9s} {'floor':>6s} "
          f"{'err y / dx / dw':>22s}")
    per_step = {}
    for r in rows:
        label = f"{r['dtype']:9s} {r['layout']:14s} {'x'.join(map(str, r['shape'][1:])):13s}"
        if "error" in r:
            print(f"{label} ERROR {r['error']}")
            continue
        e = r["errors_vs_float64"]["ours"]
        err = f"{e['y']['max_abs_over_max_ref']:.0e}/{e['dx']['max_abs_over_max_ref']:.0e}/" \
              f"{e['dweight']['max_abs_over_max_ref']:.0e}"
        print(f"{label} {r['ours_fwd_ms']:9.3f} {r['current_fwd_ms']:8.3f} {r['speedup_fwd']:5.2f} "
              f"{r.get('floor_fwd_ms', float('nan')):6.3f} {r['ours_fwd_bwd_ms']:9.3f} {r['current_fwd_bwd_ms']:8.3f} "
              f"{r['speedup_fwd_bwd']:5.2f} {r['ours_fwd_bwd_graph_ms'] or float('nan'):10.3f} "
              f"{r['current_fwd_bwd_graph_ms'] or float('nan'):9.3f} {r.get('floor_fwd_bwd_ms', float('nan')):6.3f} "
              f"{err:>22s}")
        key = (r["dtype"], r["layout"])
        acc = per_step.setdefault(key, dict.fromkeys(("ours_fwd_bwd_ms", "current_fwd_bwd_ms", "ours_fwd_bwd_graph_ms",
                                                      "current_fwd_bwd_graph_ms", "floor_fwd_bwd_ms"), 0.0))
        for k in acc:
            acc[k] += (r.get(k) or float("nan")) * r["calls_per_vmamba_t_forward"]
    summary = []
    for (dt, layout), acc in per_step.items():
        summary.append({"dtype": dt, "layout": layout, **acc})
        print(f"VMamba-T step ({dt}, all {layout}): {sum(sh[3] for sh in shapes)} norms fwd+bwd ours "
              f"{acc['ours_fwd_bwd_ms']:.2f} ms (graph {acc['ours_fwd_bwd_graph_ms']:.2f}), current "
              f"{acc['current_fwd_bwd_ms']:.2f} ms (graph {acc['current_fwd_bwd_graph_ms']:.2f}), "
              f"floor {acc['floor_fwd_bwd_ms']:.2f} ms")
    for entry in sweep:
        if entry["best"] is None:
            print(f"sweep fwd {entry['shape']}: every tile failed: {entry['trials']}")
            continue
        times = " ".join(f"{t['tile_elems']}/{t['num_warps']}w:{t.get('fwd_ms', float('nan')):.3f}"
                         for t in entry["trials"])
        print(f"sweep fwd tile {entry['shape']} (default {entry['default']['tile_elems']}/"
              f"{entry['default']['num_warps']}w): {times}")
    tuned = {str(k): str(v) for k, v in getattr(norm_triton._ln2d_bwd_tuned, "cache", {}).items()}
    for k, v in tuned.items():
        print(f"backward autotuned: {k} -> {v}")
    slug = re.sub(r"[^a-z0-9]+", "_", gpu.lower()).strip("_")
    out = ARGS.out or REPO / "benchmarks" / "results" / f"norm_{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "device": gpu, "torch": torch.__version__, "batch": batch, "copy_TBps": bw,
        "tile": {name: getattr(norm_triton, name) for name in (
            "FWD_TILE_ELEMS", "FWD_NUM_WARPS", "BWD_TILES", "BWD_TILES_PER_PROGRAM")},
        "backward_autotuned": tuned,
        "timing": "triton.testing.do_bench median (warmup 25 ms, rep 100 ms); fwd with grad mode on; "
                  "fwd_bwd = forward + torch.autograd.grad w.r.t. x, weight, bias; *_graph_ms: "
                  "triton.testing.do_bench_cudagraph mean (rep 100 ms), the calls replayed from a CUDA graph",
        "current": "permute -> F.layer_norm -> permute (LayerNorm2d; under autocast in bf16 with bf16 weight/bias)",
        "rows": rows, "vmamba_t_step": summary, "sweep": sweep}, indent=2))
    print(f"wrote {out}")
    if failed:
        raise SystemExit(f"bench_norm_gpu.py: {len(failed)} case(s) failed (see ERROR rows)")


def run_sweep(batch: int, shapes, device: str) -> list[dict]:
    """Our forward kernel over tile sizes, bf16 under autocast, contiguous maps, timed by the forward."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    results = []
    for c, h, w, _ in shapes:
        x, weight, bias, dy = make_case(batch, c, h, w, dtype, "contiguous", device)
        saved = norm_triton.FWD_TILE_ELEMS, norm_triton.FWD_NUM_WARPS
        trials = []
        try:
            for tile, warps in SWEEP if device == "cuda" else SWEEP[:2]:
                norm_triton.FWD_TILE_ELEMS, norm_triton.FWD_NUM_WARPS = tile, warps
                trial = {"tile_elems": tile, "num_warps": warps}
                try:
                    check(x, weight, bias, dy, DTYPES["bf16" if dtype == torch.bfloat16 else "fp32"],
                          dtype == torch.bfloat16)
                    trial["fwd_ms"], _ = time_case("ours", x, weight, bias, dy, dtype == torch.bfloat16, device, rep=40)
                except Exception as exc:
                    trial["error"] = f"{type(exc).__name__}: {exc}"[:200]
                trials.append(trial)
        finally:
            norm_triton.FWD_TILE_ELEMS, norm_triton.FWD_NUM_WARPS = saved
        ok = [t for t in trials if "error" not in t]
        results.append({"shape": [batch, c, h, w], "default": {"tile_elems": saved[0], "num_warps": saved[1]},
                        "trials": trials, "best": min(ok, key=lambda t: t["fwd_ms"]) if ok else None})
    return results

if __name__ == "__main__":
    main()
