"""Triton selective scan at L = 1,048,576 on a CUDA device, checked against the torch backend.

    python benchmarks/check_scan_long_gpu.py [--out FILE.json]

1. b 1, d 16, n 16, shared B/C, z, D, delta_bias, softplus; fp32 and bf16: output, last state and
   every gradient against the torch backend in float32 (mamba_ssm's tolerances, as bench_scan_gpu.py).
2. b 1, d 4096, n 4 (u has 2^32 elements, so offsets pass int32): forward and last state of the
   last 64 channels against the torch backend run on those channels alone (channels are independent).
Fails loudly (non-zero exit) on any mismatch; prints the times and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scan_gpu import check_pair, compare, make_row_inputs  # noqa: E402

from ssm_apps.kernels import selective_scan  # noqa: E402

L = 1 << 20


def gradients_case(dtype: torch.dtype) -> dict:
    inp = make_row_inputs(1, 16, L, 16, 1, True, dtype, seed=3)
    t0 = time.time()
    report = check_pair(inp, dtype)
    return {"case": f"b1 d16 L{L} n16 z {str(dtype)[6:]}", "checks": report, "seconds": time.time() - t0}


def wide_case() -> dict:
    d, n, keep = 4096, 4, 64
    inp = make_row_inputs(1, d, L, n, 1, False, torch.bfloat16, seed=5)
    with torch.no_grad():
        torch.cuda.synchronize()
        t0 = time.time()
        out, last = selective_scan(**inp, delta_softplus=True, return_last_state=True, backend="triton")
        torch.cuda.synchronize()
        seconds = time.time() - t0
        part = {k: (v[:, -keep:] if k in ("u", "delta") else v[-keep:] if k in ("A", "D", "delta_bias") else v)
                for k, v in inp.items() if v is not None}
        ref_out, ref_last = selective_scan(**part, delta_softplus=True, return_last_state=True, backend="torch",
                                           out_dtype=torch.float32)
    report: dict = {}
    compare("out (last 64 channels)", out[:, -keep:], ref_out, torch.bfloat16, report=report)
    compare("last_state (last 64 channels)", last[:, -keep:], ref_last, torch.bfloat16, report=report)
    return {"case": f"b1 d{d} L{L} n{n} bf16 ({d * L} elements per input)", "checks": report,
            "triton_forward_seconds_first_call": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="JSON path")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("check_scan_long_gpu.py needs a CUDA device")
    results = []
    for case in (lambda: gradients_case(torch.float32), lambda: gradients_case(torch.bfloat16), wide_case):
        results.append(case())
        worst = max(v["max_err_over_tol"] for v in results[-1]["checks"].values())
        print(f"ok  {results[-1]['case']}: worst error / tolerance {worst:.3f}", flush=True)
        torch.cuda.empty_cache()
    summary = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "L": L, "results": results}
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=1)[:3000])


if __name__ == "__main__":
    main()
