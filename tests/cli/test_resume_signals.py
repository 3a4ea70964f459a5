"""Exact resume and signals, with real signals on short ``ssm-apps fit`` runs (a tiny S-Mamba on ETTh1).

* SIGKILL mid-epoch, then ``fit --ckpt_path <run>/checkpoints/last.ckpt``: the final weights, the
  optimizer state and every logged metric equal those of an uninterrupted run with the same seed,
  bit for bit (CPU), and the logs continue in the run's one ``logs/metrics.csv``.
* SIGTERM / SIGINT mid-epoch: a resumable ``last.ckpt`` at that step, exit status 143 / 130, and
  the resumed run again equals the uninterrupted one.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.helpers import REPO

CONFIG = str(REPO / "configs" / "timeseries" / "smamba_etth1.yaml")
TINY = [
    "--model.init_args.model.init_args.d_model", "8", "--model.init_args.model.init_args.d_ff", "8",
    "--model.init_args.model.init_args.e_layers", "1",
    "--model.init_args.model.init_args.lookback", "24", "--model.init_args.model.init_args.horizon", "12",
    "--data.init_args.lookback", "24", "--data.init_args.horizon", "12", "--data.init_args.batch_size", "16",
    "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "2",
    "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--checkpoint_every_n_steps", "2",
]


def fit(run_dir: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "ssm_apps.cli", "fit", "--config", CONFIG, *TINY, "--run_dir", str(run_dir), *extra]
    proc = subprocess.run(cmd, cwd=run_dir.parent, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def signal_at(step: int, name: str) -> list[str]:
    return ["--trainer.callbacks+=tests.cli.signals.SignalAt", f"--trainer.callbacks.step={step}",
            f"--trainer.callbacks.signum={name}"]


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def metrics(run_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(run_dir / "logs" / "metrics.csv")
    return frame.sort_values(["step", *frame.columns.difference(["step"])]).reset_index(drop=True)


def assert_same_run(a: Path, b: Path) -> None:
    sa, sb = final_state(a), final_state(b)
    assert sa["global_step"] == sb["global_step"] == 12 and sa["epoch"] == sb["epoch"]
    assert sa["state_dict"].keys() == sb["state_dict"].keys()
    for key, value in sa["state_dict"].items():
        assert torch.equal(value, sb["state_dict"][key]), key  # bit-identical weights
    for key, value in sa["optimizer_states"][0]["state"].items():
        for name, tensor in value.items():
            assert torch.equal(torch.as_tensor(tensor), torch.as_tensor(sb["optimizer_states"][0]["state"][key][name]))
    pd.testing.assert_frame_equal(metrics(a), metrics(b), check_exact=True)  # every logged value, one file
    val_a, val_b = (metrics(r)["val_loss"].dropna().iloc[-1] for r in (a, b))
    diff = max(float((v - sb["state_dict"][k]).abs().max()) for k, v in sa["state_dict"].items())
    print(f"\nRESUME {b.parent.name}: final val_loss uninterrupted {val_a!r} resumed {val_b!r}; max |weight diff| {diff}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("full") / "run"
    fit(run)
    return run


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(uninterrupted, tmp_path):
    run = tmp_path / "run"
    killed = fit(run, *signal_at(5, "SIGKILL"), check=False)
    assert killed.returncode == -signal.SIGKILL
    assert final_state(run)["global_step"] == 4  # the mid-epoch last.ckpt (every 2 steps) survived the kill
    assert not (run / "logs" / "version_1").exists()
    fit(run, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"))
    assert_same_run(uninterrupted, run)
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoints", "logs"]  # one folder, logs continued


@pytest.mark.parametrize("name, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_sigterm_sigint_write_resumable_checkpoint_and_exit_nonzero(uninterrupted, tmp_path, name, code):
    run = tmp_path / "run"
    stopped = fit(run, *signal_at(3, name), check=False)
    assert stopped.returncode == code, stopped.stderr[-3000:]
    assert f"received {name}" in stopped.stderr and "wrote a resumable checkpoint" in stopped.stderr
    assert final_state(run)["global_step"] == 3  # written at the step the signal arrived (not a multiple of 2)
    fit(run, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"))
    assert_same_run(uninterrupted, run)


def test_sigterm_from_another_process(tmp_path):
    """A scheduler's SIGTERM, sent from outside while the run trains: exit 143 and a last.ckpt."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "ssm_apps.cli", "fit", "--config", CONFIG, *TINY, "--run_dir", str(run),
           "--trainer.max_epochs", "1000"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoints" / "last.ckpt").is_file():  # training has started
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-3000:]
    assert "wrote a resumable checkpoint" in err
    assert final_state(run)["global_step"] > 0
