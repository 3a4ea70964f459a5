"""The shipped configs travel with the package; benchmark results go to an untracked folder by default."""
from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
import tomllib

from tests.helpers import REPO


def test_configs_are_package_data_and_entry_point_groups_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "configs/*/*.yaml" in project["tool"]["setuptools"]["package-data"]["ssm_apps"]
    groups = project["project"]["entry-points"]
    assert "ssm_apps.commands" in groups and set(groups["ssm_apps.domains"]) >= {"timeseries", "vision"}
    assert (REPO / "ssm_apps" / "configs" / "demos.yaml").resolve() == (REPO / "configs" / "demos.yaml").resolve()


@pytest.mark.slow
def test_wheel_holds_the_configs(tmp_path):
    """Builds the wheel (slow: setuptools) and checks the configs are inside, below ssm_apps/configs."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                           str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"ssm_apps/configs/demos.yaml", "ssm_apps/configs/timeseries/smamba_etth1.yaml",
            "ssm_apps/configs/vision/_base_digits.yaml"} <= names


@pytest.mark.parametrize("script", ["bench_scan_cpu.py", "bench_scan_gpu.py", "bench_vision_gpu.py"])
def test_benchmark_default_output_is_untracked(script):
    text = (REPO / "benchmarks" / script).read_text()
    assert '"results" / "local"' in text
    ignored = subprocess.run(["git", "check-ignore", "-q", "benchmarks/results/local/x.json"], cwd=REPO)
    assert ignored.returncode == 0


def test_bench_scan_cpu_has_quick_mode():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_scan_cpu.py"), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--quick" in proc.stdout
