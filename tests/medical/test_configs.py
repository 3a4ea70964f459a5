"""The medical YAML configs build their task and data module through the ssm-apps CLI."""
from __future__ import annotations

import pytest

from ssm_apps.cli import SSMAppsCLI
from ssm_apps.medical import MedicalDataModule, MedicalPretrainTask, MedicalSegmentationTask
from tests.helpers import REPO, shared_path


@pytest.mark.parametrize("name, task", [("hymamba_seg_cpu", MedicalSegmentationTask),
                                        ("mambamim_pretrain_cpu", MedicalPretrainTask)])
def test_cpu_configs_instantiate(name, task, monkeypatch):
    shared_path("data", "medical3d", "totalsegmentator", "example_ct.nii.gz")
    monkeypatch.chdir(REPO)  # the configs name ../shared relative to the repository root
    cli = SSMAppsCLI(args=["--config", f"configs/medical/{name}.yaml"], run=False)
    assert isinstance(cli.model, task) and isinstance(cli.datamodule, MedicalDataModule)
    assert cli.datamodule.items["train"]
