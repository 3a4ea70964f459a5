"""S-Mamba forecasting end to end through the ``ssm-apps`` CLI: fit, resume, test, predict, DDP.

Runs the shipped config with a narrow model and few batches; checks the reported test metrics
against an evaluation written here from the raw CSV, and the predicted CSV against the raw data.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ssm_apps.cli import SSMAppsCLI
from ssm_apps.timeseries import ForecastingTask, SMamba
from tests.helpers import REPO, shared_path

CONFIG = str(REPO / "configs" / "timeseries" / "smamba_etth1.yaml")
FAST = [
    "--model.init_args.model.init_args.d_model", "16",
    "--model.init_args.model.init_args.d_ff", "16",
    "--trainer.max_epochs", "1",
    "--trainer.limit_train_batches", "5",
    "--trainer.limit_val_batches", "3",
    "--trainer.enable_progress_bar", "false",
]
RUN = Path("runs/smamba_etth1")


def cli(*args: str) -> SSMAppsCLI:
    return SSMAppsCLI(args=list(args))


def independent_test_mse_mae(model: torch.nn.Module) -> tuple[float, float]:
    """The ETTh1 test protocol from the raw CSV: scaler on rows [0, 8640), test windows from row 11520 - 96."""
    df = pd.read_csv(shared_path("data", "timeseries", "ETTh1.csv"))
    values = df.drop(columns="date").to_numpy(np.float64)
    mean, std = values[:8640].mean(0), values[:8640].std(0)
    scaled = ((values - mean) / std).astype(np.float32)
    dates = pd.to_datetime(df["date"])
    marks = np.stack([dates.dt.hour / 23 - 0.5, dates.dt.dayofweek / 6 - 0.5, (dates.dt.day - 1) / 30 - 0.5,
                      (dates.dt.dayofyear - 1) / 365 - 0.5], axis=1).astype(np.float32)
    test = scaled[11520 - 96:14400]
    test_marks = marks[11520 - 96:14400]
    starts = np.arange(len(test) - 96 - 96 + 1)
    se = ae = count = 0.0
    with torch.no_grad():
        for i in range(0, len(starts), 256):
            idx = starts[i:i + 256]
            x = torch.from_numpy(np.stack([test[s:s + 96] for s in idx]))
            xm = torch.from_numpy(np.stack([test_marks[s:s + 96] for s in idx]))
            y = torch.from_numpy(np.stack([test[s + 96:s + 192] for s in idx]))
            err = model(x, xm) - y
            se += float((err.double() ** 2).sum())
            ae += float(err.double().abs().sum())
            count += err.numel()
    return se / count, ae / count


def test_fit_test_predict_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli("fit", "--config", CONFIG, *FAST)
    best, last = RUN / "checkpoints" / "best.ckpt", RUN / "checkpoints" / "last.ckpt"
    assert best.is_file() and last.is_file()
    assert not list((RUN / "checkpoints").glob("*.tmp"))  # atomic writes leave no temporaries
    # the checkpoint alone rebuilds the task and its model (no YAML, no model argument)
    loaded = ForecastingTask.load_from_checkpoint(last)
    assert isinstance(loaded.model, SMamba) and loaded.model.embedding.out_features == 16
    assert loaded.hparams.lr == pytest.approx(7e-5)
    saved = torch.load(last, weights_only=True, map_location="cpu")["state_dict"]
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, saved[k], rtol=0, atol=0, msg=k)

    tested = cli("test", "--config", CONFIG, *FAST, "--ckpt_path", str(best))
    mse, mae = (float(tested.trainer.callback_metrics[k]) for k in ("test_mse", "test_mae"))
    model = tested.model.eval()
    ref_mse, ref_mae = independent_test_mse_mae(model.model)
    assert mse == pytest.approx(ref_mse, rel=1e-4) and mae == pytest.approx(ref_mae, rel=1e-4)
    assert 0.3 < mse < 3.0  # a few training steps: far from perfect, far from diverged

    cli("predict", "--config", CONFIG, *FAST, "--ckpt_path", str(best))
    out = pd.read_csv(RUN / "predictions" / "forecasts.csv")
    raw = pd.read_csv(shared_path("data", "timeseries", "ETTh1.csv"))
    n_windows = 14400 - (11520 - 96) - 96 - 96 + 1
    assert len(out) == n_windows * 96
    first = out[out.window == 0]
    np.testing.assert_allclose(first["OT_true"].to_numpy(), raw["OT"].to_numpy()[11520:11616], rtol=1e-5, atol=1e-4)
    assert list(first["date"])[:2] == list(raw["date"][11520:11522])
    assert np.isfinite(out.filter(regex="^(HUFL|OT)$").to_numpy()).all()
    png = (RUN / "predictions" / "forecast.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_resume_from_last_checkpoint_continues_where_it_stopped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli("fit", "--config", CONFIG, *FAST)
    state = torch.load(RUN / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["epoch"] == 0 and state["global_step"] == 5
    resumed = cli("fit", "--config", CONFIG, *FAST, "--trainer.max_epochs", "3", "--ckpt_path", str(RUN / "checkpoints" / "last.ckpt"))
    trainer = resumed.trainer
    assert trainer.current_epoch == 3 and trainer.global_step == 15
    opt_state = trainer.optimizers[0].state_dict()["state"]
    assert int(next(iter(opt_state.values()))["step"]) == 15  # Adam moments carried over, not restarted
    lrs = pd.read_csv(next(Path(trainer.logger.log_dir).glob("metrics.csv")))
    assert set(lrs["epoch"].dropna().astype(int)) >= {1, 2}  # the resumed run logged epochs 1 and 2 only
    assert 0 not in set(lrs["epoch"].dropna().astype(int))
    # lr schedule continued: epochs 0, 1 at lr, epoch 2 at lr / 2
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(7e-5 * 0.5 ** 2)


def test_last_checkpoint_follows_training_when_best_stops_improving(tmp_path, monkeypatch):
    """last.ckpt must hold the latest epoch, not the best one: flip the best checkpoint's mode so it never improves."""
    import yaml

    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load(open(CONFIG))
    best_cb = next(c for c in cfg["trainer"]["callbacks"] if c["init_args"].get("filename") == "best")
    best_cb["init_args"]["mode"] = "max"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    cli("fit", "--config", str(tmp_path / "cfg.yaml"), *FAST, "--trainer.max_epochs", "3")
    last = torch.load(RUN / "checkpoints" / "last.ckpt", weights_only=False)
    best = torch.load(RUN / "checkpoints" / "best.ckpt", weights_only=False)
    assert last["epoch"] == 2 and last["global_step"] == 15
    assert best["epoch"] < 2  # val loss falls, so a "max" best stays early: the two files really differ


def test_ddp_two_cpu_ranks_agree(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "ssm_apps.cli", "fit", "--config", CONFIG, *FAST,
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
           "--trainer.max_steps", "4", "--trainer.limit_train_batches", "4",
           "--trainer.callbacks+=tests.helpers.ddp.RankDigest", f"--trainer.callbacks.output_dir={tmp_path / 'digest'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    digests = [json.loads((tmp_path / "digest" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [d["world_size"] for d in digests] == [2, 2]
    assert digests[0]["global_step"] == digests[1]["global_step"] == 4
    for key in ("param_sum", "param_abs_sum", "val_loss"):
        assert digests[0][key] == pytest.approx(digests[1][key], rel=1e-6, abs=1e-9), key
