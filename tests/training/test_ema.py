"""The EMA mixin: decay as written out, one update per optimizer step under gradient accumulation,
saved in and restored from checkpoints."""
from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ssm_apps.training.task import SSMTask


class Regression(SSMTask):
    def __init__(self, lr: float = 0.1, ema: bool = True, ema_decay: float = 0.5, ema_warmup: bool = False,
                 schedule: str = "constant", optimizer: str = "sgd", momentum: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = nn.Linear(3, 1)
        self.setup_ema_from_hparams()
        self.updates: list[int] = []
        self.after_step: list[dict[str, torch.Tensor]] = []

    def update_ema(self, model: nn.Module, step: int) -> bool:
        done = super().update_ema(model, step)
        if done:
            self.updates.append(step)
            self.after_step.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return done

    def _common_step(self, batch, stage):
        x, y = batch
        loss = nn.functional.mse_loss(self.eval_model(x) if stage != "train" else self.model(x), y)
        self.log(f"{stage}_loss", loss)
        return loss


def fit(task: Regression, tmp_path, batches: int, accumulate: int, epochs: int = 1, ckpt=None) -> L.Trainer:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(batches * 2, 3), torch.randn(batches * 2, 1))
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accumulate_grad_batches=accumulate,
                        default_root_dir=tmp_path)
    trainer.fit(task, DataLoader(data, batch_size=2), ckpt_path=ckpt)
    return trainer


def test_one_update_per_optimizer_step_with_the_written_out_decay(tmp_path):
    torch.manual_seed(0)
    task = Regression()
    start = {k: v.detach().clone() for k, v in task.model.state_dict().items()}
    trainer = fit(task, tmp_path, batches=8, accumulate=4)  # 8 micro-batches -> 2 optimizer steps
    assert trainer.global_step == 2 and task.updates == [1, 2]
    # timm ModelEmaV3 without warm-up: decay 0 at the first update (copy), then ema_decay
    ema = dict(start)
    for i, weights in enumerate(task.after_step):
        d = 0.0 if i == 0 else 0.5
        ema = {k: d * ema[k] + (1 - d) * weights[k] for k in ema}
    for k, v in task.model_ema.module.state_dict().items():
        torch.testing.assert_close(v, ema[k], msg=k)
    assert not torch.equal(task.model_ema.module.weight, task.model.weight)
    assert task.eval_model is task.model_ema.module


def test_warmup_decay_follows_timm_formula():
    task = Regression(ema_decay=0.99, ema_warmup=True)
    # step 1: 0 (copy); step s > 1: min(decay, 1 - (1 + (s - 1)) ** -2/3)
    assert task.model_ema.get_decay(1) == 0.0
    assert task.model_ema.get_decay(3) == 1 - (1 + 2) ** (-2 / 3)
    assert task.model_ema.get_decay(10_000) == 0.99


def test_ema_saved_in_and_restored_from_checkpoints(tmp_path):
    task = Regression()
    trainer = fit(task, tmp_path, batches=6, accumulate=2)  # 3 steps
    path = tmp_path / "ema.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=True)
    assert state["ema_step"] == 3 and any(k.startswith("model_ema.") for k in state["state_dict"])
    loaded = Regression.load_from_checkpoint(path)
    assert loaded._ema_step == 3
    for k, v in task.model_ema.state_dict().items():
        torch.testing.assert_close(loaded.model_ema.state_dict()[k], v, rtol=0, atol=0)
    # resuming: the next update is step 4, none repeated or skipped
    resumed = Regression()
    fit(resumed, tmp_path, batches=6, accumulate=2, epochs=2, ckpt=path)
    assert resumed.updates == [4, 5, 6]
