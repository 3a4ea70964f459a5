"""The GPU scripts' CPU smoke modes run end to end and write their JSON (slow: about 2-3 minutes on 2 cores)."""
from __future__ import annotations

import json

import pytest

from benchmarks.bench_segmentation_gpu import main as bench_main
from benchmarks.train_segmentation_gpu import main as train_main


@pytest.mark.slow
def test_bench_segmentation_quick_cpu(tmp_path):
    out = tmp_path / "bench.json"
    assert bench_main(["--quick", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {r["model"] for r in result["rows"] if "error" not in r} == {
        "segman_t", "segman_s", "vmamba_t_upernet", "convnext_t_upernet"}
    assert all(g["gflops_512"] > 0 for g in result["gflops"].values())
    assert 0 < result["profile"]["na_share"] < 1 and 0 < result["profile"]["scan_share"] < 1


@pytest.mark.slow
def test_train_segmentation_quick_cpu(tmp_path):
    assert train_main(["--quick", "--device", "cpu", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 3 and 0.0 <= metrics["test_mIoU"] <= 1.0
    assert (tmp_path / "model.ckpt").exists()
