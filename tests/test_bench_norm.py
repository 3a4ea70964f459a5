"""benchmarks/bench_norm_gpu.py runs end to end in its CPU smoke mode (Triton interpreter, tiny map)."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO


def test_bench_norm_cpu_smoke(tmp_path):
    out = tmp_path / "norm_cpu.json"
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/bench_norm_gpu.py"), "--device", "cpu", "--dtypes", "bf16",
         "--layouts", "channels_last", "--out", str(out)],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert "error" not in row and row["dtype"] == "bfloat16" and row["layout"] == "channels_last"
    errs = row["errors_vs_float64"]["ours"]
    assert set(errs) == {"y", "dx", "dweight", "dbias"}
    assert errs["y"]["max_abs_over_max_ref"] < 1e-2 and errs["dweight"]["max_abs_over_max_ref"] < 1e-4
    assert row["ours_fwd_ms"] > 0 and row["current_fwd_bwd_ms"] > 0
    assert "VMamba-T step" in r.stdout
