"""AtomicCheckpointIO: a failed write leaves the previous checkpoint intact and no temporary file."""
from __future__ import annotations

import pytest
import torch

from ssm_apps.training import AtomicCheckpointIO


def test_checkpoint_round_trip_and_failed_write_keeps_old_file(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.arange(4.0)}, path)
    assert io.load_checkpoint(path)["step"] == 1

    def broken_save(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    loaded = io.load_checkpoint(path)
    assert loaded["step"] == 1 and torch.equal(loaded["w"], torch.arange(4.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_storage_options_rejected(tmp_path):
    with pytest.raises(TypeError, match="'storage_options' is not supported"):
        AtomicCheckpointIO().save_checkpoint({}, tmp_path / "x.ckpt", storage_options={"a": 1})
