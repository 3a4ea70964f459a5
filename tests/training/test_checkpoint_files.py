"""Checkpoint files: umask permissions, folder fsync after the rename, damaged files refused by name."""
from __future__ import annotations

import os
import stat

import pytest
import torch
from torch import nn

from ssm_apps.training import checkpoint_io
from ssm_apps.training.checkpoint_io import (
    AtomicCheckpointIO,
    CheckpointError,
    check_checkpoint_matches,
    load_checkpoint_file,
)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_checkpoint_gets_the_umask_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = tmp_path / "last.ckpt"
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, path)
        plain = tmp_path / "plain"
        plain.write_text("x")  # what open() gives under this umask
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


def test_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        real_replace(src, dst)

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(("fsync", kind))
        real_fsync(fd)

    monkeypatch.setattr(checkpoint_io.os, "replace", replace)
    monkeypatch.setattr(checkpoint_io.os, "fsync", fsync)
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, tmp_path / "c" / "best.ckpt")
    assert events == [("fsync", "file"), ("replace", "best.ckpt"), ("fsync", "dir")]


def _saved(tmp_path, obj, name="x.ckpt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_truncated_checkpoint_is_refused_naming_the_file(tmp_path):
    path = _saved(tmp_path, {"state_dict": {"w": torch.randn(1000)}, "epoch": 3})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        AtomicCheckpointIO().load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and "truncated or damaged" in message and "expected a checkpoint" in message


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all\n", b"PK\x03\x04garbage"])
def test_file_that_is_not_a_checkpoint_is_refused(tmp_path, content):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint_file(path)


def test_torch_file_without_state_dict_is_refused(tmp_path):
    path = _saved(tmp_path, {"weight": torch.ones(2)})
    with pytest.raises(CheckpointError, match=r"not a training checkpoint: it holds a dict with keys \['weight'\]"):
        load_checkpoint_file(path)
    path = _saved(tmp_path, torch.ones(3), "tensor.ckpt")
    with pytest.raises(CheckpointError, match="it holds a Tensor"):
        load_checkpoint_file(path)


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=f"checkpoint not found: {tmp_path / 'nope.ckpt'}"):
        load_checkpoint_file(tmp_path / "nope.ckpt")


def test_checkpoint_of_another_model_is_refused(tmp_path):
    small, other = nn.Linear(3, 4), nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    ckpt = {"state_dict": other.state_dict(), "hyper_parameters": {"_class_path": "pkg.OtherTask"}}
    with pytest.raises(CheckpointError) as err:
        check_checkpoint_matches(tmp_path / "other.ckpt", ckpt, small)
    message = str(err.value)
    assert str(tmp_path / "other.ckpt") in message and "expected the 2 tensors of Linear" in message
    assert "pkg.OtherTask" in message and "missing" in message and "unexpected" in message
    wider = {"state_dict": nn.Linear(3, 5).state_dict()}
    with pytest.raises(CheckpointError, match=r"of another shape .*weight: checkpoint \(5, 3\) vs model \(4, 3\)"):
        check_checkpoint_matches("w.ckpt", wider, small)
    check_checkpoint_matches("same.ckpt", {"state_dict": nn.Linear(3, 4).state_dict()}, small)  # same layout: fine
