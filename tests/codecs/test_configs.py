"""The codec YAML configs build their task and data module through the project's LightningCLI."""
from __future__ import annotations

import warnings

import pytest

from ssm_apps.cli import SSMAppsCLI
from ssm_apps.codecs.data import ImageCompressionDataModule
from ssm_apps.codecs.task import ImageCompressionTask
from tests.helpers import REPO

CONFIGS = sorted((REPO / "configs" / "codecs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_instantiates(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = SSMAppsCLI(args=["--config", str(config), "--trainer.logger", "false"], run=False)
    assert isinstance(cli.model, ImageCompressionTask) and isinstance(cli.datamodule, ImageCompressionDataModule)
    assert cli.model.model.num_qualities == len(cli.model.lambdas)


def test_three_configs_ship():
    assert [c.stem for c in CONFIGS] == ["cmamba_base_msssim", "cmamba_small_mse", "cmamba_tiny_cpu"]
