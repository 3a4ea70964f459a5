"""The CPU benchmark script the README points to runs end to end (shortened) and writes its table."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO


def test_bench_scan_cpu_shortened(tmp_path):
    out = tmp_path / "scan_cpu.json"
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/bench_scan_cpu.py"), "--lengths", "64", "--repeats", "1", "--inductor",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {(row["backend"], row["pass"]) for row in result["rows"]} == {
        (b, p) for b in ("ref", "torch", "numba", "inductor") for p in ("fwd", "fwd+bwd")
    }
    assert all(row["median_ms"] > 0 for row in result["rows"])
    assert [s["pass"] for s in result["speedup"]] == ["fwd", "fwd+bwd"]
    assert all(s["numba_vs_torch"] > 0 and s["numba_vs_inductor"] > 0 for s in result["speedup"])
    assert "numba/torch" in r.stdout
