"""Runs never overwrite each other: one --run_dir that checkpoints, logs and predictions follow; fit into
another run's folder refused unless resuming or --overwrite; a lock against concurrent runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import torch

from ssm_apps.cli import main
from ssm_apps.training.run_dir import RunDirError, RunDirLock, default_run_dir, prepare_run_dir
from tests.helpers import REPO, shared_path

CONFIG = str(REPO / "configs" / "timeseries" / "smamba_etth1.yaml")
TINY = [
    "--model.init_args.model.init_args.d_model", "8", "--model.init_args.model.init_args.d_ff", "8",
    "--model.init_args.model.init_args.e_layers", "1",
    "--model.init_args.model.init_args.lookback", "24", "--model.init_args.model.init_args.horizon", "12",
    "--data.init_args.lookback", "24", "--data.init_args.horizon", "12",
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
    "--trainer.limit_test_batches", "2", "--trainer.limit_predict_batches", "2",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
]


def test_default_run_dir_is_new_per_run(tmp_path):
    first = default_run_dir("cfg", root=tmp_path, now=0)
    assert first.parent == tmp_path / "cfg" and first.name.startswith("19")  # date-time of the epoch
    first.mkdir(parents=True)
    second = default_run_dir("cfg", root=tmp_path, now=0)
    assert second != first and second.name == f"{first.name}-2"


def test_prepare_refuses_another_runs_checkpoints(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"x")
    (run / "logs").mkdir()
    with pytest.raises(RunDirError) as err:
        prepare_run_dir(run, resuming=False, overwrite=False)
    message = str(err.value)
    assert f"run folder {run} already holds the checkpoints of another run (best.ckpt)" in message
    assert f"--ckpt_path {run / 'checkpoints' / 'last.ckpt'}" in message and "--overwrite" in message
    prepare_run_dir(run, resuming=True, overwrite=False)  # resuming: fine, nothing deleted
    assert (run / "checkpoints" / "best.ckpt").is_file()
    prepare_run_dir(run, resuming=False, overwrite=True)  # overwrite: the old checkpoints and logs go
    assert not (run / "checkpoints").exists() and not (run / "logs").exists()


def test_lock_refuses_a_second_process_and_is_released_by_sigkill(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from ssm_apps.training.run_dir import RunDirLock
        lock = RunDirLock({str(run)!r}).acquire()
        print("locked", flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=rf"run folder {run} is in use by another run \(pid {holder.pid} on "):
            RunDirLock(run).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunDirLock(run) as lock:  # the kernel dropped the dead holder's lock: a resume can start at once
        assert lock.held


def test_fit_paths_follow_run_dir_and_second_fit_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "my_run"
    assert main(["fit", "--config", CONFIG, *TINY, "--run_dir", str(run)]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert {"metrics.csv", "config.yaml", "hparams.yaml"} <= {p.name for p in (run / "logs").iterdir()}
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lightning_logs").exists()
    capsys.readouterr()

    assert main(["fit", "--config", CONFIG, *TINY, "--run_dir", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds the checkpoints of another run" in err
    best = (run / "checkpoints" / "best.ckpt").read_bytes()
    assert main(["predict", "--config", CONFIG, *TINY, "--ckpt_path", str(run / "checkpoints" / "best.ckpt")]) == 0
    out = capsys.readouterr().out
    assert f"ssm-apps predict: wrote forecast.png, forecasts.csv to {run / 'predictions'}" in out  # run from ckpt_path
    assert (run / "checkpoints" / "best.ckpt").read_bytes() == best

    assert main(["fit", "--config", CONFIG, *TINY, "--run_dir", str(run), "--overwrite", "true"]) == 0
    assert (run / "checkpoints" / "best.ckpt").is_file()


def test_training_on_own_csv_does_not_touch_the_demo_run(tmp_path, monkeypatch):
    """The issue's scenario: fit on one's own CSV twice, each into its own runs/<config>/<time> folder."""
    monkeypatch.chdir(tmp_path)
    frame = pd.read_csv(shared_path("data", "timeseries", "ETTh1.csv")).iloc[:3000]
    frame.to_csv(tmp_path / "mine.csv", index=False)
    mine = ["--data.init_args.data_path", str(tmp_path / "mine.csv"), "--data.init_args.split", "ratio"]
    assert main(["fit", "--config", CONFIG, *TINY, *mine]) == 0
    assert main(["fit", "--config", CONFIG, *TINY, *mine]) == 0
    runs = sorted((tmp_path / "runs" / "smamba_etth1").iterdir())
    assert len(runs) == 2 and all((r / "checkpoints" / "best.ckpt").is_file() for r in runs)
    a, b = (torch.load(r / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"] for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same data: two complete, separate runs


def test_concurrent_fit_into_one_folder_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    first = subprocess.Popen([sys.executable, "-m", "ssm_apps.cli", "fit", "--config", CONFIG, *TINY,
                              "--trainer.max_epochs", "1000", "--run_dir", str(run)],
                             cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run / ".lock").is_file() or not (run / ".lock").read_text().strip():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        code = main(["fit", "--config", CONFIG, *TINY, "--run_dir", str(run), "--overwrite", "true"])
        err = capsys.readouterr().err
        assert code == 1 and f"run folder {run} is in use by another run (pid {first.pid}" in err
        assert first.poll() is None  # the first run goes on, its files untouched
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
