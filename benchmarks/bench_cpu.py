"""CPU inference of the vision models against timm's convnext_tiny, and the S-Mamba demo, per scan backend.

    python benchmarks/bench_cpu.py [--threads 2] [--batches 1 8] [--iters 5] [--out FILE.json]
    python benchmarks/bench_cpu.py --quick        # 64x64, batch 1, one iteration, no demo (a smoke test)

Rows (one process, one run, 224x224 fp32, eval mode, ``torch.inference_mode``; medians of ``--iters``
calls after two warm-up calls): ``vmamba_tiny_s1l8`` and ``efficientvmamba_tiny`` with the selective scan
on the chunked PyTorch backend ("torch") and on the compiled numba loop ("numba", the CPU default), and
``convnext_tiny`` in the same run, the model a user would pick instead; img/s and the ratio to convnext_tiny.
Then ``ssm-apps demo`` (S-Mamba on ETTh1, the README's ``make demo``) timed end to end in a fresh process
with each scan backend (``SSM_APPS_SCAN_BACKEND``). CPU figures are meaningful only as ratios within one run.
Writes ``benchmarks/results/local/cpu.json`` (untracked) unless ``--out`` is given, and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.timing import cpu_description  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "local" / "cpu.json"
MODELS = [("vmamba_tiny_s1l8", "torch"), ("vmamba_tiny_s1l8", "numba"), ("efficientvmamba_tiny", "torch"),
          ("efficientvmamba_tiny", "numba"), ("convnext_tiny", None)]


def infer_img_s(name: str, backend: str | None, batch: int, size: int, iters: int) -> float:
    import timm

    import ssm_apps.vision  # noqa: F401  (registers our models with timm)

    kwargs = {} if backend is None else {"scan_backend": backend}
    model = timm.create_model(name, num_classes=1000, **kwargs).eval()
    x = torch.randn(batch, 3, size, size)
    times = []
    with torch.inference_mode():
        for i in range(iters + 2):
            t = time.perf_counter()
            model(x)
            if i >= 2:
                times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def demo_seconds(backend: str, quick: bool) -> float:
    env = dict(os.environ, SSM_APPS_SCAN_BACKEND=backend)
    cmd = [sys.executable, "-m", "ssm_apps.cli", "demo"] + (["--quick"] if quick else [])
    t = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="torch and numba threads")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--demo", action=argparse.BooleanOptionalAction, default=True, help="time `ssm-apps demo` too")
    p.add_argument("--quick", action="store_true", help="64x64, batch 1, one iteration, no demo")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.quick:
        args.batches, args.size, args.iters, args.demo = [1], 64, 1, False
    torch.set_num_threads(args.threads)
    os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
    result: dict = {"cpu": cpu_description(), "threads": args.threads, "size": args.size,
                    "torch": torch.__version__, "rows": [], "demo": {}}
    for batch in args.batches:
        base = infer_img_s("convnext_tiny", None, batch, args.size, args.iters)
        for name, backend in MODELS:
            img_s = base if name == "convnext_tiny" else infer_img_s(name, backend, batch, args.size, args.iters)
            row = {"model": name, "scan_backend": backend, "batch": batch, "img_s": img_s,
                   "x_convnext_tiny": img_s / base}
            result["rows"].append(row)
            print(row, flush=True)
    if args.demo:
        for backend in ("torch", "numba"):
            result["demo"][backend] = demo_seconds(backend, quick=False)
            print(f"ssm-apps demo, scan backend {backend}: {result['demo'][backend]:.1f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\n{result['cpu']}, {args.threads} threads, {args.size}x{args.size} fp32 inference")
    print(f"{'model':<22} {'scan':<6} {'batch':>5} {'img/s':>8} {'x convnext_tiny':>16}")
    for r in result["rows"]:
        print(f"{r['model']:<22} {r['scan_backend'] or '-':<6} {r['batch']:>5} {r['img_s']:>8.2f} "
              f"{r['x_convnext_tiny']:>16.2f}")
    if result["demo"]:
        d = result["demo"]
        print(f"ssm-apps demo: torch scan {d['torch']:.1f} s, numba scan {d['numba']:.1f} s "
              f"({d['torch'] / d['numba']:.2f}x)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
