"""The TF32 callback sets both flags for the run and restores them afterwards."""
from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from ssm_apps.training.precision import TF32


class _Probe(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.seen: list[tuple[bool, bool]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)


@pytest.mark.parametrize("kwargs, expected", [({"enabled": True}, (True, True)), ({"enabled": False}, (False, False)),
                                              ({"enabled": False, "convolutions": True}, (True, False))])
def test_flags_hold_during_the_run_and_are_restored(kwargs, expected, tmp_path):
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    probe = _Probe()
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", callbacks=[TF32(**kwargs)], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.fit(probe)
    assert probe.seen and set(probe.seen) == {expected}
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


def test_non_bool_is_refused_by_name():
    with pytest.raises(TypeError, match="'matmuls' must be a bool"):
        TF32(matmuls="yes")
