"""SSMTask: optimiser / schedule from the shared names, several optimisers, models that a checkpoint
rebuilds alone (ForecastingTask from a Python dict config; the CLI run is in tests/cli)."""
from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ssm_apps.timeseries import ForecastingTask, SMamba
from ssm_apps.training.task import SSMTask, build_module

SMAMBA = {"class_path": "ssm_apps.timeseries.SMamba",
          "init_args": {"lookback": 8, "horizon": 4, "d_model": 8, "d_ff": 8, "e_layers": 1}}


def forecasting_data() -> DataLoader:
    torch.manual_seed(0)
    x, y = torch.randn(8, 8, 2), torch.randn(8, 4, 2)
    return DataLoader(TensorDataset(x, torch.zeros(8, 8, 0), y, torch.zeros(8, 4, 0)), batch_size=4)


def test_forecasting_task_from_a_dict_config_loads_from_its_checkpoint_alone(tmp_path):
    task = ForecastingTask(model=SMAMBA, lr=1e-3)
    assert isinstance(task.model, SMamba) and task.hparams.model == SMAMBA
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(task, forecasting_data())
    trainer.save_checkpoint(tmp_path / "f.ckpt")
    loaded = ForecastingTask.load_from_checkpoint(tmp_path / "f.ckpt").eval()
    task.eval()
    x = torch.randn(3, 8, 2)
    torch.testing.assert_close(loaded(x), task(x), rtol=0, atol=0)
    conf = loaded.configure_optimizers()  # Adam, per-epoch step decay: the official type1 schedule
    assert isinstance(conf["optimizer"], torch.optim.Adam) and conf["lr_scheduler"]["interval"] == "epoch"
    assert conf["optimizer"].param_groups[0]["lr"] == 1e-3 and len(conf["optimizer"].param_groups) == 1


def test_forecasting_task_with_a_module_object_needs_the_model_on_load(tmp_path):
    model = build_module("T", "model", SMAMBA)
    task = ForecastingTask(model=model)
    assert task.model is model and task.hparams.model is None  # an object cannot be recorded
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(task, forecasting_data())
    trainer.save_checkpoint(tmp_path / "o.ckpt")
    with pytest.raises(ValueError, match=r"ForecastingTask: 'model' must be an nn.Module or a dict with 'class_path'"):
        ForecastingTask.load_from_checkpoint(tmp_path / "o.ckpt")
    loaded = ForecastingTask.load_from_checkpoint(tmp_path / "o.ckpt", model=build_module("T", "model", SMAMBA))
    torch.testing.assert_close(loaded.model.embedding.weight, model.embedding.weight)


def test_build_module_errors():
    with pytest.raises(ValueError, match=r"T: 'model': cannot import class_path 'nowhere.Net'"):
        build_module("T", "model", {"class_path": "nowhere.Net"})
    with pytest.raises(ValueError, match=r"T: 'model': class_path 'collections.OrderedDict' is not an nn.Module"):
        build_module("T", "model", {"class_path": "collections.OrderedDict"})


class TwoOptimisers(SSMTask):
    """The codec pattern: a main optimiser with a schedule plus an auxiliary one, stepped by hand."""

    def __init__(self, lr: float = 0.1, weight_decay: float = 0.01, schedule: str = "poly",
                 warmup_steps: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.check_task_hyperparameters()
        self.model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
        self.aux = nn.Parameter(torch.zeros(3))
        self.automatic_optimization = False

    def ema_source(self) -> nn.Module:
        return self.model

    def extra_optimizers(self):
        return [{"optimizer": torch.optim.Adam([self.aux], lr=1e-3)}]


def test_several_optimisers_and_shared_names():
    task = TwoOptimisers()
    task._trainer = SimpleNamespace(estimated_stepping_batches=10, max_epochs=1)
    main, aux = task.configure_optimizers()
    opt = main["optimizer"]
    assert isinstance(opt, torch.optim.AdamW) and [g["name"] for g in opt.param_groups] == ["decay", "no_decay"]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert opt.param_groups[0]["lr"] == 0.0  # warm-up from warmup_lr_init 0
    assert main["lr_scheduler"]["interval"] == "step"
    assert aux["optimizer"].param_groups[0]["params"][0] is task.aux
    with pytest.raises(ValueError, match="TwoOptimisers: unknown schedule 'linear'; choose 'cosine', 'poly', 'step', "
                                         "'multistep' or 'constant'"):
        TwoOptimisers(schedule="linear")


def test_from_datamodule():
    task = TwoOptimisers()
    assert task.from_datamodule("num_classes", 3) == 3
    task._trainer = SimpleNamespace(datamodule=SimpleNamespace(num_classes=7))
    assert task.from_datamodule("num_classes") == 7
    with pytest.raises(ValueError, match=r"n_variates=None needs a datamodule with 'n_variates'"):
        task.from_datamodule("n_variates")
