"""The audio configs instantiate through the ``ssm-apps`` LightningCLI (models and data modules, no run)."""
from __future__ import annotations

import pytest

from ssm_apps.audio import AudioClassificationTask, AudioDataModule, AudioPretrainTask
from ssm_apps.cli import SSMAppsCLI
from tests.helpers import REPO


@pytest.mark.parametrize("name,task", [("ssamba_tiny_pretrain_fsdd", AudioPretrainTask),
                                       ("ssamba_tiny_fsdd", AudioClassificationTask)])
def test_config_instantiates(name: str, task: type) -> None:
    cli = SSMAppsCLI(args=["--config", str(REPO / "configs" / "audio" / f"{name}.yaml")], run=False)
    assert isinstance(cli.model, task) and isinstance(cli.datamodule, AudioDataModule)
    assert cli.model.model.embed_dim == 192 and len(cli.model.model.layers) == 24
    assert cli.datamodule.hparams.test_values == [0, 1, 2, 3, 4]
