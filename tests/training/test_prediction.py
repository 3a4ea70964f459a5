"""DictPredictionWriter: flattens several dataloaders, orders by index (repeats dropped), names the
samples, creates the folder, clear errors."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ssm_apps.training.prediction import DictPredictionWriter


class Recorder(DictPredictionWriter):
    def write(self, trainer, pl_module, outputs, names, output_dir):
        self.got = (outputs, names, output_dir)


def trainer(names=None):
    return SimpleNamespace(world_size=1, is_global_zero=True, global_rank=0,
                           datamodule=SimpleNamespace(predict_names=names))


def test_flatten_order_dedupe_and_names(tmp_path):
    w = Recorder(output_dir=str(tmp_path / "out" / "deep"))
    loader0 = [{"index": torch.tensor([2, 0]), "score": torch.tensor([20.0, 0.0])}]
    loader1 = [{"index": torch.tensor([1, 2]), "score": torch.tensor([10.0, 20.0])}]  # 2 repeated (padding)
    w.write_on_epoch_end(trainer(["a.png", "b.png", "c.png"]), None, [loader0, loader1], [])
    outputs, names, folder = w.got
    assert outputs["index"].tolist() == [0, 1, 2] and outputs["score"].tolist() == [0.0, 10.0, 20.0]
    assert names == ["a.png", "b.png", "c.png"] and folder.is_dir() and folder == tmp_path / "out" / "deep"


def test_without_index_rows_keep_their_order_and_get_numbers(tmp_path):
    w = Recorder(output_dir=str(tmp_path))
    w.write_on_epoch_end(trainer(), None, [{"y": torch.ones(2, 3)}, {"y": torch.zeros(1, 3)}], [])
    outputs, names, _ = w.got
    assert outputs["y"].shape == (3, 3) and names == ["0", "1", "2"]


def test_errors(tmp_path):
    w = Recorder(output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="Recorder: predict produced no batches"):
        w.write_on_epoch_end(trainer(), None, [], [])
    with pytest.raises(ValueError, match=r"Recorder: predict batches have different keys: \['a'\] and \['b'\]"):
        w.write_on_epoch_end(trainer(), None, [{"a": torch.ones(1)}, {"b": torch.ones(1)}], [])
    with pytest.raises(ValueError, match="Recorder: unknown mode 'all'; choose 'gather' or 'shard'"):
        Recorder(mode="all")
