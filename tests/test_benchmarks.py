"""The CPU benchmark scripts the README points to run end to end (shortened) and write their tables."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO


def _run_bench_scan_cpu(tmp_path, *extra: str) -> tuple[dict, str]:
    out = tmp_path / "scan_cpu.json"
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/bench_scan_cpu.py"), "--lengths", "64", "--repeats", "1", *extra,
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text()), r.stdout


def test_bench_scan_cpu_shortened(tmp_path):
    result, stdout = _run_bench_scan_cpu(tmp_path)
    assert {(row["backend"], row["pass"]) for row in result["rows"]} == {
        (b, p) for b in ("ref", "torch", "numba") for p in ("fwd", "fwd+bwd")
    }
    assert all(row["median_ms"] > 0 for row in result["rows"])
    assert [s["pass"] for s in result["speedup"]] == ["fwd", "fwd+bwd"]
    assert all(s["numba_vs_torch"] > 0 and "numba_vs_inductor" not in s for s in result["speedup"])
    assert "numba/torch" in stdout


@pytest.mark.slow
def test_bench_scan_cpu_inductor_candidate(tmp_path):
    """``--inductor`` (about a minute of torch.compile on 2 cores, so marked slow): the compiled candidate's rows."""
    result, _ = _run_bench_scan_cpu(tmp_path, "--inductor")
    assert {(row["backend"], row["pass"]) for row in result["rows"]} == {
        (b, p) for b in ("ref", "torch", "numba", "inductor") for p in ("fwd", "fwd+bwd")
    }
    assert all(s["numba_vs_inductor"] > 0 for s in result["speedup"])


def test_bench_cpu_quick_names_the_cpu_and_every_row(tmp_path):
    import torch

    out = tmp_path / "cpu.json"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks/bench_cpu.py"), "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["cpu"].endswith(", " + torch.backends.cpu.get_cpu_capability())
    assert [(row["model"], row["scan_backend"]) for row in result["rows"]] == [
        ("vmamba_tiny_s1l8", "torch"), ("vmamba_tiny_s1l8", "numba"), ("efficientvmamba_tiny", "torch"),
        ("efficientvmamba_tiny", "numba"), ("convnext_tiny", None)]
    assert result["rows"][-1]["x_convnext_tiny"] == 1.0
    assert all(row["img_s"] > 0 for row in result["rows"])
    assert result["demo"] == {}
